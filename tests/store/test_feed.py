"""The feed's store side: heads from the ``feed_heads`` projection (0003, 0009), pages bounded by them."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import auditstream.store.store as store_module
from auditstream.config import REPO_ROOT
from auditstream.events.stored import COLUMNS
from auditstream.store import Store
from auditstream.store.client import create_client
from auditstream.store.feedspan import WINDOW_SLACK, FeedSpan
from auditstream.store.filters import EventFilter
from auditstream.store.store import FEED_TABLE
from tests.store.conftest import build_row, unique_tenant

pytestmark = pytest.mark.clickhouse

SCHEMAS = REPO_ROOT / "schemas" / "clickhouse"
NOW = datetime.now(UTC).replace(microsecond=0)


def batch(tenant: str, partition: int, offsets: range, **values: Any) -> list[tuple]:
    """Rows of one processor batch: one partition, consecutive offsets, one receive time."""
    received = values.pop("received_at", NOW)
    return [
        build_row(
            tenant_id=tenant,
            kafka_partition=partition,
            kafka_offset=o,
            received_at=received,
            occurred_at=values.pop("occurred_at", received),
            **values,
        )
        for o in offsets
    ]


class QueryCounter:
    """Counts the SQL statements a Store sends (no timing: what matters is how many)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sql: list[str] = []
        self.params: list[dict[str, Any]] = []
        original = store._select

        def counted(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            self.sql.append(sql)
            self.params.append(dict(params))
            return original(sql, params)

        monkeypatch.setattr(store, "_select", counted)

    def take(self) -> list[str]:
        out, self.sql, self.params = self.sql, [], []
        return out


def positions_of(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(int(r["kafka_partition"]), int(r["kafka_offset"])) for r in rows]


def test_watermark_after_batches_redelivery_late_events_and_merges(store: Store, tenant: str) -> None:
    other = unique_tenant()
    store.insert_rows(batch(tenant, 0, range(10, 15)) + batch(other, 0, range(15, 40)))
    store.insert_rows(batch(tenant, 1, range(3, 6)))
    assert store.feed_watermark(tenant) == {0: 14, 1: 5}
    store.insert_rows(batch(tenant, 0, range(40, 45)))
    assert store.feed_watermark(tenant) == {0: 44, 1: 5}
    # At-least-once: the processor re-delivers a batch on the same positions.
    store.insert_rows(batch(tenant, 0, range(40, 45)))
    store.insert_rows(batch(tenant, 1, range(3, 6)))
    assert store.feed_watermark(tenant) == {0: 44, 1: 5}
    # A late event (occurred 40 days ago) is stored now: it moves the head like any other.
    store.insert_rows(batch(tenant, 1, range(6, 7), occurred_at=NOW - timedelta(days=40)))
    assert store.feed_watermark(tenant) == {0: 44, 1: 6}
    assert store.feed_watermark(other) == {0: 39}
    assert store.feed_watermark(unique_tenant()) == {}

    # Merges de-duplicate the copies and rebuild the projection of the merged part
    # (deduplicate_merge_projection_mode = 'rebuild'): the heads do not move.
    client = store._client()
    client.command(f"OPTIMIZE TABLE {store.database}.{FEED_TABLE} FINAL")
    assert store.feed_watermark(tenant) == {0: 44, 1: 6}
    parts = client.query(
        "SELECT count() FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active",
        parameters={"db": store.database, "t": FEED_TABLE},
    ).result_rows[0][0]
    with_heads = client.query(
        "SELECT count() FROM system.projection_parts WHERE database = {db:String}"
        " AND table = {t:String} AND name = 'feed_heads' AND active",
        parameters={"db": store.database, "t": FEED_TABLE},
    ).result_rows[0][0]
    assert parts > 0 and with_heads == parts


def test_watermark_query_reads_the_projection(
    store: Store, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.insert_rows(batch(tenant, 2, range(0, 5)))
    counter = QueryCounter(store, monkeypatch)
    assert store.feed_watermark(tenant) == {2: 4}
    (sql,) = counter.take()
    plan = "\n".join(
        row[0] for row in store._client().query(f"EXPLAIN {sql}", parameters={"t": tenant}).result_rows
    )
    assert "ReadFromMergeTree (feed_heads)" in plan, plan
    # The spans (0009: first offset and row count too) come from the same projection.
    assert store.feed_spans(tenant) == {2: FeedSpan(first=0, head=4, rows=5)}
    (sql,) = counter.take()
    plan = "\n".join(
        row[0] for row in store._client().query(f"EXPLAIN {sql}", parameters={"t": tenant}).result_rows
    )
    assert "ReadFromMergeTree (feed_heads)" in plan, plan


@pytest.mark.parametrize("one_read", [True, False], ids=["whole-rows-in-one-read", "positions-then-rows"])
def test_feed_page_is_bounded_by_heads_and_skips_partitions_with_nothing_new(
    store: Store, tenant: str, monkeypatch: pytest.MonkeyPatch, one_read: bool
) -> None:
    # A small page takes its rows with the positions (one read); a large one reads
    # positions, then rows. Both walk the same prefixes, here forced either way.
    monkeypatch.setattr(store_module, "FEED_ONE_READ_ROWS", 10_000 if one_read else 0)
    store.insert_rows(batch(tenant, 0, range(0, 5)))
    store.insert_rows(batch(tenant, 1, range(0, 3), received_at=NOW + timedelta(seconds=1)))
    counter = QueryCounter(store, monkeypatch)

    page = store.feed_page(tenant, {}, limit=100)
    assert positions_of(page.rows) == [(0, o) for o in range(5)] + [(1, o) for o in range(3)]
    assert page.positions == {0: 4, 1: 2} and page.watermark == {0: 4, 1: 2} and not page.more
    # heads, then positions with their rows / heads, positions, rows
    assert len(counter.take()) == (2 if one_read else 3)

    # Nothing new: one query (the heads), same position, same watermark.
    idle = store.feed_page(tenant, page.positions, limit=100)
    assert idle.rows == [] and idle.positions == {0: 4, 1: 2} and idle.watermark == {0: 4, 1: 2}
    assert len(counter.take()) == 1

    # New rows in one partition, delivered twice: only that partition is read, each row
    # once, and ``more`` holds although the copies filled the read's LIMIT (limit + 1).
    store.insert_rows(batch(tenant, 1, range(3, 6), received_at=NOW + timedelta(seconds=2)))
    store.insert_rows(batch(tenant, 1, range(3, 6), received_at=NOW + timedelta(seconds=2)))
    nxt = store.feed_page(tenant, page.positions, limit=2)
    assert positions_of(nxt.rows) == [(1, 3), (1, 4)] and nxt.more
    assert nxt.positions == {0: 4, 1: 4} and nxt.watermark == {0: 4, 1: 5}
    positions_sql = counter.take()[1]
    assert positions_sql.count("UNION ALL") == 0, "partition 0 has nothing new and is not read"
    last = store.feed_page(tenant, nxt.positions, limit=2)
    assert positions_of(last.rows) == [(1, 5)] and not last.more and last.positions == {0: 4, 1: 5}

    # A cursor partition the tenant no longer has (retention) is kept as it is.
    gone = store.feed_page(tenant, {**last.positions, 7: 99}, limit=10)
    assert gone.rows == [] and gone.positions == {0: 4, 1: 5, 7: 99}


@pytest.mark.parametrize("one_read", [True, False], ids=["whole-rows-in-one-read", "positions-then-rows"])
def test_feed_page_marks_filter_matches(
    store: Store, tenant: str, monkeypatch: pytest.MonkeyPatch, one_read: bool
) -> None:
    monkeypatch.setattr(store_module, "FEED_ONE_READ_ROWS", 10_000 if one_read else 0)
    store.insert_rows(
        batch(tenant, 0, range(0, 2), action="user.login")
        + batch(tenant, 0, range(2, 4), action="user.logout")
    )
    page = store.feed_page(tenant, {}, limit=10, f=EventFilter(tenant, actions=["user.logout"]))
    assert [(int(r["kafka_offset"]), r["_matched"]) for r in page.rows] == [
        (0, False), (1, False), (2, True), (3, True),
    ]  # fmt: skip
    assert page.positions == {0: 3}


def walk(store: Store, tenant: str, limit: int) -> list[list[tuple[int, int]]]:
    """Every page of the tenant's feed from the start, as positions."""
    pages, after = [], {}
    for _ in range(1000):  # bounded: a page always advances or ends the walk
        page = store.feed_page(tenant, after, limit=limit)
        pages.append(positions_of(page.rows))
        after = page.positions
        if not page.more:
            return pages
    raise AssertionError("the feed did not end")


@pytest.mark.parametrize("one_read", [True, False], ids=["whole-rows-in-one-read", "positions-then-rows"])
def test_a_short_window_is_read_on_to_the_head(
    store: Store, tenant: str, monkeypatch: pytest.MonkeyPatch, one_read: bool
) -> None:
    monkeypatch.setattr(store_module, "FEED_ONE_READ_ROWS", 10_000 if one_read else 0)
    # Partition 0: one offset in 50 is the tenant's at first, then every one; partition 1
    # evenly spread. The span's average density sizes the first windows too small.
    store.insert_rows(batch(tenant, 0, range(0, 2000, 50)) + batch(tenant, 1, range(0, 600, 3)))
    store.insert_rows(batch(tenant, 0, range(2000, 2200), received_at=NOW + timedelta(seconds=1)))
    # A re-delivered batch's copies, not merged yet: counted in the span, read once.
    store.insert_rows(batch(tenant, 0, range(2000, 2010), received_at=NOW + timedelta(seconds=1)))
    counter = QueryCounter(store, monkeypatch)
    page = store.feed_page(tenant, {}, limit=30)
    params = counter.params
    assert len(counter.take()) == (3 if one_read else 4)  # spans, windows, partition 0 on (, rows)
    window, rest = params[1], params[2]
    assert (window["p0"], window["o0"], window["p1"]) == (0, 0, 1) and window["h0"] < 2199
    assert (rest["p0"], rest["o0"], rest["h0"]) == (0, window["h0"] + 1, 2199) and "p1" not in rest
    windowed = walk(store, tenant, 30)

    # The same pages as reads up to the head (the window as wide as it can be).
    monkeypatch.setattr(store_module, "window_end", lambda span, start, want: span.head)
    assert walk(store, tenant, 30) == windowed
    assert positions_of(page.rows) == windowed[0]
    every = [p for pg in windowed for p in pg]
    assert sorted(every) == sorted(
        [(0, o) for o in [*range(0, 2000, 50), *range(2000, 2200)]] + [(1, o) for o in range(0, 600, 3)]
    )
    assert len(every) == len(set(every))


def test_the_window_reads_only_the_parts_holding_it(
    store: Store, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for first in range(0, 40, 10):  # four batches: four parts, unless merged meanwhile
        received = NOW + timedelta(seconds=first)
        store.insert_rows(batch(tenant, 0, range(first, first + 10), received_at=received))
    counter = QueryCounter(store, monkeypatch)
    page = store.feed_page(tenant, {}, limit=2)
    assert positions_of(page.rows) == [(0, 0), (0, 1)] and page.more
    sql, params = counter.sql[1], counter.params[1]
    # 3 rows wanted at one row per offset: a window of 3 * WINDOW_SLACK offsets, not 40.
    assert (params["o0"], params["h0"]) == (0, 3 * WINDOW_SLACK - 1)
    plan = [
        row[0] for row in store._client().query(f"EXPLAIN indexes = 1 {sql}", parameters=params).result_rows
    ]
    key = next(i for i, line in enumerate(plan) if "PrimaryKey" in line)
    selected = next(line for line in plan[key:] if "Parts:" in line)
    assert re.search(r"Parts: 1/\d+", selected), "\n".join(plan)


# The columns of audit_events before 0004 (first write wins) added its own.
OLD_COLUMNS = COLUMNS[: COLUMNS.index("content_hash")]


def insert_old_rows(store: Store, rows: list[tuple]) -> None:
    """Rows as a processor from before 0004 wrote them (no hash, no attribution)."""
    store._client().insert(
        f"{store.database}.audit_events",
        [row[: len(OLD_COLUMNS)] for row in rows],
        column_names=OLD_COLUMNS,
        settings={"async_insert": 0},
    )


def feed_ddl(store: Store, table: str = FEED_TABLE) -> str:
    """The feed table's (or ``table``'s) CREATE statement as the engine holds it now."""
    return str(
        store._client()
        .query(
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": store.database, "t": table},
        )
        .result_rows[0][0]
    )


def old_heads(store: Store) -> dict[int, int]:
    """Per partition, the highest offset in ``audit_feed``, the feed's table before 0010."""
    rows = store._client().query(
        f"SELECT kafka_partition, max(kafka_offset) FROM {store.database}.audit_feed GROUP BY kafka_partition"
    )
    return {int(p): int(o) for p, o in rows.result_rows}


def table_names(store: Store) -> set[str]:
    rows = store._client().query(
        "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": store.database}
    )
    return {name for (name,) in rows.result_rows}


def migrations_before(number: int, folder: Path) -> Path:
    """``folder`` with the migration files numbered below ``number``: an older release's schemas."""
    for path in sorted(SCHEMAS.glob("*.sql")):
        if int(path.name[:4]) < number:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def old_schemas(tmp_path: Path) -> Path:
    """The migrations before 0003, as a database created before it would have applied them."""
    return migrations_before(3, tmp_path)


@pytest.fixture
def scratch_database(clickhouse_dsn: str) -> Iterator[str]:
    database = f"test_feedmig_{uuid.uuid4().hex[:10]}"
    yield database
    client = create_client(clickhouse_dsn)
    try:
        client.command(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.close()


def test_0003_applies_to_a_database_with_data(
    clickhouse_dsn: str, old_schemas: Path, scratch_database: str, tmp_path: Path
) -> None:
    mid_schemas = tmp_path / "mid"
    mid_schemas.mkdir()
    tenant = unique_tenant()
    before = Store(clickhouse_dsn, scratch_database, retention_days=3650, schemas_dir=old_schemas)
    assert before.open() == ["0001_audit_events", "0002_search_and_feed"]
    with before:
        insert_old_rows(before, batch(tenant, 0, range(0, 4)))
        insert_old_rows(before, batch(tenant, 0, range(0, 4)))  # a re-delivered copy, not merged yet
        insert_old_rows(before, batch(tenant, 1, range(10, 12), received_at=NOW + timedelta(seconds=1)))
        assert old_heads(before) == {0: 3, 1: 11}

    # The release before 0010 (the copy into the feed's new table): 0003 on audit_feed itself.
    mid = Store(
        clickhouse_dsn, scratch_database, retention_days=3650, schemas_dir=migrations_before(10, mid_schemas)
    )
    try:
        assert mid.open()[:2] == ["0003_feed_heads", "0004_first_write_wins"]
        ddl = feed_ddl(mid, "audit_feed")
        assert "PROJECTION feed_heads" in ddl and "deduplicate_merge_projection_mode = 'rebuild'" in ddl
        # Parts written before the migration get their projection from a mutation (the
        # backfill); until it has run on a part, reads fall back to its rows, same answer.
        mutations = (
            mid._client()
            .query(
                "SELECT command FROM system.mutations WHERE database = {db:String} AND table = 'audit_feed'",
                parameters={"db": scratch_database},
            )
            .result_rows
        )
        assert any("MATERIALIZE PROJECTION feed_heads" in command for (command,) in mutations)
    finally:
        mid.close()
    after = Store(clickhouse_dsn, scratch_database, retention_days=3650)
    assert after.open() == ["0010_feed_layout"]
    try:
        assert after.feed_watermark(tenant) == {0: 3, 1: 11}
        after.insert_rows(batch(tenant, 1, range(12, 14), received_at=NOW + timedelta(seconds=2)))
        assert after.feed_watermark(tenant) == {0: 3, 1: 13}
        page = after.feed_page(tenant, {}, limit=100)
        assert positions_of(page.rows) == [(0, o) for o in range(4)] + [(1, o) for o in range(10, 14)]
        assert page.watermark == {0: 3, 1: 13}
        assert after.open() == []  # applied once
    finally:
        after.close()


def test_heads_of_every_tenant_at_once(store: Store, tenant: str) -> None:
    other = unique_tenant()
    store.insert_rows(batch(tenant, 0, range(0, 3)) + batch(other, 2, range(7, 9)))
    store.insert_rows(batch(tenant, 1, range(4, 6)))
    heads = store.feed_heads_all()
    assert heads[tenant] == {0: 2, 1: 5}
    assert heads[other] == {2: 8}


def test_0004_indexes_events_stored_before_it(
    clickhouse_dsn: str, tmp_path: Path, scratch_database: str
) -> None:
    migrations_before(4, tmp_path)
    tenant = unique_tenant()
    rows = batch(tenant, 0, range(0, 3))
    with Store(clickhouse_dsn, scratch_database, retention_days=3650, schemas_dir=tmp_path) as before:
        insert_old_rows(before, rows)
    after = Store(clickhouse_dsn, scratch_database, retention_days=3650)
    assert after.open()[0] == "0004_first_write_wins"
    try:
        found = after.stored_identities([(tenant, r[0]) for r in rows])
        # Stored before hashes existed: all zeros, so any later event under the id is a conflict.
        assert found == {(tenant, r[0]): bytes(16) for r in rows}
        event = after.get_event(tenant, rows[0][0])
        assert event is not None and event["ingest_channel"] == "kafka"
        page = after.feed_page(tenant, {}, limit=10)
        assert positions_of(page.rows) == [(0, 0), (0, 1), (0, 2)]
    finally:
        after.close()


def test_0009_applies_to_a_database_with_data(
    clickhouse_dsn: str, tmp_path: Path, scratch_database: str
) -> None:
    migrations_before(9, tmp_path)
    tenant = unique_tenant()
    with Store(clickhouse_dsn, scratch_database, retention_days=3650, schemas_dir=tmp_path) as before:
        before.insert_rows(batch(tenant, 0, range(5, 9)))
        before.insert_rows(batch(tenant, 1, range(20, 40, 2), received_at=NOW + timedelta(seconds=1)))
        assert old_heads(before) == {0: 8, 1: 38}

    mid_schemas = tmp_path / "mid"
    mid_schemas.mkdir()
    mid = Store(
        clickhouse_dsn, scratch_database, retention_days=3650, schemas_dir=migrations_before(10, mid_schemas)
    )
    try:
        assert mid.open() == ["0009_feed_spans"]
        ddl = feed_ddl(mid, "audit_feed")
        assert "PROJECTION feed_heads" in ddl and "min(kafka_offset)" in ddl and "count()" in ddl
    finally:
        mid.close()
    after = Store(clickhouse_dsn, scratch_database, retention_days=3650)
    assert after.open() == ["0010_feed_layout"]
    try:
        # 0009's spans, now from 0010's copy of the rows.
        assert after.feed_spans(tenant) == {0: FeedSpan(5, 8, 4), 1: FeedSpan(20, 38, 10)}
        assert after.feed_watermark(tenant) == {0: 8, 1: 38}
        page = after.feed_page(tenant, {}, limit=100)
        assert positions_of(page.rows) == [(0, o) for o in range(5, 9)] + [(1, o) for o in range(20, 40, 2)]
        assert after.open() == []  # applied once
    finally:
        after.close()


ORDER = "ORDER BY tenant_id, kafka_partition, kafka_offset"


def test_0010_moves_the_feed_to_compact_small_granules_and_keeps_every_row(
    clickhouse_dsn: str, tmp_path: Path, scratch_database: str
) -> None:
    migrations_before(10, tmp_path)
    tenant, other = unique_tenant(), unique_tenant()
    earlier = NOW - timedelta(days=40)  # another month: another partition of the table
    with Store(clickhouse_dsn, scratch_database, retention_days=3650, schemas_dir=tmp_path) as before:
        before.insert_rows(batch(tenant, 0, range(0, 6), received_at=earlier))
        redelivered = batch(tenant, 0, range(6, 9))
        before.insert_rows(redelivered + batch(other, 3, range(100, 103)))
        before.insert_rows(redelivered)  # a re-delivered batch's copies, not merged yet
        before.insert_rows(batch(tenant, 1, range(20, 40, 2), received_at=NOW + timedelta(seconds=1)))
        old_rows = (
            before._client().query(f"SELECT * FROM {scratch_database}.audit_feed FINAL {ORDER}").result_rows
        )
        assert len(old_rows) == 6 + 3 + 3 + 10

    after = Store(clickhouse_dsn, scratch_database, retention_days=3650)
    assert after.open() == ["0010_feed_layout"]
    try:
        client = after._client()
        names = table_names(after)
        assert {FEED_TABLE, f"{FEED_TABLE}_mv"} <= names and not {"audit_feed", "audit_feed_mv"} & names
        ddl = feed_ddl(after)
        assert "index_granularity = 1024" in ddl and "min_bytes_for_wide_part = 1099511627776" in ddl
        assert "PROJECTION feed_heads" in ddl and "ttl_only_drop_parts = 1" in ddl
        # Every row as it was (the MATERIALIZED search_text is recomputed); copies of a
        # re-delivered batch may be copied too, or merged away before: FINAL compares the events.
        new_rows = client.query(f"SELECT * FROM {scratch_database}.{FEED_TABLE} FINAL {ORDER}").result_rows
        assert new_rows == old_rows
        spans = after.feed_spans(tenant)
        assert spans[1] == FeedSpan(20, 38, 10) and (spans[0].first, spans[0].head) == (0, 8)
        assert spans[0].rows in (9, 12)
        text = client.query(
            f"SELECT DISTINCT search_text FROM {scratch_database}.{FEED_TABLE} WHERE tenant_id = {{t:String}}"
            " AND kafka_offset = 0",
            parameters={"t": tenant},
        ).result_rows
        assert text and all(t for (t,) in text)
        # New inserts reach the new table once, through its view only.
        after.insert_rows(batch(tenant, 1, range(40, 44), received_at=NOW + timedelta(seconds=2)))
        assert after.feed_spans(tenant)[1] == FeedSpan(20, 43, 14)
        pages = walk(after, tenant, 7)
        assert [p for page in pages for p in page] == (
            [(0, o) for o in range(9)] + [(1, o) for o in range(20, 40, 2)] + [(1, o) for o in range(40, 44)]
        )
        client.command(f"OPTIMIZE TABLE {scratch_database}.{FEED_TABLE} FINAL")
        kinds = client.query(
            "SELECT DISTINCT part_type FROM system.parts"
            " WHERE database = {db:String} AND table = {t:String} AND active",
            parameters={"db": scratch_database, "t": FEED_TABLE},
        ).result_rows
        assert kinds == [("Compact",)]
        assert after.open() == []  # applied once
    finally:
        after.close()
