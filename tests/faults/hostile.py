"""The hostile corpus: messages built to break a consumer, each with the DLQ reason it must get.

``hostile_messages()`` returns (name, value) pairs; ``value`` None is a Kafka
tombstone. ``tricky_valid_events()`` are valid events whose free-text fields carry
injection strings and escaped NULs: they must be stored byte-for-byte.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.faults.support import valid_events

INJECTIONS = [
    "'; DROP TABLE audit_events; --",
    '"}]},{"tenant_id":"other","x":"',
    '\\u0000\\" OR 1=1 --',
    "{{k_ts:DateTime64}}",
]
TEN_MB = 10 * 1024 * 1024


def hostile_messages() -> list[tuple[str, bytes | None]]:
    base = valid_events(1, seed=77)[0]

    def with_(**fields: Any) -> bytes:
        return orjson.dumps({**base, **fields})

    actor = base["actor"]
    out: list[tuple[str, bytes | None]] = [
        ("tombstone", None),
        ("empty", b""),
        ("invalid utf-8", orjson.dumps(base).replace(b'"action"', b'"\xff\xfeaction"', 1)),
        ("raw NUL bytes", orjson.dumps(base).replace(b'"actor"', b'"ac\x00tor"', 1)),
        ("only NUL", b"\x00" * 64),
        ("deep nesting", b'{"details":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}"),
        ("10 MB payload", b'{"details":{"k":"' + b"x" * TEN_MB + b'"}}'),
        ("number for actor.id", with_(actor={**actor, "id": 42})),
        ("number for tenant_id", with_(tenant_id=12345)),
        ("duplicate keys", orjson.dumps(base)[:-1] + b',"tenant_id":"evil"}'),
        ("year 9999", with_(occurred_at="9999-12-31T23:59:59Z")),
        ("year 0001", with_(occurred_at="0001-01-01T00:00:00Z")),
        ("month 13", with_(occurred_at="2026-13-45T00:00:00Z")),
        ("far future", with_(occurred_at="2200-01-01T00:00:00Z")),
        ("epoch seconds", with_(occurred_at=1_700_000_000)),
        ("schema version 2", with_(schema_version="2")),
        ("schema version int", with_(schema_version=1)),
        ("JSON array", orjson.dumps([base])),
        ("truncated JSON", orjson.dumps(base)[:40]),
    ]
    for i, text in enumerate(INJECTIONS):
        # Injection in *every* field: the ones with a pattern (tenant, action, ids) reject it.
        out.append(
            (
                f"injection everywhere {i}",
                orjson.dumps(
                    {
                        "occurred_at": text,
                        "tenant_id": text,
                        "action": text,
                        "actor": {"id": text, "type": text, "name": text, "email": text, "ip": text},
                        "resource": {"type": text, "id": text, "name": text},
                        "outcome": text,
                        "event_id": text,
                        "details": {text: text},
                        "schema_version": text,
                    }
                ),
            )
        )
    return out


def tricky_valid_events(seed: int) -> list[dict[str, Any]]:
    """Valid events whose free text is hostile: stored unchanged, never interpreted."""
    events = valid_events(len(INJECTIONS) + 1, seed=seed)
    for event, text in zip(events, [*INJECTIONS, "a\u0000b"], strict=True):
        event["reason"] = text
        event["actor"]["name"] = text
        event["details"] = {"note": text}
    return events
