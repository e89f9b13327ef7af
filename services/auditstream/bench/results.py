"""One measured figure (``Metric``), the machine it ran on, and the results file.

Every figure says what it was compared with (``baseline``) and the ratio ours/baseline,
so a reader of the JSON never has to pair rows by hand. ``series`` holds time series
(ingest progress) and ``extra`` anything a figure needs to be read correctly (partial
runs, errors of an unavailable baseline, load average while it ran).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from auditstream.config import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "results"


@dataclass
class Metric:
    scenario: str  # e.g. "ingest.ours", "ingest.baseline_raw_insert", "query.api.actor_day"
    metric: str  # e.g. "events_per_s", "p95_ms"
    value: float | None  # None: not measured (unavailable, skipped); see extra["error"]
    unit: str
    baseline: str | None = None  # the scenario this one is compared with
    ratio: float | None = None  # value / baseline's value (for latencies: baseline / value)
    sizes: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    series: list[list[float]] | None = None  # [[t_seconds, value], ...]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99 and max by nearest rank (no interpolation: a reported p99 was observed)."""
    if not samples_ms:
        return {}
    s = sorted(samples_ms)

    def rank(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": s[-1]}


def compare(
    metrics: list[Metric], ours: str, baselines: list[str], metric: str, *, lower_is_better: bool = False
) -> None:
    """Point ``ours``' row of ``metric`` at each baseline with the ratio; one row per baseline.

    Ratios > 1 always mean ours is better: throughput ours/baseline, latency baseline/ours.
    The first baseline is set on ours' own row; each further one adds a copy (without the
    time series) so every (ours, baseline) pair is one row of the results.
    """
    mine = next(
        (m for m in metrics if m.scenario == ours and m.metric == metric and m.baseline is None), None
    )
    if mine is None:
        return
    for i, name in enumerate(baselines):
        base = next((m for m in metrics if m.scenario == name and m.metric == metric), None)
        ratio = None
        if base is not None and base.value and mine.value:
            ratio = (base.value / mine.value) if lower_is_better else (mine.value / base.value)
        row = mine if i == 0 else Metric(mine.scenario, mine.metric, mine.value, mine.unit, sizes=mine.sizes)
        row.baseline, row.ratio = name, ratio
        if i > 0:
            metrics.insert(metrics.index(mine) + i, row)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def kafka_version() -> str | None:
    """The broker jar's version (the local broker is the jars in .cache/kafka/libs)."""
    libs = REPO_ROOT / ".cache" / "kafka" / "libs"
    for jar in sorted(libs.glob("kafka-server-[0-9]*.jar")) if libs.is_dir() else []:
        return jar.stem.rsplit("-", 1)[-1]
    return None


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
        "versions": {
            "python": platform.python_version(),
            "kafka": kafka_version(),
            "chdb": _version("chdb"),
            "clickhouse-connect": _version("clickhouse-connect"),
            "faust-streaming": _version("faust-streaming"),
            "aiokafka": _version("aiokafka"),
        },
        "git": _git_head(),
    }


def _git_head() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_results(doc: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['started_at'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    return path


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_dicts(metrics: list[Metric]) -> list[dict[str, Any]]:
    return [asdict(m) for m in metrics]


def format_table(metrics: list[dict[str, Any]]) -> str:
    """A fixed-width table of every figure (series left out)."""
    lines = [f"{'scenario':<44} {'metric':<16} {'value':>14} {'unit':<8} {'vs baseline':<36} {'ratio':>7}"]
    lines.append("-" * len(lines[0]))
    for m in metrics:
        value = "n/a" if m["value"] is None else f"{m['value']:,.1f}"
        ratio = "" if m.get("ratio") is None else f"{m['ratio']:.2f}x"
        note = m["extra"].get("error") or m["extra"].get("skipped")
        lines.append(
            f"{m['scenario']:<44} {m['metric']:<16} {value:>14} {m['unit']:<8} {m.get('baseline') or '':<36}"
            f" {ratio:>7}" + (f"  ({str(note)[:80]})" if note and m["value"] is None else "")
        )
    return "\n".join(lines)
