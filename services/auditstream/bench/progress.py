"""Counting rows as they become queryable, sampled on a clock, and the rates it gives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Samples of (seconds since start, rows visible) and the derived rates."""

    target: int
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int]] = field(default_factory=list)
    first_row_at: float | None = None  # seconds since start when rows first appeared
    done_at: float | None = None

    def add(self, count: int) -> None:
        t = time.monotonic() - self.started
        self.samples.append((t, count))
        if self.first_row_at is None and count > 0:
            self.first_row_at = t
        if self.done_at is None and count >= self.target:
            self.done_at = t

    @property
    def last_count(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def sustained_rate(self) -> float | None:
        """Rows/s in the steady state: from the first sample with rows to the last sample.

        The rows of that first sample are left out with the time they took. A consumer that
        has just joined finds a backlog, so its first batch is as large as a batch may be
        (two batches of ~70,000 events in the 500,000-event run), and it is validated while
        nothing is measured yet: counting its rows from the last empty sample, as this did
        until issue 12 stop 32, credited them at no cost, which favoured a short run (42,327
        events/s at 300,000 events against 22,916 at 500,000, back to back, bench/RESULTS.md).
        When every row shows in one sample there is no steady state to measure and that older
        figure, :meth:`rate_with_first_batch`, is what there is.
        """
        first = self._first_with_rows()
        if first is None:
            return None
        t0, n0 = first
        t1, n1 = self.samples[-1]
        if n1 == n0 or t1 <= t0:
            return self.rate_with_first_batch()
        return (n1 - n0) / (t1 - t0)

    def rate_with_first_batch(self) -> float | None:
        """Rows/s from the last sample with no rows to the last sample: join time left out.

        Starting at the last empty sample (not the first full one) keeps the rows of the
        first batch in the figure; it adds at most one sampling interval of idle time,
        which is why that interval is short (``first_interval``) until rows show.
        """
        empty = [t for t, n in self.samples if n == 0]
        if not self.samples or self.last_count == 0:
            return None
        t0 = empty[-1] if empty else 0.0
        t1 = self.samples[-1][0]
        return self.last_count / (t1 - t0) if t1 > t0 else None

    @property
    def first_batch_rows(self) -> int:
        """Rows in the first sample that had any (what :meth:`sustained_rate` leaves out)."""
        first = self._first_with_rows()
        return first[1] if first is not None else 0

    def _first_with_rows(self) -> tuple[float, int] | None:
        return next(((t, n) for t, n in self.samples if n > 0), None)

    def total_rate(self) -> float | None:
        """Rows/s from start (consumer not yet joined) to the last sample."""
        if not self.samples or self.samples[-1][0] <= 0:
            return None
        t, n = self.samples[-1]
        return n / t

    def series(self) -> list[list[float]]:
        """Rate per interval: [[t, rows/s], ...], for the throughput plot."""
        out: list[list[float]] = []
        for (t0, n0), (t1, n1) in zip(self.samples, self.samples[1:], strict=False):
            if t1 > t0:
                out.append([round(t1, 3), round((n1 - n0) / (t1 - t0), 1)])
        return out


async def watch(
    count: Callable[[], Awaitable[int]],
    progress: Progress,
    *,
    deadline: float,
    interval: float = 0.5,
    first_interval: float = 0.1,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Sample ``count()`` until the target is reached, ``stop()`` says so, or the deadline passes.

    Until the first row shows, samples are taken every ``first_interval`` so the start of
    the sustained window is known to within that interval.
    """
    while time.monotonic() < deadline:
        progress.add(await count())
        if progress.last_count >= progress.target or (stop is not None and stop()):
            return
        await asyncio.sleep(interval if progress.first_row_at is not None else first_interval)
