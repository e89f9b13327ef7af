"""Numbered ClickHouse migrations: ``schemas/clickhouse/NNNN_name.sql``.

Files are applied in version order and each one is recorded in
``{database}.schema_migrations`` (version, name, checksum, applied_at) after all of
its statements succeeded, so re-running applies nothing new. The checksum is taken
over the file as written (before ``{database}``/``{retention_days}`` are substituted):
editing a file that was already applied is an error instead of a silent drift between
what the repository says and what the database has. Change the schema with a new file.

Statements in a file are separated by ``;``; ``--`` and ``/* */`` comments are allowed
(and encouraged, to say why) and are sent with the statement they precede.
"""

from __future__ import annotations

__all__ = ["Migration", "applied_migrations", "apply_migrations", "load_migrations", "split_statements"]

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from auditstream.resources import Resource
from auditstream.store.client import validate_identifier
from auditstream.store.cluster_ddl import ClusterDDL
from auditstream.store.errors import MigrationError, StoreError, classify
from auditstream.store.sqltext import QUOTES, end_of_quoted

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER_DDL = """CREATE TABLE IF NOT EXISTS {database}.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file; ``sql`` is the raw template, ``checksum`` its sha256."""

    version: int
    name: str
    path: Resource
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def statements(self, database: str, retention_days: int) -> list[str]:
        """The file's statements with the placeholders substituted."""
        text = self.sql.replace("{database}", validate_identifier(database)).replace(
            "{retention_days}", str(int(retention_days))
        )
        return split_statements(text)


def split_statements(text: str) -> list[str]:
    """Split SQL text on ``;`` outside quotes and comments; drop comment-only pieces."""
    statements: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in QUOTES:
            i = end_of_quoted(text, i)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 1
        elif ch == ";":
            statements.append(text[start:i])
            start = i + 1
        i += 1
    statements.append(text[start:])
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(piece: str) -> bool:
    without = re.sub(r"/\*.*?\*/", "", piece, flags=re.S)
    without = re.sub(r"--[^\n]*", "", without)
    return bool(without.strip())


def load_migrations(schemas_dir: Resource) -> list[Migration]:
    """Read ``NNNN_name.sql`` files from ``schemas_dir`` (or its ``clickhouse/`` folder).

    Accepting both spellings lets callers pass ``Settings.schemas_dir`` as it is.
    ``schemas_dir`` is a folder on disk or one inside the package (``auditstream.resources``).
    """
    folder = schemas_dir / "clickhouse" if (schemas_dir / "clickhouse").is_dir() else schemas_dir
    migrations: list[Migration] = []
    seen: dict[int, Resource] = {}
    sql_files = (p for p in folder.iterdir() if p.name.endswith(".sql") and p.is_file())
    for path in sorted(sql_files, key=lambda p: p.name):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like NNNN_name.sql: {path.name}")
        version = int(match.group(1))
        if version in seen:
            raise MigrationError(f"two migrations with version {version}: {seen[version].name}, {path.name}")
        seen[version] = path
        sql = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        migrations.append(Migration(version, match.group(2), path, sql, checksum))
    if not migrations:
        raise MigrationError(f"no migrations found in {folder}")
    return migrations


def applied_migrations(client: Client, database: str) -> dict[int, tuple[str, str]]:
    """``{version: (name, checksum)}`` recorded in the ledger; empty if there is none yet."""
    database = validate_identifier(database)
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'schema_migrations'",
        parameters={"db": database},
    ).result_rows[0][0]
    if not exists:
        return {}
    rows = client.query(
        f"SELECT version, name, checksum FROM {database}.schema_migrations ORDER BY version"  # noqa: S608 - validated identifier
    ).result_rows
    return {int(version): (name, checksum) for version, name, checksum in rows}


def apply_migrations(
    client: Client,
    database: str,
    schemas_dir: Resource,
    retention_days: int,
    dry_run: bool = False,
    *,
    echo: Callable[[str], None] | None = None,
    cluster: str | None = None,
) -> list[str]:
    """Apply pending migrations in order; return their labels (``0001_audit_events``).

    With ``dry_run`` nothing is created or recorded: the pending labels are returned
    and every statement that would run is passed to ``echo`` (the CLI prints them).
    Raises ``MigrationError`` when an applied migration's checksum no longer matches
    its file, or a statement fails. With ``cluster`` every statement is sent in its
    cluster form (``ON CLUSTER``, Replicated and Distributed tables: ``cluster_ddl.py``).
    """
    database = validate_identifier(database)
    migrations = load_migrations(schemas_dir)
    try:
        applied = applied_migrations(client, database)
    except StoreError:
        raise
    except Exception as exc:
        raise classify(exc) from exc
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded[1] != migration.checksum:
            raise MigrationError(
                f"migration {migration.label} was changed after it was applied "
                f"(recorded checksum {recorded[1][:12]}, file {migration.checksum[:12]}); "
                "add a new migration instead of editing an applied one"
            )
    pending = [m for m in migrations if m.version not in applied]
    if not pending:
        return []
    bootstrap = [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        _LEDGER_DDL.replace("{database}", database),
    ]
    statements = {m.version: m.statements(database, retention_days) for m in migrations}
    if cluster is not None:
        # Every file in order, applied ones too: a later ALTER must know what was sharded.
        ddl = ClusterDDL(cluster, database)
        bootstrap = [out for s in bootstrap for out in ddl.transform(s)]
        statements = {v: [out for s in ss for out in ddl.transform(s)] for v, ss in statements.items()}
    if dry_run:
        if echo is not None:
            for statement in bootstrap:
                echo(statement + ";")
            for migration in pending:
                echo(f"-- {migration.label} (checksum {migration.checksum})")
                for statement in statements[migration.version]:
                    echo(statement + ";")
        return [m.label for m in pending]
    for statement in bootstrap:
        _run(client, statement, echo)
    done: list[str] = []
    for migration in pending:
        for statement in statements[migration.version]:
            try:
                _run(client, statement, echo)
            except Exception as exc:
                raise MigrationError(f"migration {migration.label} failed: {exc}") from exc
        client.insert(
            f"{database}.schema_migrations",
            [(migration.version, migration.name, migration.checksum, datetime.now(UTC))],
            column_names=("version", "name", "checksum", "applied_at"),
            settings={"async_insert": 0},
        )
        done.append(migration.label)
    return done


def _run(client: Client, statement: str, echo: Callable[[str], None] | None) -> None:
    if echo is not None:
        echo(statement + ";")
    client.command(statement)
