"""``auditstream reconcile``: is every committed offset stored or dead-lettered?

Prints one line per partition (or JSON with ``--json``) and names each gap as a
partition and an offset range. Exit code 0 when there is no gap, 1 when there is
one, 2 when the check could not run (broker or store unreachable).

On the embedded default (chDB) the engine belongs to one process: stop the
running ``auditstream run`` first, or point ``AUDITSTREAM_CLICKHOUSE_DSN`` at a
ClickHouse server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from auditstream.cli.engine import exit_if_engine_in_use, in_use_message
from auditstream.config import Settings

EXIT_GAP = 1
EXIT_ERROR = 2


def reconcile(
    group: Annotated[
        str | None, typer.Option(help="Consumer group (default AUDITSTREAM_CONSUMER_GROUP).")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Input topic (default AUDITSTREAM_TOPIC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare, per partition, the committed offset with what is stored and dead-lettered."""
    from auditstream.processor.reconcile import reconcile as run_reconcile
    from auditstream.store.errors import StoreError
    from auditstream.store.store import Store

    settings = Settings()
    exit_if_engine_in_use(settings.resolved_clickhouse_dsn, "reconcile")
    store = Store(settings.resolved_clickhouse_dsn, settings.clickhouse_database, settings.retention_days)
    try:
        store.open()
    except StoreError as exc:
        if settings.embedded and "chdb" in str(exc).lower():  # started between the check and the open
            typer.echo(in_use_message(settings.resolved_clickhouse_dsn, "reconcile"), err=True)
        else:
            typer.echo(f"error: cannot open the store: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    try:
        report = asyncio.run(
            run_reconcile(
                store,
                settings.kafka_bootstrap,
                topic or settings.topic,
                settings.dlq_topic,
                group or settings.consumer_group,
                max_fetch_bytes=settings.max_message_bytes,
            )
        )
    except Exception as exc:
        typer.echo(f"error: reconciliation failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(f"topic {report.topic}, group {report.group}: {report.rows}")
        for p in report.partitions:
            typer.echo(
                f"partition {p.partition}: offsets {p.low}..{p.committed} committed; stored {p.stored}, "
                f"dead-lettered {p.dead_lettered}, duplicates {p.duplicates}, expired {p.expired}, "
                f"no record {p.no_record}, "
                f"missing {p.missing}"
            )
            for first, last in p.gaps:
                typer.echo(f"  GAP partition {p.partition} offsets {first}-{last} ({last - first + 1})")
        typer.echo("OK: no gap" if report.ok else "GAPS FOUND")
    if not report.ok:
        raise typer.Exit(EXIT_GAP)
