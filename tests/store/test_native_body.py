"""The Native body the native fast path writes (native/fastpath/src/native.rs) is clickhouse-connect's.

``native_rows(..., encode=True)`` returns, beside the rows, the body of their ``FORMAT
Native`` insert, written in Rust without the GIL. The store takes it (``adopt_encoded``)
only for the table's exact columns and insert types. Here, against the real engine:

* the body is byte for byte what ``Store.encode_rows`` (clickhouse-connect's encoder) writes
  for the same rows, over every kind of valid event we generate, with dictionaries of
  LowCardinality columns on both sides of the 1- to 2-byte index width;
* inserted, it stores exactly what the plain insert of the same rows stores, in every table
  the insert feeds;
* a table whose columns are not the ones it was written for does not take it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from auditstream.bench.messages import encode_messages
from auditstream.demo.generator import generate_events
from auditstream.events.fastpath import NATIVE, NATIVE_COLUMNS, native_rows
from auditstream.events.stored import COLUMNS, utc_ms
from auditstream.store import Store
from auditstream.store.native import EncodedRows
from auditstream.store.store import FEED_TABLE
from tests.faults.hostile import tricky_valid_events

pytestmark = pytest.mark.clickhouse

if not NATIVE:
    pytest.skip("the native fast path is not built here (no Rust toolchain)", allow_module_level=True)


def _native(raws: list[bytes], topic: str = "t", first_offset: int = 0) -> tuple[list[tuple], bytes]:
    n = len(raws)
    now = datetime.now(UTC)
    rows, body = native_rows(
        list(raws),
        [topic] * n,
        [i % 3 for i in range(n)],
        list(range(first_offset, first_offset + n)),
        received_at=utc_ms(now),
        now=now,
        retention_days=None,
        encode=True,
    )
    assert body is not None and all(row is not None for row in rows)
    return rows, body  # type: ignore[return-value]


def _batches() -> Iterator[tuple[str, list[bytes]]]:
    yield "benchmark events", [raw for _, raw in encode_messages(400, seed=3)]
    yield "demo events", [orjson.dumps(e) for e in generate_events(400, tenants=("a", "b", "c"), seed=6)]
    yield "tricky valid events", [orjson.dumps(e) for e in tricky_valid_events(seed=2)]
    # 300 tenants: the tenant dictionary needs a 2-byte index (255 entries still fit in one).
    for tenants in (255, 256, 300):
        events = generate_events(tenants, tenants=("x",), seed=tenants)
        yield f"{tenants} tenants", [orjson.dumps(e | {"tenant_id": f"t{i}"}) for i, e in enumerate(events)]
    yield "one event", [orjson.dumps(e) for e in generate_events(1, tenants=("solo",), seed=1)]


@pytest.mark.parametrize(("label", "raws"), list(_batches()), ids=[label for label, _ in _batches()])
def test_the_native_body_is_the_bytes_clickhouse_connect_writes(
    store: Store, label: str, raws: list[bytes]
) -> None:
    rows, body = _native(raws)
    assert len(rows) == len(raws) > 0
    assert body == store.encode_rows(rows).body, label


def _stored(store: Store, table: str, tenants: list[str]) -> list[tuple[Any, ...]]:
    sql = (
        f"SELECT * FROM {store.database}.{table} WHERE tenant_id IN {{t:Array(String)}}"
        " ORDER BY tenant_id, kafka_partition, kafka_offset, event_id"
    )
    return [tuple(r) for r in store._client().query(sql, parameters={"t": tenants}).result_rows]


def test_an_adopted_body_stores_what_the_plain_insert_stores(store: Store, clickhouse_dsn: str) -> None:
    # 20,000 rows: clickhouse-connect writes them as several blocks, the native body as one.
    suffix = uuid.uuid4().hex[:8]
    events = generate_events(20_000, tenants=(f"na-{suffix}", f"nb-{suffix}"), seed=9)
    rows, body = _native([orjson.dumps(e) for e in events])
    adopted = store.adopt_encoded(rows, body, NATIVE_COLUMNS)
    assert isinstance(adopted, EncodedRows) and list(adopted) == rows
    twin = Store(clickhouse_dsn, f"{store.database}_plain", retention_days=3650)
    twin.open()
    try:
        store.insert_rows(adopted, dedup_token=f"native-{suffix}")
        twin.insert_rows(rows, dedup_token=f"plain-{suffix}")
        tenants = [f"na-{suffix}", f"nb-{suffix}"]
        for table in ("audit_events", FEED_TABLE, "audit_ids"):
            native = _stored(store, table, tenants)
            assert native == _stored(twin, table, tenants), table
            assert len(native) == 20_000, table
    finally:
        twin.close()


def test_a_body_for_other_columns_is_not_adopted(store: Store) -> None:
    rows, body = _native([raw for _, raw in encode_messages(5, seed=4)])
    columns = list(NATIVE_COLUMNS)
    renamed = [("tenant", kind) if name == "tenant_id" else (name, kind) for name, kind in columns]
    retyped = [(name, "String") if name == "kafka_partition" else (name, kind) for name, kind in columns]
    assert store.adopt_encoded(rows, body, renamed) is None
    assert store.adopt_encoded(rows, body, retyped) is None
    assert store.adopt_encoded(rows, body, NATIVE_COLUMNS[:-1]) is None
    assert [name for name, _ in NATIVE_COLUMNS] == list(COLUMNS)
