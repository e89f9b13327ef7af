"""Migrations: applied once, recorded, checksums enforced, dry run prints without applying."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditstream.cli.main import app
from auditstream.config import REPO_ROOT
from auditstream.events.stored import COLUMNS
from auditstream.store import MigrationError, apply_migrations
from auditstream.store.client import create_client
from auditstream.store.migrations import load_migrations, split_statements

pytestmark = pytest.mark.clickhouse

SCHEMAS = REPO_ROOT / "schemas" / "clickhouse"


def fresh_db() -> str:
    return f"test_mig_{uuid.uuid4().hex[:10]}"


def test_split_statements_ignores_semicolons_in_comments_and_strings() -> None:
    sql = "-- a; b\nCREATE TABLE x (s String DEFAULT ';') ENGINE = Log; /* c; */ SELECT 1;\n-- trailing\n"
    assert split_statements(sql) == [
        "-- a; b\nCREATE TABLE x (s String DEFAULT ';') ENGINE = Log",
        "/* c; */ SELECT 1",
    ]


def test_migrations_apply_once_and_are_recorded(clickhouse_dsn: str) -> None:
    client = create_client(clickhouse_dsn)
    database = fresh_db()
    try:
        labels = [m.label for m in load_migrations(SCHEMAS)]
        assert apply_migrations(client, database, SCHEMAS, 30) == labels
        assert apply_migrations(client, database, SCHEMAS, 30) == []
        recorded = client.query(
            f"SELECT version, name, checksum FROM {database}.schema_migrations ORDER BY version"
        ).result_rows
        assert [(f"{v:04d}_{n}") for v, n, _ in recorded] == labels
        columns = client.query(
            # MATERIALIZED columns (search_text, 0002) are computed by ClickHouse, not written.
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'audit_events' "
            "AND default_kind != 'MATERIALIZED' ORDER BY position",
            parameters={"db": database},
        ).result_rows
        assert tuple(name for (name,) in columns) == COLUMNS
        ddl = client.command(f"SHOW CREATE TABLE {database}.audit_events")
        assert "ReplacingMergeTree" in ddl
        assert "toIntervalDay(30)" in ddl or "INTERVAL 30 DAY" in ddl
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


def test_changed_checksum_is_an_error(clickhouse_dsn: str, tmp_path: Path) -> None:
    source = load_migrations(SCHEMAS)[0]
    (tmp_path / source.path.name).write_text(source.sql, encoding="utf-8")
    client = create_client(clickhouse_dsn)
    database = fresh_db()
    try:
        apply_migrations(client, database, tmp_path, 30)
        (tmp_path / source.path.name).write_text(source.sql + "\n-- edited\n", encoding="utf-8")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            apply_migrations(client, database, tmp_path, 30)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


def test_dry_run_prints_sql_and_applies_nothing(clickhouse_dsn: str) -> None:
    database = fresh_db()
    result = CliRunner().invoke(
        app, ["migrate", "--dry-run", "--dsn", clickhouse_dsn, "--database", database]
    )
    assert result.exit_code == 0, result.output
    assert f"CREATE TABLE IF NOT EXISTS {database}.audit_events" in result.output
    assert "{database}" not in result.output and "{retention_days}" not in result.output
    client = create_client(clickhouse_dsn)
    try:
        exists = client.query(
            "SELECT count() FROM system.databases WHERE name = {db:String}", parameters={"db": database}
        ).result_rows[0][0]
        assert exists == 0
    finally:
        client.close()


def test_cli_migrate_applies_then_reports_up_to_date(clickhouse_dsn: str) -> None:
    database = fresh_db()
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["migrate", "--dsn", clickhouse_dsn, "--database", database])
        assert first.exit_code == 0, first.output
        assert "0001_audit_events" in first.output
        second = runner.invoke(app, ["migrate", "--dsn", clickhouse_dsn, "--database", database])
        assert second.exit_code == 0, second.output
        assert "up to date" in second.output
    finally:
        client = create_client(clickhouse_dsn)
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()
