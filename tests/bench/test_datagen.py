"""The benchmark data's arrival curve: monotone, complete, and as bursty as documented."""

from __future__ import annotations

import itertools

from auditstream.bench.datagen import BURST_SHARE, arrival_curve

SPAN_MS = 30 * 24 * 3600 * 1000


def _time_at(q: float, qs: list[float], ts: list[int]) -> float:
    i = next(k for k, v in enumerate(qs) if v > q)  # what the SQL's arrayFirstIndex finds
    return ts[i - 1] + (q - qs[i - 1]) * (ts[i] - ts[i - 1]) / (qs[i] - qs[i - 1])


def test_the_curve_spans_the_window_and_never_goes_back() -> None:
    qs, ts = arrival_curve(SPAN_MS)
    assert qs[0] == 0.0 and abs(qs[-1] - 1.0) < 1e-12
    assert ts[0] == 0 and ts[-1] == SPAN_MS
    assert all(a < b for a, b in itertools.pairwise(qs))
    assert all(a < b for a, b in itertools.pairwise(ts))
    rows = 10_000
    times = [_time_at((n + 0.5) / rows, qs, ts) for n in range(rows)]
    assert times == sorted(times)  # so Kafka offsets (n / 3) follow arrival in each partition


def test_a_fifth_of_the_rows_arrive_in_bursts() -> None:
    qs, ts = arrival_curve(SPAN_MS)
    base = (1 - BURST_SHARE) / SPAN_MS
    in_bursts = sum(
        (qb - qa) - (tb - ta) * base
        for qa, qb, ta, tb in zip(qs, qs[1:], ts, ts[1:], strict=False)
        if (qb - qa) / (tb - ta) > base * 1.5
    )
    assert abs(in_bursts - BURST_SHARE) < 1e-9
