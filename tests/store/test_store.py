"""Store on the real engine: inserts, de-duplication, keyset pagination, errors, iteration."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auditstream.events.stored import COLUMNS
from auditstream.store import EventFilter, Store, StoreRejected
from tests.store.conftest import BAD_VALUES, RowFactory

pytestmark = pytest.mark.clickhouse

BASE = datetime(2026, 5, 1, tzinfo=UTC)


def test_ping_and_reopen(store: Store) -> None:
    assert store.ping()
    assert store.open() == []  # already migrated: nothing new


def test_get_event_returns_every_column(store: Store, tenant: str, make_row: RowFactory) -> None:
    row = make_row(
        tenant_id=tenant,
        occurred_at=BASE + timedelta(milliseconds=123),
        details={"k": "v", "password": "[REDACTED]"},
        changes='[{"field":"x","old":"1","new":"2"}]',
        kafka_partition=2,
        kafka_offset=2**40,
    )
    store.insert_rows([row])
    got = store.get_event(tenant, row[0])
    assert got is not None
    assert tuple(got) == COLUMNS
    assert got["event_id"] == row[0]
    assert got["occurred_at"] == BASE + timedelta(milliseconds=123)
    assert got["occurred_at"].tzinfo is not None
    assert got["details"] == {"k": "v", "password": "[REDACTED]"}
    assert got["kafka_offset"] == 2**40
    assert store.get_event(tenant, uuid.uuid4()) is None
    assert store.get_event("someone-else", row[0]) is None  # tenant scope
    assert store.get_event(tenant, str(row[0])) == got


def test_duplicate_rows_are_returned_once(store: Store, tenant: str, make_row: RowFactory) -> None:
    rows = [make_row(tenant_id=tenant, occurred_at=BASE + timedelta(seconds=i)) for i in range(50)]
    store.insert_rows(rows)
    store.insert_rows(rows)  # redelivery without a token: two parts, not yet merged
    f = EventFilter(tenant_id=tenant)
    page = store.query_events(f, limit=1000)
    assert sorted(r["event_id"] for r in page) == sorted(r[0] for r in rows)
    assert store.count_events(f) == 50
    assert store.count_by_tenant()[tenant] == 50


def test_same_dedup_token_stores_once(store: Store, tenant: str, make_row: RowFactory) -> None:
    rows = [make_row(tenant_id=tenant, occurred_at=BASE + timedelta(seconds=i)) for i in range(10)]
    token = f"audit.events:0:{uuid.uuid4()}"
    store.insert_rows(rows, dedup_token=token)
    store.insert_rows(rows, dedup_token=token)
    # Raw count, bypassing read-time de-duplication: the second insert stored nothing.
    raw = store._client().query(
        f"SELECT count() FROM {store.database}.audit_events WHERE tenant_id = {{t:String}}",
        parameters={"t": tenant},
    )
    assert raw.result_rows[0][0] == 10
    # A different token is a different batch and is stored.
    store.insert_rows(rows, dedup_token=token + "-other")
    raw = store._client().query(
        f"SELECT count() FROM {store.database}.audit_events WHERE tenant_id = {{t:String}}",
        parameters={"t": tenant},
    )
    assert raw.result_rows[0][0] == 20


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_keyset_pagination_visits_every_row_once(
    store: Store, tenant: str, make_row: RowFactory, order: str
) -> None:
    # Many events share a millisecond, so the event_id tie-break matters; duplicates too.
    rows = [make_row(tenant_id=tenant, occurred_at=BASE + timedelta(milliseconds=i // 7)) for i in range(203)]
    store.insert_rows(rows[:120])
    store.insert_rows(rows[100:])  # 20 rows inserted twice
    seen: list[tuple[datetime, uuid.UUID]] = []
    after = None
    pages = 0
    while True:
        page = store.query_events(EventFilter(tenant_id=tenant), order=order, limit=10, after=after)
        if not page:
            break
        pages += 1
        seen += [(r["occurred_at"], r["event_id"]) for r in page]
        after = (page[-1]["occurred_at"], page[-1]["event_id"])
    assert pages == 21
    assert len(seen) == len(set(seen)) == 203
    assert {e for _, e in seen} == {r[0] for r in rows}
    times = [t for t, _ in seen]
    assert times == sorted(times, reverse=(order == "desc"))


def test_iter_events_chunks(store: Store, tenant: str, make_row: RowFactory) -> None:
    rows = [make_row(tenant_id=tenant, occurred_at=BASE + timedelta(seconds=i % 13)) for i in range(2500)]
    store.insert_rows(rows)
    chunks = list(store.iter_events(EventFilter(tenant_id=tenant), order="asc", chunk=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    ids = [r["event_id"] for c in chunks for r in c]
    assert len(set(ids)) == 2500 and set(ids) == {r[0] for r in rows}
    exact = list(store.iter_events(EventFilter(tenant_id=tenant), chunk=500))
    assert [len(c) for c in exact] == [500] * 5


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_row_is_rejected(store: Store, tenant: str, make_row: RowFactory, bad: dict) -> None:
    good = make_row(tenant_id=tenant)
    with pytest.raises(StoreRejected):
        store.insert_rows([good, make_row(tenant_id=tenant, **bad)])
    with pytest.raises(StoreRejected):
        store.insert_rows([good[:-1]])
    assert store.count_events(EventFilter(tenant_id=tenant)) == 0


def test_concurrent_reads_and_inserts(store: Store, tenant: str, make_row: RowFactory) -> None:
    """The API reads from a thread pool while the processor inserts: one client per thread."""
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(20):
                store.insert_rows([make_row(tenant_id=tenant, occurred_at=BASE + timedelta(seconds=i))])
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(20):
                store.query_events(EventFilter(tenant_id=tenant), limit=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert store.count_events(EventFilter(tenant_id=tenant)) == 20
