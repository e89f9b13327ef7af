"""First write wins and attribution in the pure processing step (no broker, no store)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from auditstream.events.attribution import Attributor
from auditstream.events.stored import COLUMNS
from auditstream.processor.batch import CONFLICT_REASON, KafkaMessage, process_batch
from auditstream.processor.identity import settle_against_store

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ATTRIBUTOR = Attributor(b"s" * 32)
COL = {name: i for i, name in enumerate(COLUMNS)}


def event(**values: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b",
        "occurred_at": "2026-03-10T11:00:00Z",
        "tenant_id": "acme",
        "action": "scan.created",
        "actor": {"id": "alice"},
    }
    doc.update(values)
    return doc


def message(doc: dict[str, Any], offset: int, *, partition: int = 0, headers: Any = ()) -> KafkaMessage:
    value = orjson.dumps(doc)
    return KafkaMessage(
        "audit.events", partition, offset, doc.get("tenant_id", "").encode(), value, None, headers
    )


def run(
    *messages: KafkaMessage, attributor: Attributor | None = ATTRIBUTOR, retention_days: int | None = None
):
    return process_batch(
        list(messages), received_at=NOW, now=NOW, attributor=attributor, retention_days=retention_days
    )


def test_two_tenants_may_use_the_same_event_id_in_one_batch() -> None:
    batch = run(message(event(), 0), message(event(tenant_id="globex"), 1))
    assert [r[COL["tenant_id"]] for r in batch.rows] == ["acme", "globex"]
    assert not batch.rejected and settle_against_store(batch, {}).duplicates == 0


def test_in_batch_copy_is_a_duplicate_and_other_content_a_conflict() -> None:
    original = event()
    forged = event(action="user.logout", actor={"id": "nobody"})
    batch = run(message(original, 0), message(dict(original), 1), message(forged, 2))
    assert len(batch.rows) == 3 and not batch.rejected  # settled by the write step
    settled = settle_against_store(batch, {})
    assert len(settled.rows) == 1 and settled.rows[0][COL["action"]] == "scan.created"
    assert settled.duplicates == 1
    assert settled.conflicts == [(0, 2)]
    assert CONFLICT_REASON == "conflict: event_id already stored with different content"


def test_a_copy_after_a_forgery_in_one_batch_is_still_a_copy_of_the_stored_event() -> None:
    stored = {("acme", uuid.UUID(event()["event_id"])): run(message(event(), 0)).rows[0][COL["content_hash"]]}
    batch = run(message(event(action="user.logout"), 5), message(event(), 6))
    settled = settle_against_store(batch, stored)
    assert settled.conflicts == [(0, 5)] and settled.duplicates == 1 and not settled.rows


def test_settling_against_the_store_keeps_new_drops_copies_refuses_conflicts() -> None:
    stored_id = uuid.UUID(event()["event_id"])
    first = run(message(event(), 0))
    stored = {("acme", stored_id): first.rows[0][COL["content_hash"]]}
    new_id = str(uuid.uuid4())
    later = run(
        message(event(), 10),  # a replay of the stored event
        message(event(event_id=new_id), 12),  # a new event
        message(event(tenant_id="globex"), 13),  # another tenant's event with the same id
    )
    settled = settle_against_store(later, stored)
    assert settled.duplicates == 1 and settled.conflicts == []
    assert [(r[COL["tenant_id"]], str(r[COL["event_id"]])) for r in settled.rows] == [
        ("acme", new_id),
        ("globex", str(stored_id)),
    ]
    assert settled.positions == [(0, 12), (0, 13)]
    forged = settle_against_store(run(message(event(action="user.logout"), 11)), stored)
    assert forged.conflicts == [(0, 11)] and not forged.rows and forged.duplicates == 0


def test_an_event_older_than_the_retention_is_refused() -> None:
    old = event(occurred_at=(NOW - timedelta(days=31)).isoformat())
    batch = run(message(old, 0), message(event(event_id=str(uuid.uuid4())), 1), retention_days=30)
    assert len(batch.rows) == 1
    (rejected,) = batch.rejected
    assert rejected.reason == "occurred_at: older than the retention of 30 days"
    assert rejected.errors[0]["type"] == "older_than_retention"


def test_channel_comes_from_a_verified_label_never_from_the_event() -> None:
    doc = event()
    plain = run(message(doc, 0))
    assert plain.rows[0][COL["ingest_channel"]] == "kafka"
    value = orjson.dumps(doc)
    http = run(message(doc, 0, headers=ATTRIBUTOR.headers("http", value, key_id="k1")))
    assert (http.rows[0][COL["ingest_channel"]], http.rows[0][COL["ingest_key_id"]]) == ("http", "k1")


@pytest.mark.parametrize(
    "headers",
    [
        Attributor(b"x" * 32).headers("http", orjson.dumps(event()), key_id="k1"),  # another secret
        ATTRIBUTOR.headers("http", b"{}", key_id="k1"),  # lifted from another record
        tuple(
            (n, v if not n.endswith("key_id") else b"k2")
            for n, v in ATTRIBUTOR.headers("http", orjson.dumps(event()), key_id="k1")
        ),
        (("auditstream.ingest.channel", b"internal"),),  # no signature
    ],
    ids=["other-secret", "other-record", "key-id-changed", "unsigned"],
)
def test_a_forged_label_is_refused(headers: Any) -> None:
    batch = run(message(event(), 0, headers=headers))
    assert not batch.rows
    (rejected,) = batch.rejected
    assert rejected.errors[0]["type"] == "attribution"


def test_a_processor_without_a_secret_refuses_labelled_records() -> None:
    doc = event()
    batch = run(message(doc, 0, headers=ATTRIBUTOR.headers("http", orjson.dumps(doc))), attributor=None)
    assert not batch.rows and batch.rejected[0].errors[0]["type"] == "attribution"


@pytest.mark.parametrize("service", ["auditstream-api", "auditstream-cli", "AuditStream-alerts"])
def test_auditstreams_own_events_need_the_internal_label(service: str) -> None:
    doc = event(action="key.created", source={"service": service})
    forged = run(message(doc, 0))
    assert not forged.rows
    assert forged.rejected[0].reason == "source.service: reserved for events written by auditstream itself"
    via_http = run(message(doc, 0, headers=ATTRIBUTOR.headers("http", orjson.dumps(doc), key_id="k")))
    assert not via_http.rows
    internal = run(message(doc, 0, headers=ATTRIBUTOR.headers("internal", orjson.dumps(doc))))
    assert internal.rows[0][COL["ingest_channel"]] == "internal"
