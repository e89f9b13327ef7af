"""process_batch is pure: messages in, rows and rejects out — no broker, no store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from auditstream.events.stored import COLUMNS
from auditstream.processor.batch import KafkaMessage, dedup_token, process_batch
from auditstream.processor.dlq import MAX_DLQ_VALUE_BYTES, dead_letter, read_dead_letter_headers
from auditstream.processor.identity import settle_against_store

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "occurred_at": (NOW - timedelta(minutes=5)).isoformat(),
        "tenant_id": "acme",
        "action": "scan.created",
        "actor": {"id": "u-1", "type": "user"},
        "resource": {"type": "scan", "id": "scan-1", "name": "test-credit-2"},
    }
    event.update(overrides)
    return event


def _msg(value: bytes | None, offset: int, partition: int = 0) -> KafkaMessage:
    return KafkaMessage(topic="audit.events", partition=partition, offset=offset, key=b"acme", value=value)


def test_valid_events_become_rows_in_column_order_with_their_position() -> None:
    batch = process_batch([_msg(orjson.dumps(_event()), 41, partition=2)], received_at=NOW, now=NOW)
    assert not batch.rejected
    (row,) = batch.rows
    assert len(row) == len(COLUMNS)
    values = dict(zip(COLUMNS, row, strict=True))
    assert values["tenant_id"] == "acme"
    assert values["kafka_partition"] == 2 and values["kafka_offset"] == 41
    assert values["received_at"] == NOW
    assert isinstance(values["event_id"], uuid.UUID)  # assigned when missing
    assert batch.positions == [(2, 41)]


def test_invalid_messages_are_rejected_with_the_field_named_and_valid_ones_kept() -> None:
    messages = [
        _msg(b"{not json", 0),
        _msg(orjson.dumps(_event(action="Scan Created")), 1),
        _msg(None, 2),  # a tombstone
        _msg(orjson.dumps(_event()), 3),
    ]
    batch = process_batch(messages, received_at=NOW, now=NOW)
    assert len(batch.rows) == 1
    assert [r.message.offset for r in batch.rejected] == [0, 1, 2]
    assert any(e["field"] == "action" for e in batch.rejected[1].errors)
    assert "action" in batch.rejected[1].reason


def test_duplicate_event_ids_within_a_batch_are_stored_once() -> None:
    event_id = str(uuid.uuid4())
    value = orjson.dumps(_event(event_id=event_id))
    batch = process_batch([_msg(value, 0), _msg(value, 1)], received_at=NOW, now=NOW)
    settled = settle_against_store(batch, {})
    assert len(settled.rows) == 1 and settled.duplicates == 1


def test_the_dedup_token_names_each_partitions_offset_range() -> None:
    messages = [_msg(orjson.dumps(_event()), off, partition=off % 2) for off in range(10, 16)]
    rows = process_batch(messages, received_at=NOW, now=NOW).rows
    assert dedup_token("audit", rows) == "audit/0:10-14,1:11-15"
    # The same rows in another order (a retry) give the same token; other rows another one.
    assert dedup_token("audit", rows[::-1]) == "audit/0:10-14,1:11-15"
    assert dedup_token("audit", rows[1:]) == "audit/0:12-14,1:11-15"


def test_dead_letter_keeps_the_original_bytes_and_names_the_reason() -> None:
    original = orjson.dumps(_event(tenant_id="not a tenant!"))
    batch = process_batch([_msg(original, 7, partition=1)], received_at=NOW, now=NOW)
    letter = dead_letter(batch.rejected[0], rejected_at=NOW)
    assert letter.value == original and letter.key == b"acme"
    headers = read_dead_letter_headers(letter.headers)
    assert "tenant_id" in headers["auditstream.error.reason"]
    assert headers["auditstream.source.partition"] == "1" and headers["auditstream.source.offset"] == "7"
    assert any(e["field"] == "tenant_id" for e in orjson.loads(headers["auditstream.error.errors"]))


def test_dead_letter_of_an_oversize_message_is_cut_to_fit_the_broker() -> None:
    huge = b"x" * (MAX_DLQ_VALUE_BYTES + 10)
    batch = process_batch([_msg(huge, 0)], received_at=NOW, now=NOW)
    letter = dead_letter(batch.rejected[0], rejected_at=NOW)
    assert letter.value is not None and len(letter.value) == MAX_DLQ_VALUE_BYTES
    assert read_dead_letter_headers(letter.headers)["auditstream.original.truncated"] == "true"
