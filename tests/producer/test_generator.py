"""The demo generator (deterministic, valid, realistic) and the malformed messages (rejected as labelled)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from auditstream.demo.generator import SEED_SCAN_NAMES, generate_events
from auditstream.demo.malformed import KINDS, malformed_kinds, malformed_messages
from auditstream.events.validation import MAX_EVENT_BYTES, InvalidEvent, parse_event, validate_event

END = datetime(2026, 3, 10, 10, 13, 21, tzinfo=UTC)
START = END - timedelta(days=3)
TENANTS = ["acme", "globex", "initech"]


def test_deterministic_for_a_seed() -> None:
    a = list(generate_events(500, tenants=TENANTS, seed=42, start=START, end=END))
    b = list(generate_events(500, tenants=TENANTS, seed=42, start=START, end=END))
    c = list(generate_events(500, tenants=TENANTS, seed=43, start=START, end=END))
    assert a == b
    assert a != c
    assert len(a) == 500


def test_every_generated_event_is_valid_and_in_the_window() -> None:
    events = list(generate_events(3000, tenants=TENANTS, seed=1, start=START, end=END))
    for ev in events:
        model = validate_event(ev, now=END)
        assert START <= model.occurred_at <= END
        assert "event_id" not in ev  # assigned by the producer, so re-runs are new events
    # The default window (last 3 days until now) is valid against the real clock too.
    for ev in generate_events(300, tenants=TENANTS, seed=2):
        validate_event(ev)


def test_realistic_mix() -> None:
    events = list(generate_events(5000, tenants=TENANTS, seed=3, start=START, end=END))
    actions = Counter(e["action"] for e in events)
    expected = {
        "scan.created", "scan.initiated", "scan.updated", "scan.deleted",
        "user.login", "user.login_failed", "user.locked_out", "user.logout", "user.password_changed",
        "user.created", "user.deleted", "user.updated", "role.assigned", "role.revoked",
        "key.created", "key.rotated", "key.revoked", "config.updated", "export.created",
    }  # fmt: skip
    assert expected <= set(actions)
    assert {e["tenant_id"] for e in events} == set(TENANTS)
    assert {e["actor"]["type"] for e in events} == {"user", "service", "api_key", "system"}
    ips = [e["actor"]["ip"] for e in events if "ip" in e["actor"]]
    assert any(":" in ip for ip in ips) and any("." in ip for ip in ips)
    assert set(SEED_SCAN_NAMES) & {e.get("resource", {}).get("name") for e in events}
    assert any(e["outcome"] == "failure" and e.get("reason") for e in events)
    assert any("token" in e.get("details", {}) for e in events)
    configs = [e for e in events if e["action"] == "config.updated"]
    assert configs and all(set(c) == {"field", "old", "new"} for e in configs for c in e["changes"])
    assert all({"service", "host", "request_id"} <= set(e["source"]) for e in events)
    per_actor = Counter((e["tenant_id"], e["actor"]["id"]) for e in events)
    assert len(per_actor) >= 3 * len(TENANTS)


def test_malformed_messages_cover_every_kind_and_are_rejected_naming_the_field() -> None:
    n = 2 * len(KINDS)
    messages = malformed_messages(n, seed=9)
    assert len(messages) == n
    assert set(malformed_kinds(n)) == {name for name, _ in KINDS}
    for (value, field), kind in zip(messages, malformed_kinds(n), strict=True):
        with pytest.raises(InvalidEvent) as caught:
            parse_event(value)
        assert field in [e["field"] for e in caught.value.errors], f"{kind}: {caught.value.reason}"
        if kind == "oversize":
            assert len(value) > MAX_EVENT_BYTES


def test_malformed_messages_deterministic_apart_from_the_clock() -> None:
    # Timestamps are relative to now (a fixed date would drift out of the future bound), the rest is seeded.
    def without_time(value: bytes) -> object:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return len(value)  # bad JSON is cut at a seeded position of a clock-dependent document
        for obj in doc if isinstance(doc, list) else [doc]:
            if isinstance(obj, dict):
                obj.pop("occurred_at", None)
        return doc

    a = malformed_messages(len(KINDS), seed=4)
    b = malformed_messages(len(KINDS), seed=4)
    assert [f for _, f in a] == [f for _, f in b]
    assert [without_time(v) for v, _ in a] == [without_time(v) for v, _ in b]
