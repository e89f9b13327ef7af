"""What the store's inserts leave to merges, on the real engine (store.py, ``_ENGINE_INSERT_SETTINGS``).

- Repeats inside one insert are not collapsed by the insert (``optimize_on_insert = 0``):
  every read must still return each event once.
- The n-gram index of ``search_text`` is built by the first merge, not by the insert: a
  fresh part is searched in full (same answer), a merged one skips granules; the bloom
  filters are built by the insert as before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditstream.store import EventFilter, Store
from auditstream.store.client import known_settings
from tests.store.conftest import RowFactory

pytestmark = pytest.mark.clickhouse

BASE = datetime(2026, 4, 1, tzinfo=UTC)
WORD = "zzqxquartzword"


def skip_granules(store: Store, where: str, params: dict[str, Any], index: str) -> tuple[int, int]:
    """(granules left, granules looked at) by skip index ``index`` for ``count()`` under ``where``."""
    sql = f"EXPLAIN indexes = 1 SELECT count() FROM {store.database}.audit_events WHERE {where}"
    lines = [row[0].strip() for row in store._client().query(sql, parameters=params).result_rows]
    at = lines.index(f"Name: {index}")
    granules = next(line for line in lines[at:] if line.startswith("Granules:"))
    left, total = granules.removeprefix("Granules:").strip().split("/")
    return int(left), int(total)


def test_settings_the_engine_does_not_know_are_left_out(store: Store) -> None:
    wanted = {"optimize_on_insert": 0, "no_such_setting_in_any_clickhouse": 1}
    assert known_settings(store._client(), wanted) == {"optimize_on_insert": 0}
    assert known_settings(store._client(), {}) == {}


def test_repeats_inside_one_insert_are_read_once(store: Store, tenant: str, make_row: RowFactory) -> None:
    rows = [
        make_row(tenant_id=tenant, occurred_at=BASE + timedelta(seconds=i), kafka_partition=1, kafka_offset=i)
        for i in range(40)
    ]
    store.insert_rows(rows + rows[:25])  # one insert, one part: 25 events twice in it
    # The insert kept the repeats (no per-block merge): it is the reads that collapse them.
    raw = f"SELECT count() FROM {store.database}.audit_events WHERE tenant_id = {{t:String}}"
    assert store._client().query(raw, parameters={"t": tenant}).result_rows[0][0] == 65
    f = EventFilter(tenant_id=tenant)
    page = store.query_events(f, limit=1000)
    assert sorted(r["event_id"] for r in page) == sorted(r[0] for r in rows)
    assert store.count_events(f) == 40
    assert store.count_by_tenant()[tenant] == 40
    feed = store.feed_page(tenant, {}, limit=1000)
    positions = [(int(r["kafka_partition"]), int(r["kafka_offset"])) for r in feed.rows]
    assert positions == [(1, i) for i in range(40)]


def test_search_index_is_built_by_the_first_merge_not_by_the_insert(
    store: Store, tenant: str, make_row: RowFactory
) -> None:
    # Enough rows for several granules, one of them holding the word.
    rows = [
        make_row(
            tenant_id=tenant,
            occurred_at=BASE + timedelta(milliseconds=i),
            actor_name=WORD if i == 7 else f"name{i}",
            kafka_offset=i,
        )
        for i in range(30_000)
    ]
    store.insert_rows(rows, dedup_token=f"{tenant}/0:0-29999")
    searched = EventFilter(tenant_id=tenant, text=WORD)
    where = "tenant_id = {t:String} AND search_text LIKE {w:String}"
    params = {"t": tenant, "w": f"%{WORD}%"}

    # The fresh part: the n-gram index skips nothing (it is not there), the answer is the same.
    left, total = skip_granules(store, where, params, "idx_search_text")
    assert total > 1 and left == total
    assert [r["event_id"] for r in store.query_events(searched, limit=10)] == [rows[7][0]]
    # The bloom filter on event_id was built by the insert.
    by_id = "tenant_id = {t:String} AND event_id = {e:UUID}"
    left_id, total_id = skip_granules(store, by_id, {"t": tenant, "e": rows[7][0]}, "idx_event_id")
    assert total_id > 1 and left_id < total_id

    # The merge builds the n-gram index: now it skips the granules without the word.
    store._client().command(f"OPTIMIZE TABLE {store.database}.audit_events FINAL")
    left, total = skip_granules(store, where, params, "idx_search_text")
    assert total > 1 and left < total
    assert [r["event_id"] for r in store.query_events(searched, limit=10)] == [rows[7][0]]
