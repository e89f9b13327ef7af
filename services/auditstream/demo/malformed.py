"""Malformed Kafka messages, for demos and tests of the dead-letter path.

Usage::

    from auditstream.demo.malformed import malformed_messages

    for value, field in malformed_messages(20, seed=1):
        ...  # send ``value`` with a raw Kafka client; the DLQ reason must name ``field``

Each message breaks exactly one rule of the v1 contract, starting from a valid
generated event, so the processor's error must name exactly that field (a
dotted path; ``""`` when the whole message is unusable: not JSON, not an
object, not UTF-8, too large). The kinds cycle in a fixed order, so any ``n``
of at least ``len(KINDS)`` covers them all.

These bytes can only be sent with a raw client: the SDK validates first and
would refuse every one of them — which is the point of the SDK.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from auditstream.demo.generator import generate_events

MAX_EVENT_BYTES = 65536  # the v1 contract's limit (auditstream.events.validation.MAX_EVENT_BYTES)

Event = dict[str, Any]


def _json(event: Event) -> bytes:
    return orjson.dumps(event)


def _without(path: str) -> Callable[[Event, random.Random], tuple[bytes, str]]:
    def make(event: Event, rng: random.Random) -> tuple[bytes, str]:
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        target.pop(last, None)
        return _json(event), path

    return make


def _with(path: str, value: Any) -> Callable[[Event, random.Random], tuple[bytes, str]]:
    def make(event: Event, rng: random.Random) -> tuple[bytes, str]:
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
        return _json(event), path

    return make


def _bad_json(event: Event, rng: random.Random) -> tuple[bytes, str]:
    text = _json(event)
    return text[: rng.randint(5, len(text) - 2)], ""  # truncated mid-document, as a crashed writer leaves it


def _not_an_object(event: Event, rng: random.Random) -> tuple[bytes, str]:
    return _json([event]), ""


def _invalid_utf8(event: Event, rng: random.Random) -> tuple[bytes, str]:
    return _json(event).replace(b'"action"', b'"\xff\xfeaction"', 1), ""


def _oversize(event: Event, rng: random.Random) -> tuple[bytes, str]:
    # Valid in every other way: only the size is wrong (values stay under the per-field bounds).
    event["details"] = {f"k{i:02d}": "x" * 4000 for i in range(17)}
    value = _json(event)
    assert len(value) > MAX_EVENT_BYTES
    return value, ""


def _far_future(event: Event, rng: random.Random) -> tuple[bytes, str]:
    when = datetime.now(UTC) + timedelta(days=rng.randint(1, 400))
    event["occurred_at"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _json(event), "occurred_at"


def _naive(event: Event, rng: random.Random) -> tuple[bytes, str]:
    event["occurred_at"] = (datetime.now(UTC) - timedelta(minutes=rng.randint(1, 60))).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    return _json(event), "occurred_at"


# (kind, maker): the cycle order; the names appear in test ids and demo output.
KINDS: tuple[tuple[str, Callable[[Event, random.Random], tuple[bytes, str]]], ...] = (
    ("bad_json", _bad_json),
    ("missing_occurred_at", _without("occurred_at")),
    ("missing_tenant_id", _without("tenant_id")),
    ("missing_action", _without("action")),
    ("missing_actor", _without("actor")),
    ("missing_actor_id", _without("actor.id")),
    ("number_for_tenant_id", _with("tenant_id", 4711)),
    ("number_for_actor_id", _with("actor.id", 1234567)),
    ("list_for_details", _with("details", ["token", "abc"])),
    ("action_upper_case", _with("action", "Scan.Created")),
    ("action_without_dot", _with("action", "login")),
    ("far_future_occurred_at", _far_future),
    ("naive_occurred_at", _naive),
    ("oversize", _oversize),
    ("bad_tenant_id", _with("tenant_id", "acme corp!")),
    ("unknown_outcome", _with("outcome", "maybe")),
    ("unknown_schema_version", _with("schema_version", "2")),
    ("not_an_object", _not_an_object),
    ("invalid_utf8", _invalid_utf8),
)


def malformed_messages(n: int, *, seed: int = 0) -> list[tuple[bytes, str]]:
    """``n`` raw Kafka values, each with the field path the rejection must name.

    Deterministic for a seed, except for the timestamps of the time-relative
    kinds (future and naive ``occurred_at``), which must be relative to now.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    # Bases are valid events from the last hour, so only the injected fault is wrong.
    end = datetime.now(UTC)
    bases = generate_events(
        n, tenants=("acme", "globex", "initech"), seed=seed, start=end - timedelta(hours=1), end=end
    )
    out: list[tuple[bytes, str]] = []
    for i, base in enumerate(bases):
        _, make = KINDS[i % len(KINDS)]
        out.append(make(base, rng))
    return out


def malformed_kinds(n: int) -> list[str]:
    """The kind names of ``malformed_messages(n)``, in the same order (for test ids and reports)."""
    return [KINDS[i % len(KINDS)][0] for i in range(n)]
