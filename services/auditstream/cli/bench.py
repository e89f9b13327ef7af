"""``auditstream bench``: ingest, latency, query and export benchmarks against baselines.

Needs a broker: ``--bootstrap`` or ``AUDITSTREAM_BENCH_KAFKA_BOOTSTRAP`` (``make bench``
starts a local one on a free port). ClickHouse is chDB in throw-away folders.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["bench"]


class Scenario(enum.StrEnum):
    ingest = "ingest"
    latency = "latency"
    alerts = "alerts"
    outside = "outside"
    query = "query"
    export = "export"
    all = "all"


def bench(
    scenario: Annotated[Scenario, typer.Argument(help="Which family to run; 'all' runs every one.")],
    events: Annotated[int | None, typer.Option(help="Ingest: messages in the topic.")] = None,
    rows: Annotated[
        int | None, typer.Option(help="Query: stored rows; export: rows of the big export.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Latency, alerts: events/s (default: half of ours).")
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Latency, alerts: seconds of load.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes (smoke test).")] = False,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap (default AUDITSTREAM_BENCH_KAFKA_BOOTSTRAP).")
    ] = None,
    results_dir: Annotated[Path | None, typer.Option(help="Where results JSON and plots go.")] = None,
    report: Annotated[
        bool | None, typer.Option(help="Regenerate bench/RESULTS.md (default: full-size 'all' only).")
    ] = None,
) -> None:
    """Run benchmark scenarios; print a table; write results JSON, plots and RESULTS.md."""
    from auditstream.bench.results import RESULTS_DIR, format_table
    from auditstream.bench.runner import FAMILIES, run_all
    from auditstream.bench.sizes import sizes_for

    broker = bootstrap or os.environ.get("AUDITSTREAM_BENCH_KAFKA_BOOTSTRAP")
    if not broker:
        typer.echo("error: give --bootstrap or AUDITSTREAM_BENCH_KAFKA_BOOTSTRAP (make bench does)", err=True)
        raise typer.Exit(2)
    families = list(FAMILIES) if scenario is Scenario.all else [scenario.value]
    sizes = sizes_for(quick, events=events, rows=rows, rate=rate, seconds=seconds)
    write_report = report if report is not None else (scenario is Scenario.all and not quick)
    doc, path = run_all(
        families,
        bootstrap=broker,
        sizes=sizes,
        quick=quick,
        results_dir=results_dir or RESULTS_DIR,
        report=write_report,
    )
    typer.echo("")
    typer.echo(format_table(doc["metrics"]))
    typer.echo(f"\nresults: {path}" + (" (and bench/RESULTS.md)" if write_report else ""))
    if any(m["scenario"].endswith(".failed") for m in doc["metrics"]):
        raise typer.Exit(1)
