"""Rows encoded ahead of their insert (store/native.py): the same rows stored, the same errors.

``Store.encode_rows`` encodes on the caller's thread what ``insert_rows`` would encode
inside the insert; ``insert_rows`` then sends the bytes as they are. Whatever is stored
must be exactly what the plain insert stores, in every table the insert feeds.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auditstream.events.stored import COLUMNS
from auditstream.store import EventFilter, Store, StoreRejected
from auditstream.store.native import EncodedRows
from auditstream.store.store import FEED_TABLE
from tests.store.conftest import BAD_VALUES, RowFactory, build_row, unique_tenant

pytestmark = pytest.mark.clickhouse

BASE = datetime(2026, 5, 1, tzinfo=UTC)


def _rows(tenant: str, first_offset: int, n: int) -> list[tuple]:
    return [
        build_row(
            tenant_id=tenant,
            occurred_at=BASE + timedelta(seconds=i),
            actor_name=f'name "{i}" \n ünïcode',
            details={"k": str(i), "empty": ""},
            changes='[{"field":"x","old":"1","new":"2"}]' if i % 2 else "",
            kafka_partition=i % 3,
            kafka_offset=first_offset + i,
            actor_ip="10.0.0.1" if i % 3 else "",
        )
        for i in range(n)
    ]


def _stored(store: Store, table: str, tenant: str) -> list[tuple]:
    # Every column but the tenant (each side has its own), in a total order.
    sql = (
        f"SELECT * EXCEPT (tenant_id) FROM {store.database}.{table} WHERE tenant_id = {{t:String}}"
        " ORDER BY kafka_partition, kafka_offset, event_id"
    )
    return [tuple(r) for r in store._client().query(sql, parameters={"t": tenant}).result_rows]


def test_an_encoded_insert_stores_exactly_what_the_plain_insert_stores(store: Store) -> None:
    plain, encoded = unique_tenant(), unique_tenant()
    rows = _rows(plain, 0, 300)
    twin = [(r[0], encoded, *r[2:]) for r in rows]  # same rows, the other tenant
    store.insert_rows(rows[:200], dedup_token=f"{plain}/a")
    store.insert_rows(rows[200:])
    first = store.encode_rows(twin[:200])
    assert isinstance(first, EncodedRows) and len(first) == 200 and list(first) == twin[:200]
    store.insert_rows(first, dedup_token=f"{encoded}/a")
    store.insert_rows(store.encode_rows(twin[200:]))
    # audit_events, and what its materialised views derive from the same insert.
    for table in ("audit_events", FEED_TABLE, "audit_ids"):
        assert _stored(store, table, encoded) == _stored(store, table, plain), table
    assert store.count_events(EventFilter(tenant_id=encoded)) == 300


def test_an_encoded_insert_with_a_used_token_is_dropped(store: Store) -> None:
    tenant = unique_tenant()
    rows = _rows(tenant, 0, 10)
    store.insert_rows(store.encode_rows(rows), dedup_token=f"{tenant}/0-9")
    store.insert_rows(store.encode_rows(rows), dedup_token=f"{tenant}/0-9")  # a retry of the same write
    assert len(_stored(store, "audit_events", tenant)) == 10


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_a_value_a_column_cannot_take_is_refused_when_encoding(
    store: Store, make_row: RowFactory, bad: dict
) -> None:
    tenant = unique_tenant()
    with pytest.raises(StoreRejected):
        store.encode_rows([make_row(tenant_id=tenant), make_row(tenant_id=tenant, **bad)])
    with pytest.raises(StoreRejected, match="expected"):
        store.encode_rows([make_row(tenant_id=tenant)[:-1]])
    assert store.count_events(EventFilter(tenant_id=tenant)) == 0


def test_encoded_rows_for_another_table_are_encoded_again(store: Store, clickhouse_dsn: str) -> None:
    # An EncodedRows names its table and columns; a store of another database must not
    # send those bytes into its own table.
    other = Store(clickhouse_dsn, f"test_{uuid.uuid4().hex[:12]}", retention_days=3650)
    other.open()
    try:
        tenant = unique_tenant()
        rows = _rows(tenant, 0, 5)
        other.insert_rows(store.encode_rows(rows))
        assert len(_stored(other, "audit_events", tenant)) == 5
        assert _stored(store, "audit_events", tenant) == []
    finally:
        other.close()


def test_encoding_keeps_only_the_rows_it_returns(store: Store, no_collector: None) -> None:
    # clickhouse-connect's insert context is in a reference cycle (test_insert_release.py):
    # with the collector off, a reference it kept would show here.
    rows = [build_row(tenant_id=unique_tenant(), kafka_offset=i) for i in range(3)]
    before = [sys.getrefcount(r) for r in rows]
    encoded = store.encode_rows(rows)
    assert [sys.getrefcount(r) for r in rows] == [n + 1 for n in before]  # the EncodedRows' own
    del encoded
    assert [sys.getrefcount(r) for r in rows] == before
    assert len(COLUMNS) == len(rows[0])
