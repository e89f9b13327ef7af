"""Cluster DDL: every migration file in its ON CLUSTER form, parsed by the real engine.

No ClickHouse cluster runs here (no Keeper, no second server), so the generated DDL is
checked by ClickHouse's own parser (``formatQuery`` in chDB) and by its shape; the
single-node DDL must come out exactly as the files say.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from auditstream.cli.main import app
from auditstream.resources import packaged_schemas
from auditstream.store.client import create_client
from auditstream.store.cluster_ddl import ClusterDDL, cluster_statements
from auditstream.store.migrations import apply_migrations, load_migrations

pytestmark = pytest.mark.clickhouse

DB = "auditstream"
CLUSTER = "audit_cluster"


@pytest.fixture(scope="module")
def parse(clickhouse_dsn: str) -> Iterator:
    """``formatQuery`` of the engine the session uses: raises on SQL it cannot parse."""
    client = create_client(clickhouse_dsn)

    def formatted(sql: str) -> str:
        return client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0]

    try:
        yield formatted
    finally:
        client.close()


def all_statements() -> list[tuple[str, str]]:
    return [(m.label, s) for m in load_migrations(packaged_schemas()) for s in m.statements(DB, 365)]


def test_every_migration_file_in_cluster_form_is_parsed_by_clickhouse(parse) -> None:
    ddl = ClusterDDL(CLUSTER, DB)
    seen_files = set()
    for label, statement in all_statements():
        seen_files.add(label)
        outputs = ddl.transform(statement)
        for out in outputs:
            text = parse(out)  # raises on a syntax error
            if out.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")) or "\nCREATE" in out:
                assert f"ON CLUSTER {CLUSTER}" in text, (label, text)
            assert not re.search(r"ENGINE = (?!Replicated|Distributed)\w*MergeTree", text), (label, text)
    assert seen_files == {m.label for m in load_migrations(packaged_schemas())}
    assert {"audit_events", "audit_feed_v2"} <= ddl.sharded
    assert "audit_feed" not in ddl.sharded  # dropped by 0010


def test_sharded_tables_are_replicated_locally_and_distributed_by_tenant(parse) -> None:
    out = [parse(s) for s in cluster_statements(CLUSTER, DB, [s for _, s in all_statements()])]
    for table in ("audit_events", "audit_feed", "audit_feed_v2"):
        local = next(s for s in out if s.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.{table}_local"))
        assert (
            f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{DB}/{table}_local', '{{replica}}')"
            in (local)
        )
        distributed = next(s for s in out if s.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.{table} "))
        assert f"AS {DB}.{table}_local" in distributed
        assert f"Distributed({CLUSTER}, {DB}, {table}_local, cityHash64(tenant_id))" in distributed
    # The feed's view triggers on the rows its own shard stores.
    view = next(s for s in out if "MATERIALIZED VIEW" in s)
    assert f"TO {DB}.audit_feed_local" in view and f"FROM {DB}.audit_events_local" in view
    # The backfill reads every shard and writes each row to its tenant's shard.
    backfill = next(s for s in out if s.startswith("INSERT INTO"))
    assert f"INSERT INTO {DB}.audit_feed SELECT" in backfill and f"FROM {DB}.audit_events" in backfill
    assert "_local" not in backfill
    # 0010: the copy goes through the Distributed tables too; the old table goes, both halves.
    copy = next(s for s in out if s.startswith(f"INSERT INTO {DB}.audit_feed_v2"))
    assert f"FROM {DB}.audit_feed\n" in copy + "\n" and "_local" not in copy, copy
    drops = [s.split(" ON CLUSTER")[0] for s in out if s.startswith("DROP TABLE")]
    assert drops == [f"DROP TABLE IF EXISTS {DB}.audit_feed", f"DROP TABLE IF EXISTS {DB}.audit_feed_local"]
    v2_view = next(s for s in out if f"VIEW IF NOT EXISTS {DB}.audit_feed_v2_mv" in s)
    assert f"TO {DB}.audit_feed_v2_local" in v2_view and f"FROM {DB}.audit_events_local" in v2_view
    # A column change reaches the Distributed table as well; an index only the replicas.
    adds = [s for s in out if "ADD COLUMN IF NOT EXISTS `search_text`" in s]
    assert [s.split(" ON CLUSTER")[0] for s in adds] == [
        f"ALTER TABLE {DB}.audit_events_local",
        f"ALTER TABLE {DB}.audit_events",
    ]
    assert all("_local" in s for s in out if "ADD INDEX" in s or "PROJECTION" in s)
    events_local = next(s for s in out if s.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.audit_events_local"))
    assert "replicated_deduplication_window = 10000" in events_local
    assert "non_replicated" not in events_local


def test_merkle_subtrees_are_sharded_with_the_leaves(parse) -> None:
    out = [parse(s) for s in cluster_statements(CLUSTER, DB, [s for _, s in all_statements()])]
    local = next(s for s in out if s.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.merkle_subtrees_local"))
    path = f"/clickhouse/tables/{{shard}}/{DB}/merkle_subtrees_local"
    assert f"ReplicatedReplacingMergeTree('{path}', '{{replica}}')" in local
    assert "replicated_deduplication_window = 10000" in local and "index_granularity = 1024" in local
    distributed = next(s for s in out if s.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.merkle_subtrees "))
    # The same key as merkle_leaves: a tenant's subtrees live on the shard that has its leaves.
    assert f"Distributed({CLUSTER}, {DB}, merkle_subtrees_local, cityHash64(tenant_id))" in distributed


def test_engines_keep_their_arguments_and_tables_without_tenant_are_replicated_everywhere(parse) -> None:
    ddl = ClusterDDL("c1", "db")
    versioned = ddl.transform(
        "-- why\nCREATE TABLE db.claims (tenant_id String, id UUID, v UInt64) "
        "ENGINE = ReplacingMergeTree(v) ORDER BY (tenant_id, id)"
    )
    assert len(versioned) == 2
    assert versioned[0].startswith("-- why\n")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/claims_local', '{replica}', v)"
        in (versioned[0])
    )
    summing = ddl.transform(
        "CREATE TABLE IF NOT EXISTS db.sums (tenant_id String, a UInt64, b UInt64) "
        "ENGINE = SummingMergeTree((a, b)) ORDER BY tenant_id"
    )
    assert (
        "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/db/sums_local', '{replica}', (a, b))"
        in summing[0]
    )
    plain = ddl.transform(
        "CREATE TABLE db.positions (follower String, pos UInt64) ENGINE = MergeTree() ORDER BY follower"
    )
    assert plain == [
        "CREATE TABLE db.positions ON CLUSTER c1 (follower String, pos UInt64) "
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/db/positions', '{replica}') ORDER BY follower"
    ]
    assert "positions" not in ddl.sharded
    view = ddl.transform(
        "CREATE MATERIALIZED VIEW db.per_day ENGINE = SummingMergeTree ORDER BY (tenant_id, d) "
        "AS SELECT tenant_id, toDate(v) AS d, count() AS n FROM db.claims GROUP BY tenant_id, d"
    )
    assert len(view) == 1
    assert "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/db/per_day', '{replica}')" in view[0]
    assert "FROM db.claims_local" in view[0] and "ON CLUSTER c1" in view[0]
    assert ddl.transform("ALTER TABLE db.claims DELETE WHERE v = 0") == [
        "ALTER TABLE db.claims_local ON CLUSTER c1 DELETE WHERE v = 0"
    ]
    assert ddl.transform("SELECT 1") == ["SELECT 1"]
    for statement in [*versioned, *summing, *plain, *view]:
        parse(statement)


def test_single_node_ddl_is_exactly_the_files(clickhouse_dsn: str) -> None:
    client = create_client(clickhouse_dsn)
    lines: list[str] = []
    try:
        apply_migrations(client, "test_single_ddl", packaged_schemas(), 365, dry_run=True, echo=lines.append)
    finally:
        client.close()
    expected = [
        s + ";" for m in load_migrations(packaged_schemas()) for s in m.statements("test_single_ddl", 365)
    ]
    labels = re.compile(r"^-- \d{4}_\w+ \(checksum \w+\)$")
    # After the database and the ledger: each file's statements, exactly as written.
    assert [line for line in lines[2:] if not labels.match(line)] == expected
    assert not any("ON CLUSTER" in line or "Replicated" in line or "Distributed" in line for line in lines)


def test_migrate_dry_run_uses_the_cluster_setting(
    monkeypatch: pytest.MonkeyPatch, clickhouse_dsn: str
) -> None:
    monkeypatch.setenv("AUDITSTREAM_CLICKHOUSE_CLUSTER", CLUSTER)
    result = CliRunner().invoke(
        app, ["migrate", "--dry-run", "--dsn", clickhouse_dsn, "--database", "test_cl_dry"]
    )
    assert result.exit_code == 0, result.output
    assert f"CREATE DATABASE IF NOT EXISTS test_cl_dry ON CLUSTER {CLUSTER};" in result.output
    assert "Distributed(" in result.output
