"""What every scenario family gets: the broker, a scratch folder, sizes, a deadline."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditstream.bench.sizes import Sizes


@dataclass
class BenchContext:
    bootstrap: str
    workdir: Path  # scratch: chDB path, faust data, keys; removed by the runner
    sizes: Sizes
    quick: bool = False
    # Figures of earlier families in the same run (latency uses ours' max rate).
    previous: list[dict[str, Any]] = field(default_factory=list)

    @property
    def chdb_dsn(self) -> str:
        return f"chdb://{(self.workdir / 'clickhouse').resolve()}"

    def deadline(self, seconds: float | None = None) -> float:
        return time.monotonic() + (seconds if seconds is not None else self.sizes.scenario_timeout_s)


def load_note() -> dict[str, float]:
    """1-minute load average now: the box is shared, a busy neighbour shows here."""
    return {"loadavg_1m": round(os.getloadavg()[0], 2)}
