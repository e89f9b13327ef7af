"""Preparing a DLQ replay: validation and the id of the original position (pure logic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from auditstream.events.ids import position_event_id
from auditstream.events.stored import enrich
from auditstream.events.validation import parse_event
from auditstream.processor.dlq_reader import DlqRecord, NotReplayable, parse_position, prepare_replay

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
SOURCE = {
    "auditstream.source.topic": "audit.events",
    "auditstream.source.partition": "2",
    "auditstream.source.offset": "17",
}


def event(**overrides: object) -> dict[str, object]:
    e: dict[str, object] = {
        "occurred_at": NOW.isoformat(),
        "tenant_id": "acme",
        "action": "scan.created",
        "actor": {"id": "u-1"},
    }
    e.update(overrides)
    return e


def record(value: bytes | None, headers: dict[str, str] | None = None) -> DlqRecord:
    return DlqRecord(
        partition=1,
        offset=5,
        timestamp_ms=int(NOW.timestamp() * 1000),
        key=b"acme",
        value=value,
        headers={
            "auditstream.error.reason": "actor.id: Field required",
            **(headers if headers is not None else SOURCE),
        },
    )


def test_an_event_without_id_gets_the_id_of_its_original_position() -> None:
    fixed = orjson.dumps(event())
    replay = prepare_replay(record(b'{"broken": true}'), fixed)
    # Exactly what the processor would have stored at audit.events/2/17.
    row = enrich(parse_event(fixed), topic="audit.events", partition=2, offset=17, received_at=NOW)
    assert (
        replay.event_id
        == str(row[0])
        == str(position_event_id(parse_event(fixed).occurred_at, "audit.events", 2, 17))
    )
    assert orjson.loads(replay.value)["event_id"] == replay.event_id
    assert replay.tenant_id == "acme" and replay.edited
    assert prepare_replay(record(b"x"), fixed).event_id == replay.event_id  # same record, same id


def test_an_event_with_an_id_keeps_it_and_unedited_bytes_are_sent_as_they_were() -> None:
    own = str(uuid.uuid4())
    raw = orjson.dumps(event(event_id=own))
    replay = prepare_replay(record(raw))
    assert replay.event_id == own and replay.value == raw and not replay.edited


@pytest.mark.parametrize(
    ("value", "payload", "headers", "says"),
    [
        (orjson.dumps(event(actor={"name": "x"})), None, None, "actor.id"),
        (b"{}", orjson.dumps(event(action="Not An Action")), None, "action"),
        (b"{}", b"not json", None, "still invalid"),
        (None, None, None, "tombstone"),
        (orjson.dumps(event()), None, {**SOURCE, "auditstream.original.truncated": "true"}, "truncated"),
        (orjson.dumps(event()), None, {}, "source position"),
    ],
)
def test_what_cannot_be_replayed_says_why(
    value: bytes | None, payload: bytes | None, headers: dict[str, str] | None, says: str
) -> None:
    with pytest.raises(NotReplayable, match=says):
        prepare_replay(record(value, headers), payload)


def test_record_fields_and_positions() -> None:
    r = record(orjson.dumps(event(tenant_id="globex")))
    assert r.position == "1:5" and r.source == ("audit.events", 2, 17) and r.tenant_id == "globex"
    assert record(b"\x00garbage").tenant_id == "acme"  # from the record key when the payload says nothing
    assert record(orjson.dumps(event(tenant_id="../../etc"))).tenant_id is None
    assert parse_position("3:42") == (3, 42) and parse_position("42") == (None, 42)
    for bad in ("", "a:1", "1:", "-1", "1:2:3"):
        with pytest.raises(ValueError):
            parse_position(bad)
