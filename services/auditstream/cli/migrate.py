"""``auditstream migrate``: apply the numbered ClickHouse migrations.

Operators run it before (or instead of) letting services migrate on start; ``--dry-run``
shows exactly the SQL that would run, with placeholders substituted, and changes nothing.

Exit codes: 0 done, 1 a migration failed, 2 the store cannot be opened (on the embedded
default: its folder is in use by a running ``auditstream run``).
"""

from __future__ import annotations

from typing import Annotated

import typer


def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the SQL of pending migrations; apply nothing.")
    ] = False,
    dsn: Annotated[str | None, typer.Option("--dsn", help="ClickHouse DSN (default: settings).")] = None,
    database: Annotated[str | None, typer.Option("--database", help="Database (default: settings).")] = None,
) -> None:
    """Apply pending ClickHouse schema migrations."""
    from auditstream.cli.engine import EXIT_ENGINE_IN_USE, exit_if_engine_in_use, in_use_message
    from auditstream.config import get_settings
    from auditstream.resources import schemas_root
    from auditstream.store.client import create_client
    from auditstream.store.errors import StoreError
    from auditstream.store.migrations import apply_migrations

    settings = get_settings()
    target_dsn = dsn or settings.resolved_clickhouse_dsn
    target_db = database or settings.clickhouse_database
    exit_if_engine_in_use(target_dsn, "migrate")
    try:
        client = create_client(target_dsn)
    except Exception as exc:  # clickhouse-connect / chDB errors have no common base we can name
        if target_dsn.startswith("chdb:") and "chdb" in str(exc).lower():  # started since the check
            typer.echo(in_use_message(target_dsn, "migrate"), err=True)
        else:
            typer.echo(f"error: cannot open the store at {target_dsn}: {exc}", err=True)
        raise typer.Exit(EXIT_ENGINE_IN_USE) from None
    try:
        labels = apply_migrations(
            client,
            target_db,
            schemas_root(settings.schemas_dir),
            settings.retention_days,
            dry_run=dry_run,
            echo=typer.echo if dry_run else None,
            cluster=settings.clickhouse_cluster,
        )
    except (StoreError, ValueError) as exc:
        typer.echo(f"migrate failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        client.close()
    if not labels:
        typer.echo(f"{target_db}: up to date")
    elif dry_run:
        typer.echo(f"-- {target_db}: would apply {', '.join(labels)}")
    else:
        typer.echo(f"{target_db}: applied {', '.join(labels)}")
