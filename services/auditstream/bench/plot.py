"""PNG plots: ingest throughput over time, and latency percentiles per scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(doc: dict[str, Any], directory: Path) -> list[str]:
    """Draw what the results hold; returns the file names (none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a bench box
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    prefix = "quick-" if doc.get("quick") else ""
    written: list[str] = []
    metrics = doc["metrics"]

    series = [m for m in metrics if m.get("series") and m["metric"] == "events_per_s"]
    if series:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for m in series:
            xs = [p[0] for p in m["series"]]
            ys = [p[1] for p in m["series"]]
            ax.plot(xs, ys, label=m["scenario"].removeprefix("ingest."), linewidth=1.2)
        ax.set_xlabel("seconds since the consumer started")
        ax.set_ylabel("events/s made queryable (0.5 s samples)")
        ax.set_title(f"Ingest throughput, {series[0]['sizes'].get('events', '?'):,} events, 3 partitions")
        ax.legend()
        ax.grid(alpha=0.3)
        name = f"{prefix}ingest_throughput.png"
        fig.tight_layout()
        fig.savefig(directory / name, dpi=110)
        plt.close(fig)
        written.append(name)

    # Percentiles: one group of bars per scenario that reports p50/p95/p99.
    groups: dict[str, dict[str, float]] = {}
    for m in metrics:
        if m["metric"] in ("p50_ms", "p95_ms", "p99_ms") and m["value"] is not None:
            groups.setdefault(m["scenario"], {})[m["metric"][:3]] = m["value"]
    if groups:
        names = sorted(groups)
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
        height = 0.25
        for i, p in enumerate(("p50", "p95", "p99")):
            ax.barh(
                [k + (i - 1) * height for k in range(len(names))],
                [groups[n].get(p, 0) for n in names],
                height=height,
                label=p,
            )
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_title("Latency percentiles per scenario")
        ax.legend()
        ax.grid(alpha=0.3, axis="x")
        name = f"{prefix}latency_percentiles.png"
        fig.tight_layout()
        fig.savefig(directory / name, dpi=110)
        plt.close(fig)
        written.append(name)
    return written
