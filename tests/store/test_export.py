"""store.export: exports encoded by ClickHouse, read in bounded windows and keyset chunks.

Tiny ``rows_per_query`` values put chunk boundaries inside bursts of events that share
one millisecond; the references are ``query_events`` (the keyset pages of the API) and
the former Python encoders. Memory boundedness is shown structurally: every query
returns at most ``rows_per_query`` events, every handed-over item is at most
``slice_bytes``, and the number of queries follows rows / ``rows_per_query``.
"""

from __future__ import annotations

import csv
import io
import math
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from auditstream.api.formats import CSV_COLUMNS
from auditstream.events.stored import row_to_event
from auditstream.store import EventExport, EventFilter, Store, StoreError
from auditstream.store.export import FORMATS, Window, plan_windows
from tests.api._support import csv_record
from tests.store.conftest import RowFactory

pytestmark = pytest.mark.clickhouse

BASE = datetime(2026, 1, 5, 10, tzinfo=UTC)
H = timedelta(hours=1)
MS = timedelta(milliseconds=1)
CSV_COLUMNS_LINE = (",".join(CSV_COLUMNS) + "\r\n").encode()


def export(store: Store, f: EventFilter, fmt: str, **kwargs: Any) -> tuple[bytes, EventExport]:
    e = EventExport(store, f, fmt, **kwargs)
    return b"".join(e), e


def events(fmt: str, body: bytes) -> list[dict[str, Any]]:
    if fmt == "ndjson":
        return [orjson.loads(line) for line in body.splitlines()]
    return orjson.loads(body)


def reference(store: Store, f: EventFilter, order: Any) -> list[dict[str, Any]]:
    return [row_to_event(r) for r in store.query_events(f, order=order, limit=100_000)]


@pytest.fixture
def burst(store: Store, tenant: str, make_row: RowFactory) -> EventFilter:
    """71 events: a burst of 40 in one millisecond and 10 in the next, then hours apart
    (3 h and 2 days, with empty hours between), all of the first 30 stored twice."""
    rows = []
    times = (
        [BASE] * 40 + [BASE + MS] * 10 + [BASE + 3 * H] * 5 + [BASE + 2 * 24 * H + i * MS for i in range(16)]
    )
    for i, at in enumerate(times):
        rows.append(
            make_row(
                tenant_id=tenant,
                occurred_at=at,
                received_at=at,
                actor_id=f"u{i % 3}",
                action="user.login" if i % 2 else "config.updated",
                actor_name=f'Name {i} "quoted", line\nbreak',
                changes=orjson.dumps([{"field": "f", "old": i, "new": None}]).decode() if i % 4 == 0 else "",
                details={"z": str(i), "a": "x/y\u2028"} if i % 5 == 0 else {},
                kafka_offset=i,
            )
        )
    store.insert_rows(rows)
    store.insert_rows(rows[:30])  # not merged yet: FINAL must collapse them
    return EventFilter(tenant)


def test_plan_windows_merges_hours_contiguously() -> None:
    hours = [(BASE, 3), (BASE + H, 2), (BASE + 5 * H, 4), (BASE + 6 * H, 20), (BASE + 9 * H, 1)]
    assert plan_windows(hours, 6) == [
        Window(None, BASE + 5 * H, 5),
        Window(BASE + 5 * H, BASE + 6 * H, 4),
        Window(BASE + 6 * H, BASE + 9 * H, 20),  # a burst above the limit: a window of its own
        Window(BASE + 9 * H, None, 1),
    ]
    assert plan_windows(hours, 100) == [Window(None, None, 30)]
    assert plan_windows([], 10) == []


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_chunk_boundaries_inside_one_millisecond(
    store: Store, burst: EventFilter, order: str, fmt: str
) -> None:
    want = reference(store, burst, order)
    assert len(want) == 71 and len({e["event_id"] for e in want}) == 71
    body, e = export(store, burst, fmt, order=order, rows_per_query=7)
    assert events(fmt, body) == want  # same events, same order: nothing skipped, repeated or duplicated
    assert e.rows == 71
    assert e.largest_read <= 7
    # One plan, then per window one read, or per 7 events a key query and a read.
    assert 1 + math.ceil(71 / 7) < e.queries <= 1 + 2 * (math.ceil(71 / 7) + 3)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_csv_reads_back_as_the_python_encoder_wrote(store: Store, burst: EventFilter, order: str) -> None:
    body, e = export(store, burst, "csv", order=order, rows_per_query=7)
    text = body.decode()
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n") and text.endswith("\r\n")
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(records[0]) == CSV_COLUMNS
    assert records[1:] == [csv_record(x) for x in reference(store, burst, order)]
    assert e.rows == 71  # records counted although fields hold line breaks


def test_json_is_the_ndjson_lines_in_one_array(store: Store, burst: EventFilter) -> None:
    ndjson, _ = export(store, burst, "ndjson", rows_per_query=7)
    body, _ = export(store, burst, "json", rows_per_query=7)
    assert body.startswith(b"[") and body.endswith(b"]\n")
    assert body == b"[" + b",\n".join(ndjson.splitlines()) + b"]\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_slices_are_bounded_and_queries_scale(store: Store, burst: EventFilter, fmt: str) -> None:
    whole, big = export(store, burst, fmt, rows_per_query=1000)
    assert big.queries == 2  # the plan and one read: every event fits one window
    e = EventExport(store, burst, fmt, rows_per_query=7, slice_bytes=64)
    items = list(e)
    assert b"".join(items) == whole
    # A slice, plus the CSV header on the first one or the '[' / ',\n' of a JSON read.
    bounds = [64 + (len(CSV_COLUMNS_LINE) if fmt == "csv" and i == 0 else 2) for i in range(len(items))]
    assert all(0 < len(item) <= bound for item, bound in zip(items, bounds, strict=True))
    assert len(items) >= len(whole) // 66
    assert e.largest_read <= 7 and e.queries > big.queries


def test_windows_span_empty_hours(store: Store, tenant: str, make_row: RowFactory) -> None:
    times = [BASE] * 3 + [BASE + 5 * H] * 3 + [BASE + 30 * H] * 3
    store.insert_rows(
        [make_row(tenant_id=tenant, occurred_at=t, kafka_offset=i) for i, t in enumerate(times)]
    )
    f = EventFilter(tenant)
    for order in ("asc", "desc"):
        body, e = export(store, f, "ndjson", order=order, rows_per_query=6)
        assert events("ndjson", body) == reference(store, f, order)
        assert e.queries == 3  # plan, [.., +30 h) with 6 events, [+30 h, ..) with 3
        assert e.largest_read == 6


def test_filters_apply(store: Store, burst: EventFilter) -> None:
    cases = [
        EventFilter(burst.tenant_id, actors=["u1"]),
        EventFilter(burst.tenant_id, actions=["config.*"]),
        EventFilter(burst.tenant_id, text="name 1"),
        EventFilter(burst.tenant_id, since=BASE + MS, until=BASE + 2 * 24 * H + 5 * MS),
    ]
    for f in cases:
        want = reference(store, f, "desc")
        assert 0 < len(want) < 71
        for fmt in ("ndjson", "json"):
            body, e = export(store, f, fmt, rows_per_query=4)
            assert events(fmt, body) == want, (f, fmt)
            assert e.rows == len(want)
        body, _ = export(store, f, "csv", rows_per_query=4)
        assert list(csv.reader(io.StringIO(body.decode(), newline="")))[1:] == [csv_record(x) for x in want]


def test_empty_result_in_every_format(store: Store, tenant: str) -> None:
    f = EventFilter(tenant)
    expected = {"ndjson": b"", "json": b"[]\n", "csv": CSV_COLUMNS_LINE}
    for fmt in FORMATS:
        body, e = export(store, f, fmt)
        assert body == expected[fmt]
        assert e.rows == 0 and e.queries == 1  # the plan found nothing to read


def test_arguments_and_store_errors(store: Store) -> None:
    f = EventFilter("acme")
    with pytest.raises(ValueError):
        EventExport(store, f, "xml")
    with pytest.raises(ValueError):
        EventExport(store, f, "csv", order="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EventExport(store, f, "csv", rows_per_query=0)
    closed = Store(store.dsn, store.database)
    with pytest.raises(StoreError):
        list(EventExport(closed, f, "ndjson"))


def test_uuid_ties_are_ordered_like_the_keyset_pages(store: Store, tenant: str, make_row: RowFactory) -> None:
    """Event ids compared as ClickHouse orders UUIDs, not as text: both sides must agree."""
    ids = [uuid.uuid4() for _ in range(25)]
    store.insert_rows([make_row(tenant_id=tenant, occurred_at=BASE, event_id=i) for i in ids])
    f = EventFilter(tenant)
    for order in ("asc", "desc"):
        body, _ = export(store, f, "ndjson", order=order, rows_per_query=2)
        assert [x["event_id"] for x in events("ndjson", body)] == [
            x["event_id"] for x in reference(store, f, order)
        ]


@pytest.fixture
def spread(store: Store, tenant: str, make_row: RowFactory) -> EventFilter:
    """240 events over 40 minutes and a burst of 60 in one millisecond, a third stored
    twice; some actor names hold a line break followed by quotes (CSV record counting)."""
    rows = []
    times = [BASE + (i % 40) * timedelta(minutes=1) + i * MS for i in range(180)] + [BASE + 7 * H] * 60
    for i, at in enumerate(times):
        name = ['x\n"y', '\n""', "plain", ""][i % 4]
        rows.append(make_row(tenant_id=tenant, occurred_at=at, actor_name=name, kafka_offset=i))
    store.insert_rows(rows)
    store.insert_rows(rows[::3])  # not merged yet: FINAL must collapse them per window
    return EventFilter(tenant)


@pytest.mark.parametrize("read_ahead", [True, False])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_byte_sized_reads_equal_one_query(
    store: Store, spread: EventFilter, fmt: str, order: str, read_ahead: bool
) -> None:
    """Many small reads (minute windows, keyset chunks in the burst) give the bytes of one read."""
    whole, one = export(store, spread, fmt, order=order, bytes_per_query=1 << 30)
    assert one.queries == 2 and one.rows == 240  # the plan and one read
    target = 4000  # a few events per read
    body, e = export(store, spread, fmt, order=order, bytes_per_query=target, read_ahead=read_ahead)
    assert body == whole
    assert e.rows == 240
    assert e.queries > one.largest_bytes // target  # many reads
    # The first read is sized from an assumed row width, the next ones from what was seen:
    # no read is far above the target (these rows are of similar width).
    assert e.largest_bytes <= 2 * target
    if fmt == "ndjson":
        assert events(fmt, body) == reference(store, spread, order)


def test_closing_early_stops_the_read_ahead_thread(store: Store, spread: EventFilter) -> None:
    e = EventExport(store, spread, "ndjson", bytes_per_query=2000)
    items = iter(e)
    first = next(items)
    assert first.count(b"\n") >= 1
    readers = [t for t in threading.enumerate() if t.name.startswith("auditstream-export-read")]
    assert readers  # the next read is under way on its own thread
    items.close()  # type: ignore[attr-defined]
    for t in readers:
        t.join(timeout=10)
        assert not t.is_alive()
    assert e.rows < 240
