"""The benchmark's rates from sampled row counts (pure: samples given directly)."""

from __future__ import annotations

import pytest

from auditstream.bench.progress import Progress


def progress(samples: list[tuple[float, int]], target: int = 300) -> Progress:
    return Progress(target, samples=list(samples))


def test_steady_state_leaves_the_first_batch_and_its_time_out() -> None:
    # Joined and validated a large first batch (100 rows at t=2) unseen, then 100 rows/s.
    p = progress([(0.0, 0), (1.9, 0), (2.0, 100), (3.0, 200), (4.0, 300)])
    assert p.sustained_rate() == pytest.approx(100.0)
    assert p.first_batch_rows == 100
    # The older figure credits the first batch's rows at no cost: 300 rows over 2.1 s.
    assert p.rate_with_first_batch() == pytest.approx(300 / 2.1)


def test_every_row_in_one_sample_falls_back_to_the_rate_with_the_first_batch() -> None:
    p = progress([(0.0, 0), (0.5, 0), (0.6, 300)])
    assert p.sustained_rate() == pytest.approx(300 / 0.1)
    assert p.sustained_rate() == p.rate_with_first_batch()


def test_no_rows_no_rate() -> None:
    p = progress([(0.0, 0), (1.0, 0)])
    assert p.sustained_rate() is None
    assert p.rate_with_first_batch() is None
    assert p.first_batch_rows == 0
    assert progress([]).sustained_rate() is None
