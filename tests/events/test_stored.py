"""enrich() builds the ClickHouse row; row_to_event() turns it back into the API's JSON shape."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from auditstream.events.ids import uuid7_unix_ms
from auditstream.events.stored import COLUMNS, content_hash, enrich, format_datetime, row_to_event
from auditstream.events.validation import parse_event

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 3, 10, 10, 13, 22, 456789, tzinfo=UTC)

FULL: dict[str, Any] = {
    "event_id": "0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b",
    "occurred_at": "2026-03-10T11:13:21.123456+01:00",
    "tenant_id": "acme",
    "action": "config.updated",
    "actor": {
        "id": "u-1",
        "type": "service",
        "name": "Ada",
        "email": "ada@example.com",
        "ip": "2001:DB8::1",
        "user_agent": "curl/8",
    },
    "resource": {"type": "config", "id": "c-1", "name": "retention"},
    "outcome": "failure",
    "reason": "quota",
    "source": {"service": "api", "host": "h1", "request_id": "r1"},
    "changes": [{"field": "retention_days", "old": 30, "new": 90.5}, {"field": "smtp_password", "old": "a"}],
    "details": {"plan": "pro", "Authorization": "Bearer abc"},
}
MINIMAL: dict[str, Any] = {
    "occurred_at": "2026-03-10T10:13:21Z",
    "tenant_id": "acme",
    "action": "scan.created",
    "actor": {"id": "u-1"},
}


def row_of(doc: dict[str, Any], offset: int = 42) -> tuple[Any, ...]:
    event = parse_event(orjson.dumps(doc), now=NOW)
    return enrich(event, topic="audit.events", partition=2, offset=offset, received_at=RECEIVED)


def test_row_follows_columns() -> None:
    row = dict(zip(COLUMNS, row_of(FULL), strict=True))
    assert row.pop("content_hash") == content_hash(row_of(FULL))
    assert row == {
        "event_id": uuid.UUID("0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"),
        "tenant_id": "acme",
        "occurred_at": datetime(2026, 3, 10, 10, 13, 21, 123000, tzinfo=UTC),
        "received_at": datetime(2026, 3, 10, 10, 13, 22, 456000, tzinfo=UTC),
        "action": "config.updated",
        "category": "configuration",
        "severity": "low",
        "outcome": "failure",
        "reason": "quota",
        "actor_id": "u-1",
        "actor_type": "service",
        "actor_name": "Ada",
        "actor_email": "ada@example.com",
        "actor_ip": "2001:db8::1",
        "actor_user_agent": "curl/8",
        "resource_type": "config",
        "resource_id": "c-1",
        "resource_name": "retention",
        "source_service": "api",
        "source_host": "h1",
        "source_request_id": "r1",
        "changes": '[{"field":"retention_days","old":30,"new":90.5},'
        '{"field":"smtp_password","old":"[REDACTED]","new":"[REDACTED]"}]',
        "details": {"plan": "pro", "Authorization": "[REDACTED]"},
        "schema_version": "1",
        "kafka_topic": "audit.events",
        "kafka_partition": 2,
        "kafka_offset": 42,
        "ingest_channel": "kafka",
        "ingest_key_id": "",
    }


def test_missing_optionals_are_empty_strings() -> None:
    row = dict(zip(COLUMNS, row_of(MINIMAL), strict=True))
    for column in ("reason", "actor_name", "actor_email", "actor_ip", "actor_user_agent", "resource_type",
                   "resource_id", "resource_name", "source_service", "source_host", "source_request_id",
                   "changes"):  # fmt: skip
        assert row[column] == "", column
    assert row["details"] == {}
    assert row["actor_type"] == "user"
    assert row["outcome"] == "success"


def test_missing_event_id_is_a_deterministic_uuid7() -> None:
    first = row_of(MINIMAL, offset=7)[0]
    assert isinstance(first, uuid.UUID) and first.version == 7
    assert uuid7_unix_ms(first) == int(datetime(2026, 3, 10, 10, 13, 21, tzinfo=UTC).timestamp() * 1000)
    # Re-processing the same Kafka message yields the same id, so duplicates can be dropped.
    assert row_of(MINIMAL, offset=7)[0] == first
    assert row_of(MINIMAL, offset=8)[0] != first


def test_received_at_normalised_to_utc_ms() -> None:
    event = parse_event(orjson.dumps(MINIMAL), now=NOW)
    local = datetime(2026, 3, 10, 11, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1)))
    row = enrich(event, topic="t", partition=0, offset=0, received_at=local)
    assert row[COLUMNS.index("received_at")] == datetime(2026, 3, 10, 10, 0, 0, 999000, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        enrich(event, topic="t", partition=0, offset=0, received_at=datetime(2026, 3, 10))


def test_enrich_does_not_mutate_the_event() -> None:
    event = parse_event(orjson.dumps(FULL), now=NOW)
    enrich(event, topic="t", partition=0, offset=0, received_at=RECEIVED)
    assert event.details == {"plan": "pro", "Authorization": "Bearer abc"}
    assert (event.changes or [])[1].old == "a"


def test_round_trip_full() -> None:
    api = row_to_event(dict(zip(COLUMNS, row_of(FULL), strict=True)))
    assert api == {
        "event_id": "0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b",
        "tenant_id": "acme",
        "occurred_at": "2026-03-10T10:13:21.123Z",
        "received_at": "2026-03-10T10:13:22.456Z",
        "action": "config.updated",
        "category": "configuration",
        "severity": "low",
        "outcome": "failure",
        "reason": "quota",
        "actor": {
            "id": "u-1",
            "type": "service",
            "name": "Ada",
            "email": "ada@example.com",
            "ip": "2001:db8::1",
            "user_agent": "curl/8",
        },
        "resource": {"type": "config", "id": "c-1", "name": "retention"},
        "source": {"service": "api", "host": "h1", "request_id": "r1"},
        "changes": [
            {"field": "retention_days", "old": 30, "new": 90.5},
            {"field": "smtp_password", "old": "[REDACTED]", "new": "[REDACTED]"},
        ],
        "details": {"plan": "pro", "Authorization": "[REDACTED]"},
        "schema_version": "1",
        "ingest": {"topic": "audit.events", "partition": 2, "offset": 42, "channel": "kafka"},
    }


def test_round_trip_minimal_omits_empty_fields() -> None:
    api = row_to_event(dict(zip(COLUMNS, row_of(MINIMAL), strict=True)))
    assert set(api) == {
        "event_id", "tenant_id", "occurred_at", "received_at", "action", "category", "severity",
        "outcome", "actor", "schema_version", "ingest",
    }  # fmt: skip
    assert api["actor"] == {"id": "u-1", "type": "user"}
    assert api["occurred_at"] == "2026-03-10T10:13:21.000Z"


def test_api_shape_is_a_valid_event_again() -> None:
    # The stored form, minus the enrichment, passes the contract: exports can be re-ingested.
    api = row_to_event(dict(zip(COLUMNS, row_of(FULL), strict=True)))
    for key in ("received_at", "category", "severity", "ingest"):
        api.pop(key)
    again = parse_event(orjson.dumps(api), now=NOW)
    assert str(again.event_id) == FULL["event_id"]
    assert again.occurred_at == datetime(2026, 3, 10, 10, 13, 21, 123000, tzinfo=UTC)


def test_row_to_event_accepts_what_clickhouse_returns() -> None:
    # clickhouse-connect may hand back naive UTC datetimes, str UUIDs and bytes JSON.
    row = dict(zip(COLUMNS, row_of(FULL), strict=True))
    row["occurred_at"] = datetime(2026, 3, 10, 10, 13, 21, 123000)
    row["received_at"] = "2026-03-10 10:13:22.456"
    row["event_id"] = "0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"
    row["changes"] = row["changes"].encode()
    row["kafka_offset"] = "42"
    api = row_to_event(row)
    assert api["occurred_at"] == "2026-03-10T10:13:21.123Z"
    assert api["received_at"] == "2026-03-10T10:13:22.456Z"
    assert api["changes"][0] == {"field": "retention_days", "old": 30, "new": 90.5}
    assert api["ingest"]["offset"] == 42


def test_format_datetime_converts_offsets() -> None:
    value = datetime(2026, 3, 10, 12, 0, 0, 5000, tzinfo=timezone(timedelta(hours=2)))
    assert format_datetime(value) == "2026-03-10T10:00:00.005Z"


def test_content_hash_is_what_the_event_says_not_how_it_arrived() -> None:
    event = parse_event(orjson.dumps(FULL), now=NOW)
    first = enrich(event, topic="audit.events", partition=2, offset=42, received_at=RECEIVED)
    replay = enrich(
        event,
        topic="audit.events.other",
        partition=0,
        offset=7,
        received_at=RECEIVED + timedelta(hours=1),
        channel="http",
        key_id="k1",
    )
    hash_at = COLUMNS.index("content_hash")
    assert first[hash_at] == replay[hash_at] == content_hash(first) == content_hash(replay)
    assert len(first[hash_at]) == 16
    # The order of details keys is not content; every field's value is.
    reordered = {**FULL, "details": dict(reversed(list(FULL["details"].items())))}
    assert row_of(reordered)[hash_at] == first[hash_at]
    for change in (
        {"action": "config.deleted"},
        {"actor": {**FULL["actor"], "name": "Eve"}},
        {"occurred_at": "2026-03-10T11:13:21.124+01:00"},
        {"details": {"plan": "free", "Authorization": "x"}},
        {"outcome": "success"},
        {"tenant_id": "globex"},
    ):
        assert row_of({**FULL, **change})[hash_at] != first[hash_at], change


def test_ingest_attribution_is_served() -> None:
    row = row_of(MINIMAL)
    assert row_to_event(dict(zip(COLUMNS, row, strict=True)))["ingest"]["channel"] == "kafka"
    event = parse_event(orjson.dumps(MINIMAL), now=NOW)
    http = enrich(event, topic="t", partition=0, offset=1, received_at=RECEIVED, channel="http", key_id="k9")
    assert row_to_event(dict(zip(COLUMNS, http, strict=True)))["ingest"] == {
        "topic": "t",
        "partition": 0,
        "offset": 1,
        "channel": "http",
        "key_id": "k9",
    }
