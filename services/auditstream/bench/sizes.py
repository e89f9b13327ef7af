"""How big each scenario runs: full size for ``make bench``, tiny for the smoke test."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    # Ingest: messages pre-filled in the topic, shared by ours and every baseline.
    ingest_events: int = 500_000
    # Latency: seconds of steady load at ``latency_rate`` (0: half of ours, measured).
    latency_seconds: float = 20.0
    latency_rate: float = 0.0
    # Export: rows of the tiny, the small and the big export tenant (the API's RSS growth
    # is reported from the tiny one to the big one).
    export_rows_tiny: int = 10_000
    export_rows_small: int = 1_000_000
    export_rows_big: int = 10_000_000
    # Query: stored rows, and how many times each query is timed.
    query_rows: int = 10_000_000
    query_repeats: int = 200
    # Bounds: no scenario loop runs longer than this (a slow box reports partial figures).
    scenario_timeout_s: float = 600.0
    export_timeout_s: float = 300.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Sizes()
QUICK = Sizes(
    ingest_events=3_000,
    latency_seconds=3.0,
    latency_rate=500.0,
    export_rows_tiny=1_000,
    export_rows_small=2_000,
    export_rows_big=5_000,
    query_rows=20_000,
    query_repeats=5,
    scenario_timeout_s=120.0,
    export_timeout_s=60.0,
)


def sizes_for(
    quick: bool,
    *,
    events: int | None = None,
    rows: int | None = None,
    rate: float | None = None,
    seconds: float | None = None,
) -> Sizes:
    """The base sizes with the command line's overrides: ``--rows`` sets the query and big export rows."""
    s = QUICK if quick else FULL
    if events:
        s = replace(s, ingest_events=events)
    if rows:
        s = replace(
            s,
            query_rows=rows,
            export_rows_big=rows,
            export_rows_small=min(s.export_rows_small, rows),
            export_rows_tiny=min(s.export_rows_tiny, rows),
        )
    if rate:
        s = replace(s, latency_rate=rate)
    if seconds:
        s = replace(s, latency_seconds=seconds)
    return s
