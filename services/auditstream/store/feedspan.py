"""How far into a Kafka partition a feed page reads: a window sized from the tenant's density.

A page needs, per partition, the first ``limit + 1`` of the tenant's positions after its
cursor. Read up to the head, that range spans every part of ``audit_feed_v2`` holding later
offsets, and ClickHouse opens each of them for an in-order read (migration 0009). A
tenant's rows are spread over the partition's offsets with other tenants' rows between
them; from the tenant's first offset, head and row count (the ``feed_heads`` projection)
the page estimates how many offsets hold the rows it wants and reads only those. Pure
logic: ``Store.feed_page`` reads the window and, when it comes back short, the rest up to
the head, so an estimate only ever costs a second read, never a row.
"""

from __future__ import annotations

__all__ = ["WINDOW_SLACK", "FeedSpan", "window_end"]

from dataclasses import dataclass

# Read this many times the offsets the tenant's average density says ``want`` rows need:
# a tenant whose rows are unevenly spread still fills most windows in one read.
WINDOW_SLACK = 2


@dataclass(frozen=True, slots=True)
class FeedSpan:
    """A tenant's stored rows in one Kafka partition: first and last offset, how many.

    ``rows`` counts copies of a re-delivered batch that are not merged yet too, so it may
    be above ``head - first + 1``; it sizes windows and nothing else.
    """

    first: int
    head: int
    rows: int


def window_end(span: FeedSpan, start: int, want: int) -> int:
    """The last offset of a read from ``start`` that likely holds ``want`` of the tenant's rows.

    Never past the head; the head itself when the estimate reaches it, or when the span
    says nothing (no rows counted).
    """
    if want < 1:
        raise ValueError("want must be at least 1")
    if span.rows < 1:
        return span.head
    begin = max(start, span.first)
    spread = span.head - span.first + 1
    # ceil(want * slack * spread / rows) offsets, in integers (offsets reach 2^63).
    needed = -(-want * WINDOW_SLACK * spread // span.rows)
    return min(span.head, begin + needed - 1)
