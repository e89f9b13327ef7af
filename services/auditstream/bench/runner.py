"""Runs scenario families, each in its own child process, and writes what they measured.

Why a child per family: chDB allows one engine path per process and every family wants
a fresh one; a child also gives each family a clean heap and event loop, and a hard
time limit (it is killed when it overruns). The parent never opens chDB.

    python -m auditstream.bench.runner FAMILY --bootstrap B --sizes JSON --previous F --out F
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from auditstream.bench.context import BenchContext
from auditstream.bench.results import (
    RESULTS_DIR,
    Metric,
    format_table,
    machine,
    metric_dicts,
    utc_stamp,
    write_results,
)
from auditstream.bench.sizes import Sizes

FAMILIES = ("ingest", "latency", "alerts", "outside", "export", "query")
CHILD_GRACE_S = 900.0  # beyond the scenario limits: data generation, start-up, shutdown


def run_family(family: str, ctx: BenchContext) -> list[dict[str, Any]]:
    """In this process: run one family and return its metrics as dicts."""
    module = importlib.import_module(f"auditstream.bench.{family}")
    metrics: list[Metric] = asyncio.run(module.run(ctx))
    return metric_dicts(metrics)


def _child(
    family: str, bootstrap: str, sizes: Sizes, quick: bool, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix=f"auditstream-bench-{family}-") as tmp:
        prev, out = Path(tmp) / "previous.json", Path(tmp) / "out.json"
        prev.write_text(json.dumps(previous, default=str))
        cmd = [
            sys.executable, "-m", "auditstream.bench.runner", family, "--bootstrap", bootstrap,
            "--sizes", json.dumps(sizes.as_dict()), "--previous", str(prev), "--out", str(out),
        ] + (["--quick"] if quick else [])  # fmt: skip
        limit = sizes.scenario_timeout_s * 4 + CHILD_GRACE_S
        try:
            proc = subprocess.run(cmd, timeout=limit, check=False)
            if proc.returncode == 0 and out.exists():
                return list(json.loads(out.read_text()))
            error = f"child exited with {proc.returncode}"
        except subprocess.TimeoutExpired:  # subprocess.run kills the child on timeout
            error = f"child killed after {limit:.0f}s"
    failed = Metric(f"{family}.failed", "error", None, "", extra={"error": error})
    return metric_dicts([failed])


def _latest_metrics(directory: Path) -> list[dict[str, Any]]:
    """Metrics of the newest results file (a lone ``latency`` run takes ours' rate from it)."""
    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    for path in reversed(files):
        try:
            return list(json.loads(path.read_text()).get("metrics", []))
        except (OSError, ValueError):
            continue
    return []


def run_all(
    families: list[str],
    *,
    bootstrap: str,
    sizes: Sizes,
    quick: bool,
    results_dir: Path = RESULTS_DIR,
    report: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Run ``families`` in order, then write the results JSON, the plots and (full runs) RESULTS.md."""
    doc: dict[str, Any] = {
        "started_at": utc_stamp(),
        "quick": quick,
        "families": families,
        "sizes": sizes.as_dict(),
        "bootstrap": bootstrap,
        "machine": machine(),
        "metrics": [],
    }
    previous = [] if "ingest" in families else _latest_metrics(results_dir)
    for family in families:
        print(f"== bench {family} ...", flush=True)
        got = _child(family, bootstrap, sizes, quick, previous + doc["metrics"])
        doc["metrics"] += got
        print(format_table([m for m in got]), flush=True)
    doc["finished_at"] = utc_stamp()
    doc["machine"]["loadavg_end"] = list(os.getloadavg())
    path = write_results(doc, results_dir)
    from auditstream.bench import plot

    doc["plots"] = plot.draw(doc, results_dir)
    path.write_text(json.dumps(doc, indent=1, default=str))
    if report:
        from auditstream.bench import report as report_mod

        report_mod.write(doc, path)
    return doc, path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("family", choices=FAMILIES)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--previous")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sizes = Sizes(**json.loads(args.sizes))
    previous = json.loads(Path(args.previous).read_text()) if args.previous else []
    workdir = Path(tempfile.mkdtemp(prefix=f"auditstream-bench-{args.family}-"))
    try:
        ctx = BenchContext(args.bootstrap, workdir, sizes, quick=args.quick, previous=previous)
        Path(args.out).write_text(json.dumps(run_family(args.family, ctx), default=str))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # faust and chDB leave non-daemon threads behind; the results are written, so leave now.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

__all__ = ["FAMILIES", "run_all", "run_family"]
