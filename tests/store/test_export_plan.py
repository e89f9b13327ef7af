"""store.export planning, pure logic: windows cut one at a time at changing row limits.

Whatever limit each call gets, the windows must be contiguous, cover the whole range
(open at both ends of the read order), never merge past a limit except for a single
bucket above it, and together plan every counted row exactly once.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from auditstream.store.export import Window, WindowPlanner, plan_windows, rows_for_bytes

BASE = datetime(2026, 1, 5, 10, tzinfo=UTC)
M = timedelta(minutes=1)


def cut_all(buckets: list[tuple[datetime, int]], order: str, limits: list[int]) -> list[Window]:
    planner = WindowPlanner(buckets, order)  # type: ignore[arg-type]
    out: list[Window] = []
    for limit in limits:
        window = planner.next(limit)
        if window is None:
            break
        out.append(window)
    assert planner.next(1) is None or len(out) == len(limits)
    return out


def check(buckets: list[tuple[datetime, int]], order: str, windows: list[Window], limits: list[int]) -> None:
    """Contiguous, covering, within the limits, every bucket planned once."""
    starts = [t for t, _ in buckets]
    asc = windows if order == "asc" else windows[::-1]
    assert asc[0].since is None and asc[-1].until is None
    for a, b in itertools.pairwise(asc):
        assert a.until is not None and a.until == b.since  # no gap, no overlap
    assert sum(w.planned for w in windows) == sum(n for _, n in buckets)
    for window, limit in zip(windows, limits, strict=False):
        inside = [
            n
            for t, n in buckets
            if (window.since is None or t >= window.since) and (window.until is None or t < window.until)
        ]
        assert sum(inside) == window.planned
        assert window.planned <= limit or len(inside) == 1  # only a single bucket may exceed
        # Bounds are bucket starts: a window never splits a bucket.
        assert window.since is None or window.since in starts
        assert window.until is None or window.until in starts


def test_plan_windows_is_the_planner_at_one_limit() -> None:
    buckets = [(BASE, 3), (BASE + M, 2), (BASE + 5 * M, 4), (BASE + 6 * M, 20), (BASE + 9 * M, 1)]
    assert plan_windows(buckets, 6) == [
        Window(None, BASE + 5 * M, 5),
        Window(BASE + 5 * M, BASE + 6 * M, 4),
        Window(BASE + 6 * M, BASE + 9 * M, 20),
        Window(BASE + 9 * M, None, 1),
    ]
    assert plan_windows(buckets, 6) == cut_all(buckets, "asc", [6] * 10)


def test_desc_cuts_from_the_newest_bucket() -> None:
    buckets = [(BASE, 3), (BASE + M, 2), (BASE + 5 * M, 4), (BASE + 6 * M, 20), (BASE + 9 * M, 1)]
    assert cut_all(buckets, "desc", [6] * 10) == [
        Window(BASE + 9 * M, None, 1),
        Window(BASE + 6 * M, BASE + 9 * M, 20),  # a burst above the limit: a window of its own
        Window(BASE + M, BASE + 6 * M, 6),
        Window(None, BASE + M, 3),
    ]


def test_one_window_and_no_window() -> None:
    buckets = [(BASE, 3), (BASE + M, 2)]
    for order in ("asc", "desc"):
        assert cut_all(buckets, order, [100]) == [Window(None, None, 5)]
        assert cut_all([], order, [100]) == []


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_changing_limits_keep_windows_contiguous(order: str) -> None:
    rng = random.Random(12)
    for _ in range(300):
        minutes = sorted(rng.sample(range(2000), rng.randint(1, 60)))
        buckets = [(BASE + m * M, rng.choice([1, 2, 5, 40, 300])) for m in minutes]
        limits = [rng.randint(1, 400) for _ in range(len(buckets) + 1)]
        windows = cut_all(buckets, order, limits)
        assert len(windows) <= len(buckets)
        check(buckets, order, windows, limits)


def test_rows_for_bytes() -> None:
    assert rows_for_bytes(8 << 20, 800.0, 50_000) == (8 << 20) // 800
    assert rows_for_bytes(8 << 20, 10.0, 50_000) == 50_000  # the row cap
    assert rows_for_bytes(100, 1e9, 50_000) == 1  # wider than the target: one row a read
    assert rows_for_bytes(100, 0.0, 7) == 7
