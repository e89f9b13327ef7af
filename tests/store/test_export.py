"""store.export: exports encoded by ClickHouse, one streamed query read in pieces.

The references are ``query_events`` (the keyset pages of the API) and the former Python
encoders. Tiny ``slice_bytes`` values cut the stream inside lines, inside TSV escapes
and inside CSV fields that hold line breaks; whatever the size, the bytes are the same
and every item holds whole lines. Memory boundedness is shown structurally: an item is
at most one read plus the line it ended inside.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from auditstream.api.formats import CSV_COLUMNS
from auditstream.events.stored import row_to_event
from auditstream.store import EventExport, EventFilter, Store, StoreError
from auditstream.store.export import FORMATS, SLICE_BYTES
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


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_order_and_duplicates_match_the_keyset_pages(
    store: Store, burst: EventFilter, order: str, fmt: str
) -> None:
    want = reference(store, burst, order)
    assert len(want) == 71 and len({e["event_id"] for e in want}) == 71
    body, e = export(store, burst, fmt, order=order, slice_bytes=100)
    assert events(fmt, body) == want  # same events, same order: nothing skipped, repeated or duplicated
    assert e.rows == 71 and e.bytes == len(body)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_csv_reads_back_as_the_python_encoder_wrote(store: Store, burst: EventFilter, order: str) -> None:
    body, e = export(store, burst, "csv", order=order, slice_bytes=7)
    text = body.decode()
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n") and text.endswith("\r\n")
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(records[0]) == CSV_COLUMNS
    assert records[1:] == [csv_record(x) for x in reference(store, burst, order)]
    assert e.rows == 71  # records counted although fields hold line breaks


def test_json_is_the_ndjson_lines_in_one_array(store: Store, burst: EventFilter) -> None:
    ndjson, _ = export(store, burst, "ndjson", slice_bytes=100)
    body, _ = export(store, burst, "json", slice_bytes=100)
    assert body.startswith(b"[") and body.endswith(b"]\n")
    assert body == b"[" + b",\n".join(ndjson.splitlines()) + b"]\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_items_hold_whole_lines_and_are_bounded(store: Store, burst: EventFilter, fmt: str) -> None:
    whole, one = export(store, burst, fmt, slice_bytes=1 << 30)
    e = EventExport(store, burst, fmt, slice_bytes=64)
    items = list(e)
    assert b"".join(items) == whole
    assert len(items) > 10 and e.rows == one.rows == 71
    longest = max(len(line) for line in whole.split(b"\n")) + 1
    # One read, the rest of the line it ended inside, and the CSV header or the JSON
    # '[' / ',\n' / ']\n' around the rows.
    bound = 64 + longest + (len(CSV_COLUMNS_LINE) if fmt == "csv" else 2)
    assert all(0 < len(item) <= bound for item in items)
    assert e.largest_item == max(len(item) for item in items)
    if fmt != "json":  # every piece ends a line of the stream
        assert all(item.endswith(b"\n") for item in items)


def test_text_that_tsv_escapes_comes_back_unchanged(store: Store, tenant: str, make_row: RowFactory) -> None:
    """NDJSON is read as TSV and unescaped: backslashes, quotes and control characters survive."""
    names = [
        "back\\slash",
        "it's",
        "\\'",
        "\\\\'\\",
        "tab\there",
        "nul\x00end",
        "\\n literally",
        "é ✓ \u2028",
        "'",
    ]
    rows = [
        make_row(tenant_id=tenant, occurred_at=BASE + i * MS, actor_name=n, reason=n[::-1], details={"k": n})
        for i, n in enumerate(names)
    ]
    store.insert_rows(rows)
    f = EventFilter(tenant)
    for fmt in ("ndjson", "json"):
        for size in (1, 5, SLICE_BYTES):
            body, e = export(store, f, fmt, order="asc", slice_bytes=size)
            got = events(fmt, body)
            assert got == reference(store, f, "asc"), (fmt, size)
            assert [x["actor"]["name"] for x in got] == names
            assert e.rows == len(names)


def test_windows_span_empty_hours(store: Store, tenant: str, make_row: RowFactory) -> None:
    times = [BASE] * 3 + [BASE + 5 * H] * 3 + [BASE + 30 * H] * 3
    store.insert_rows(
        [make_row(tenant_id=tenant, occurred_at=t, kafka_offset=i) for i, t in enumerate(times)]
    )
    f = EventFilter(tenant)
    for order in ("asc", "desc"):
        body, e = export(store, f, "ndjson", order=order, slice_bytes=50)
        assert events("ndjson", body) == reference(store, f, order)
        assert e.rows == 9


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
            body, e = export(store, f, fmt, slice_bytes=300)
            assert events(fmt, body) == want, (f, fmt)
            assert e.rows == len(want)
        body, e = export(store, f, "csv", slice_bytes=300)
        assert list(csv.reader(io.StringIO(body.decode(), newline="")))[1:] == [csv_record(x) for x in want]
        assert e.rows == len(want)


def test_empty_result_in_every_format(store: Store, tenant: str) -> None:
    f = EventFilter(tenant)
    expected = {"ndjson": b"", "json": b"[]\n", "csv": CSV_COLUMNS_LINE}
    for fmt in FORMATS:
        body, e = export(store, f, fmt)
        assert body == expected[fmt]
        assert e.rows == 0


def test_arguments_and_store_errors(store: Store) -> None:
    f = EventFilter("acme")
    with pytest.raises(ValueError):
        EventExport(store, f, "xml")
    with pytest.raises(ValueError):
        EventExport(store, f, "csv", order="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EventExport(store, f, "csv", slice_bytes=0)
    missing = Store(store.dsn, "no_such_database")  # the query is refused by the engine
    with pytest.raises(StoreError):
        list(EventExport(missing, f, "ndjson"))


def test_uuid_ties_are_ordered_like_the_keyset_pages(store: Store, tenant: str, make_row: RowFactory) -> None:
    """Event ids compared as ClickHouse orders UUIDs, not as text: both sides must agree."""
    ids = [uuid.uuid4() for _ in range(25)]
    store.insert_rows([make_row(tenant_id=tenant, occurred_at=BASE, event_id=i) for i in ids])
    f = EventFilter(tenant)
    for order in ("asc", "desc"):
        body, _ = export(store, f, "ndjson", order=order, slice_bytes=64)
        assert [x["event_id"] for x in events("ndjson", body)] == [
            x["event_id"] for x in reference(store, f, order)
        ]


@pytest.fixture
def spread(store: Store, tenant: str, make_row: RowFactory) -> EventFilter:
    """240 events over 40 minutes and a burst of 60 in one millisecond, a third stored
    twice; some actor names hold a line break next to quotes or at their end (CSV record
    counting)."""
    rows = []
    times = [BASE + (i % 40) * timedelta(minutes=1) + i * MS for i in range(180)] + [BASE + 7 * H] * 60
    for i, at in enumerate(times):
        name = ['x\n"y', '\n""', "plain", "", "tail\n", "\n", '"\r\n"'][i % 7]
        rows.append(make_row(tenant_id=tenant, occurred_at=at, actor_name=name, kafka_offset=i))
    store.insert_rows(rows)
    store.insert_rows(rows[::3])  # not merged yet: FINAL must collapse them
    return EventFilter(tenant)


@pytest.mark.parametrize("size", [1, 37, 4000, 1 << 30])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_any_read_size_gives_the_same_bytes(
    store: Store, spread: EventFilter, fmt: str, order: str, size: int
) -> None:
    """Reads of one byte, of part of a line, of a few lines and of everything agree."""
    whole, one = export(store, spread, fmt, order=order, slice_bytes=SLICE_BYTES)
    assert one.rows == 240
    body, e = export(store, spread, fmt, order=order, slice_bytes=size)
    assert body == whole
    assert e.rows == 240
    if fmt == "ndjson":
        assert events(fmt, body) == reference(store, spread, order)
    if fmt == "csv":
        records = list(csv.reader(io.StringIO(body.decode(), newline="")))[1:]
        assert records == [csv_record(x) for x in reference(store, spread, order)]


def test_closing_early_cancels_the_stream(store: Store, spread: EventFilter) -> None:
    e = EventExport(store, spread, "ndjson", slice_bytes=2000)
    items = iter(e)
    first = next(items)
    assert first.count(b"\n") >= 1
    items.close()  # type: ignore[attr-defined]
    assert e.rows < 240
    # The stream and its client are gone: the same thread exports again, and the store's
    # own client still answers.
    again = EventExport(store, spread, "ndjson")
    assert b"".join(again).count(b"\n") == 240 == again.rows
    assert len(store.query_events(spread, limit=1000)) == 240
