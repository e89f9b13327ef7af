"""The feed's read window (``store/feedspan.py``): pure logic, no ClickHouse."""

from __future__ import annotations

import pytest

from auditstream.store.feedspan import WINDOW_SLACK, FeedSpan, window_end


def test_a_dense_tenant_reads_slack_times_what_it_wants() -> None:
    # Every offset is the tenant's: ``want`` rows need ``want`` offsets.
    span = FeedSpan(first=0, head=1_000_000, rows=1_000_001)
    assert window_end(span, 0, 101) == 101 * WINDOW_SLACK - 1
    assert window_end(span, 500, 101) == 500 + 101 * WINDOW_SLACK - 1


def test_a_sparse_tenant_reads_proportionally_more_offsets() -> None:
    # One offset in ten is the tenant's.
    span = FeedSpan(first=0, head=999_999, rows=100_000)
    assert window_end(span, 0, 101) == 101 * WINDOW_SLACK * 10 - 1


def test_never_past_the_head() -> None:
    span = FeedSpan(first=0, head=50, rows=10)
    assert window_end(span, 0, 101) == 50
    assert window_end(span, 49, 2) == 50
    assert window_end(FeedSpan(first=7, head=7, rows=1), 0, 1) == 7


def test_a_cursor_before_the_first_stored_offset_counts_from_there() -> None:
    # Retention dropped the oldest parts: the window starts at the first stored offset.
    span = FeedSpan(first=1_000, head=1_999, rows=1_000)
    assert window_end(span, 0, 10) == 1_000 + 10 * WINDOW_SLACK - 1


def test_no_counted_rows_reads_to_the_head() -> None:
    assert window_end(FeedSpan(first=0, head=99, rows=0), 0, 10) == 99


def test_copies_counted_twice_only_shrink_the_window() -> None:
    # Unmerged copies of a re-delivered batch: more rows than offsets. The window is then
    # smaller than the rows need, never larger; a short window is read on by the store.
    span = FeedSpan(first=0, head=99, rows=200)
    end = window_end(span, 0, 10)
    assert 0 <= end < 10 * WINDOW_SLACK - 1


def test_offsets_near_the_top_of_the_range() -> None:
    top = 2**63 - 1
    span = FeedSpan(first=top - 10_000, head=top, rows=100)
    assert window_end(span, top - 10_000, 5) == top - 10_000 + -(-5 * WINDOW_SLACK * 10_001 // 100) - 1
    assert window_end(span, top - 3, 5) == top


def test_want_must_be_positive() -> None:
    with pytest.raises(ValueError, match="want"):
        window_end(FeedSpan(0, 10, 11), 0, 0)
