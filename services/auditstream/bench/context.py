"""What every scenario family gets: the broker, a scratch folder, sizes, a deadline."""

from __future__ import annotations

import json
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

    # Set by ``use_dataset``: a kept chDB path (AUDITSTREAM_BENCH_DATA_DIR) instead of the scratch one.
    data_path: Path | None = None

    @property
    def chdb_dsn(self) -> str:
        path = self.data_path if self.data_path is not None else self.workdir / "clickhouse"
        return f"chdb://{path.resolve()}"

    def use_dataset(self, key: str) -> dict[str, Any] | None:
        """Keep the generated data across runs when ``AUDITSTREAM_BENCH_DATA_DIR`` is set.

        Generating 10M rows costs minutes of a shared box's CPU; a before/after comparison
        needs the same rows twice. With the variable set, the family's chDB path is
        ``<dir>/<key>`` (``key`` names the dataset's sizes) and this returns what
        ``dataset_generated`` recorded there, or None when it must still be generated.
        Without it: the scratch path, always generated.
        """
        root = os.environ.get("AUDITSTREAM_BENCH_DATA_DIR")
        if not root:
            return None
        self.data_path = Path(root) / key / "clickhouse"
        marker = self.data_path.parent / "generated.json"
        return dict(json.loads(marker.read_text())) if marker.exists() else None

    def dataset_generated(self, info: dict[str, Any]) -> None:
        """Record that the kept dataset is complete (only with ``AUDITSTREAM_BENCH_DATA_DIR``)."""
        if self.data_path is not None:
            (self.data_path.parent / "generated.json").write_text(json.dumps(info))

    def deadline(self, seconds: float | None = None) -> float:
        return time.monotonic() + (seconds if seconds is not None else self.sizes.scenario_timeout_s)


def load_note() -> dict[str, float]:
    """1-minute load average now: the box is shared, a busy neighbour shows here."""
    return {"loadavg_1m": round(os.getloadavg()[0], 2)}
