"""Exports encoded by ClickHouse: every matching event as NDJSON, JSON or CSV, in bounded pieces.

Why not one streamed query: on chDB, clickhouse-connect either materialises the whole
result of a streamed query (formats it does not stream, such as TSVRaw: 1M rows gave one
773 MB block and no first byte until the query ended) or streams it about one row per
block (~3k rows/s). A materialised query of a bounded range is fast (~155k rows/s for
50k rows), so an export is a sequence of such queries:

1. **Plan**: one count per minute, without FINAL (it only sizes the reads; duplicates
   make it an over-estimate). Consecutive minutes are merged into windows, each sized
   when it is about to be read: as many rows as make about ``bytes_per_query`` of
   encoded result at the widest bytes per row seen so far (at most
   ``rows_per_query``), so a read's memory is the same at every export size. The
   windows are contiguous and cover the whole filter range (the first is open towards
   the start of the read order, the last towards its end), so an event that arrives
   after the plan, between two planned minutes, is still read.
2. **Read**: one query per window, ``FINAL`` and in sorting-key order. A window's
   bounds are on ``occurred_at``, part of the sorting key (tenant_id, occurred_at,
   event_id) that duplicates share, so every copy of an event falls in one window
   and FINAL collapses it there. A window planned above its row limit (a burst
   inside one minute) is read in keyset chunks: a key-only query finds the
   limit-th key after the last one read (``LIMIT 1 OFFSET n-1``) and the chunk is
   the range (last key, that key] on (occurred_at, event_id), so a boundary inside
   one millisecond neither skips nor repeats an event. The reads run on a thread of
   the export with a client of its own, one read ahead: the engine builds the next
   result (chDB releases the GIL) while this one is handed over, and at most two
   results exist at a time.
3. **Hand over**: each result in slices of at most ``slice_bytes`` (the first slice of
   a file also carries the CSV header or the JSON ``[``, the first of a later JSON
   result its ``,\\n``), so a consumer's bounded queue bounds memory to about two
   results. Rows are counted with ``bytes.count`` (C), never a Python loop.

Every byte of the rows is written by ClickHouse:

* ``ndjson``: the ``row_to_event`` JSON of each row (``EVENT_JSON_SQL``; a test
  compares it with the Python function), ``FORMAT TSVRaw``, one line per event.
* ``json``: one array, the same objects separated by ``,\\n`` (``CustomSeparated``);
  ``[]`` when nothing matched.
* ``csv``: RFC 4180 (``FORMAT CSV``, CRLF), the header written here once.
  ``CSV_COLUMNS`` are the dotted paths of the event JSON; ``changes`` and ``details``
  are compact JSON with sorted keys, escaped as orjson does, so Python's csv reader
  reads back the same records as from the former Python encoder. Every text field that
  starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
  ``'`` (OWASP's advice against CSV injection): a spreadsheet would otherwise run
  ``=HYPERLINK(...)`` sent as an actor name. NDJSON and JSON are never altered.

Iterate an export on one thread: the plan uses that thread's client of the store.
"""

from __future__ import annotations

__all__ = [
    "BYTES_PER_QUERY",
    "CSV_COLUMNS",
    "CSV_FORMULA_PREFIXES",
    "EVENT_JSON_SQL",
    "FORMATS",
    "READ_SETTINGS",
    "ROWS_PER_QUERY",
    "SLICE_BYTES",
    "EventExport",
    "Window",
    "WindowPlanner",
    "plan_windows",
    "rows_for_bytes",
]

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from clickhouse_connect.driver.client import Client

from auditstream.store.client import create_client
from auditstream.store.errors import StoreError, classify
from auditstream.store.filters import DT64, EventFilter, build_where

if TYPE_CHECKING:
    from auditstream.store.store import Store

FORMATS: tuple[str, ...] = ("ndjson", "json", "csv")
# A read's encoded result aims at this size (bench/RESULTS.md, issue 12 stop 17: the
# peak RSS follows one read, not the export). Rows per read are capped as well. 32 MB:
# 1M NDJSON rows at 372k rows/s, peak 833 MB, against 248k rows/s and 696 MB at 8 MB
# (each read has a fixed cost of ~15 ms) and 336k rows/s and 923 MB before byte sizing.
# The API passes its setting (AUDITSTREAM_EXPORT_READ_BYTES, default this value) instead.
BYTES_PER_QUERY = 32 << 20
ROWS_PER_QUERY = 50_000
# Bytes per row assumed for the first read, before any result was seen.
INITIAL_ROW_BYTES = 1024
# Per-query settings of every read (portable: valid on a ClickHouse server too).
READ_SETTINGS: dict[str, Any] = {}
SLICE_BYTES = 1 << 20

Order = Literal["asc", "desc"]


def _lit(text: str) -> str:
    """``text`` as a ClickHouse string literal (for fixed patterns, never user input)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- one row as the event JSON of ``row_to_event`` -----------------------------------------
# Same keys, same order, same omission of empty optional fields; times as RFC 3339 UTC ms.

_T = "concat(replaceOne(toString({c}), ' ', 'T'), 'Z')"


def _opt(key: str, column: str) -> str:
    return f"if({column} != '', concat(',\"{key}\":', toJSONString({column})), '')"


def _obj(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    inner = ", ".join(f"if({c} != '', concat('\"{k}\":', toJSONString({c})), '')" for k, c in pairs)
    any_set = " OR ".join(f"{c} != ''" for _, c in pairs)
    return (
        f"if({any_set}, concat(',\"{key}\":{{', "
        f"arrayStringConcat(arrayFilter(x -> x != '', [{inner}]), ','), '}}'), '')"
    )


_SOURCE_PAIRS = (("service", "source_service"), ("host", "source_host"), ("request_id", "source_request_id"))
EVENT_JSON_SQL = (
    'concat(\'{"event_id":"\', toString(event_id), \'","tenant_id":\', toJSONString(tenant_id),'
    f' \',"occurred_at":"\', {_T.format(c="occurred_at")}, \'","received_at":"\','
    f" {_T.format(c='received_at')}, '\"',"
    " ',\"action\":', toJSONString(action), ',\"category\":', toJSONString(category),"
    " ',\"severity\":', toJSONString(severity), ',\"outcome\":', toJSONString(outcome),"
    f" {_opt('reason', 'reason')},"
    ' \',"actor":{"id":\', toJSONString(actor_id), \',"type":\','
    " toJSONString(if(actor_type != '', actor_type, 'user')),"
    f" {_opt('name', 'actor_name')}, {_opt('email', 'actor_email')}, {_opt('ip', 'actor_ip')},"
    f" {_opt('user_agent', 'actor_user_agent')}, '}}',"
    f" {_obj('resource', (('type', 'resource_type'), ('id', 'resource_id'), ('name', 'resource_name')))},"
    f" {_obj('source', _SOURCE_PAIRS)},"
    " if(changes != '', concat(',\"changes\":', changes), ''),"
    " if(length(details) > 0, concat(',\"details\":', toJSONString(details)), ''),"
    " ',\"schema_version\":', toJSONString(if(schema_version != '', schema_version, '1')),"
    ' \',"ingest":{"topic":\', toJSONString(kafka_topic), \',"partition":\','
    " toString(kafka_partition), ',\"offset\":', toString(kafka_offset),"
    " ',\"channel\":', toJSONString(if(ingest_channel != '', ingest_channel, 'kafka')),"
    f" {_opt('key_id', 'ingest_key_id')}, '}}}}')"
)

# --- one row as CSV fields -------------------------------------------------------------------
# JSON text in a CSV field is compared as text, so it must be what the Python encoder wrote:
# orjson.dumps(value, option=OPT_SORT_KEYS).

# toJSONString escapes a few characters differently from orjson: U+2028/U+2029 as \u2028
# (orjson writes them raw) and control characters with upper-case hex (orjson: lower
# case). Splitting the JSON text into escapes and runs keeps an escaped backslash followed
# by "u2028" text intact.
_ESCAPE_TOKENS = _lit(r"\\u[0-9A-Fa-f]{4}|\\.|[^\\]+")


def _orjson_escapes(json_sql: str) -> str:
    return (
        f"if(position({json_sql}, '\\\\u') = 0, {json_sql}, arrayStringConcat(arrayMap(t -> multiIf("
        "t = '\\\\u2028', char(226, 128, 168), t = '\\\\u2029', char(226, 128, 169),"
        " startsWith(t, '\\\\u'), lower(t), t),"
        f" extractAll({json_sql}, {_ESCAPE_TOKENS}))))"
    )


# ``changes`` is stored as orjson's compact JSON of a list of flat objects (scalars only).
# Each object is rebuilt with its members sorted by key, taking keys and values verbatim
# (orjson.dumps(orjson.loads(x)) == x for orjson's own scalars; re-serialising them in
# ClickHouse would change number spellings such as 1.5e+300).
_STR = r'"(?:[^"\\]|\\.)*"'
_OBJECT = _lit(r"\{(?:[^{}\"]|" + _STR + r")*\}")
_MEMBER = _lit("(" + _STR + r"):(" + _STR + r'|[^,{}\[\]"]+)')
_CHANGES_SORTED = (
    "if(changes = '', '', concat('[', arrayStringConcat(arrayMap(o -> concat('{', arrayStringConcat("
    f"arrayMap(m -> concat(m[1], ':', m[2]), arraySort(m -> JSONExtractString(m[1]), "
    f"extractAllGroupsVertical(o, {_MEMBER}))), ','), '}}'), extractAll(changes, {_OBJECT})), ','), ']'))"
)

# Cells a spreadsheet would evaluate (OWASP "CSV Injection"): prefixed with a single quote.
CSV_FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST_BYTES = ", ".join(f"char({ord(c)})" for c in CSV_FORMULA_PREFIXES)


def _neutralised(expr: str) -> str:
    """``expr`` (a String) with a leading ``'`` when it starts like a formula; portable SQL.

    ``substring`` counts bytes, which is right here: every prefix is one ASCII byte.
    """
    return f"if(substring({expr}, 1, 1) IN ({_FORMULA_FIRST_BYTES}), concat(char(39), {expr}), {expr})"


_CSV_FIELDS_RAW: tuple[tuple[str, str], ...] = (
    ("event_id", "toString(event_id)"),
    ("tenant_id", "tenant_id"),
    ("occurred_at", _T.format(c="occurred_at")),
    ("received_at", _T.format(c="received_at")),
    ("action", "action"),
    ("category", "category"),
    ("severity", "severity"),
    ("outcome", "outcome"),
    ("reason", "reason"),
    ("actor.id", "actor_id"),
    ("actor.type", "if(actor_type != '', actor_type, 'user')"),
    ("actor.name", "actor_name"),
    ("actor.email", "actor_email"),
    ("actor.ip", "actor_ip"),
    ("actor.user_agent", "actor_user_agent"),
    ("resource.type", "resource_type"),
    ("resource.id", "resource_id"),
    ("resource.name", "resource_name"),
    ("source.service", "source_service"),
    ("source.host", "source_host"),
    ("source.request_id", "source_request_id"),
    ("changes", _CHANGES_SORTED),
    ("details", f"if(length(details) = 0, '', {_orjson_escapes('toJSONString(mapSort(details))')})"),
    ("schema_version", "if(schema_version != '', schema_version, '1')"),
    ("ingest.topic", "kafka_topic"),
    ("ingest.partition", "kafka_partition"),
    ("ingest.offset", "kafka_offset"),
    ("ingest.channel", "if(ingest_channel != '', ingest_channel, 'kafka')"),
    ("ingest.key_id", "ingest_key_id"),
)
# Numbers cannot start a formula; every other column is text, neutralised.
_CSV_NUMERIC = frozenset({"ingest.partition", "ingest.offset"})
_CSV_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (name, expr if name in _CSV_NUMERIC else _neutralised(expr)) for name, expr in _CSV_FIELDS_RAW
)
# The CSV header, in order. Dotted names are paths into the event JSON. The set is fixed
# whatever the rows hold, so files from different queries line up; an absent value is an
# empty field.
CSV_COLUMNS: tuple[str, ...] = tuple(name for name, _ in _CSV_FIELDS)
_CSV_HEADER = (",".join(CSV_COLUMNS) + "\r\n").encode()

_SELECT: dict[str, tuple[str, str, str]] = {
    # format -> (select list, output settings, output format)
    "ndjson": (EVENT_JSON_SQL, "", "TSVRaw"),
    "json": (
        EVENT_JSON_SQL,
        "format_custom_escaping_rule = 'Raw', format_custom_row_after_delimiter = '',"
        " format_custom_row_between_delimiter = ',\\n'",
        "CustomSeparated",
    ),
    "csv": (
        ", ".join(expr for _, expr in _CSV_FIELDS),
        "output_format_csv_crlf_end_of_line = 1, output_format_json_escape_forward_slashes = 0",
        "CSV",
    ),
}


def _settings_clause(*extra: str) -> str:
    """`` SETTINGS ...`` of ``READ_SETTINGS`` and ``extra`` (in the SQL text: on chDB a
    settings argument of raw_query costs a SET and a restore per call)."""
    parts = [f"{k} = {v}" for k, v in READ_SETTINGS.items()] + [e for e in extra if e]
    return f" SETTINGS {', '.join(parts)}" if parts else ""


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """``occurred_at`` in [since, until) (None: open), about ``planned`` stored rows."""

    since: datetime | None
    until: datetime | None
    planned: int


class WindowPlanner:
    """Cuts contiguous windows off ascending bucket counts, in read order, one at a time.

    Each window is sized when it is asked for (``next(limit)``), so the export can size
    the next window from the bytes per row of the results so far. Consecutive buckets
    are merged while the total stays within ``limit``; a single bucket above it is a
    window of its own (read in keyset chunks). Whatever the limits, the windows handed
    out are contiguous and cover everything: the first is open towards the start of
    the read order, the last open towards its end, each ends where the next starts.
    ``desc`` cuts from the newest bucket down.
    """

    def __init__(self, buckets: Sequence[tuple[datetime, int]], order: Order = "asc") -> None:
        self._buckets = list(buckets)
        self._desc = order == "desc"
        self._lo, self._hi = 0, len(self._buckets)  # the buckets not handed out yet: [lo, hi)

    def next(self, limit: int) -> Window | None:
        """The next window of at most ``limit`` planned rows (one bucket if it is larger)."""
        lo, hi, b = self._lo, self._hi, self._buckets
        if lo >= hi:
            return None
        total = 0
        if self._desc:
            cut = hi
            while cut > lo and (not total or total + b[cut - 1][1] <= limit):
                cut -= 1
                total += b[cut][1]
            self._hi = cut
            until = None if hi == len(b) else b[hi][0]
            return Window(None if cut == lo == 0 else b[cut][0], until, total)
        cut = lo
        while cut < hi and (not total or total + b[cut][1] <= limit):
            total += b[cut][1]
            cut += 1
        self._lo = cut
        since = None if lo == 0 else b[lo][0]
        return Window(since, None if cut == hi == len(b) else b[cut][0], total)


def plan_windows(hours: Sequence[tuple[datetime, int]], limit: int) -> list[Window]:
    """Every window of ascending bucket counts at a fixed ``limit`` (``WindowPlanner``, asc)."""
    planner = WindowPlanner(hours)
    windows: list[Window] = []
    while (window := planner.next(limit)) is not None:
        windows.append(window)
    return windows


def rows_for_bytes(target_bytes: int, row_bytes: float, cap: int) -> int:
    """Rows per read so that a result is about ``target_bytes``: at least 1, at most ``cap``."""
    return max(1, min(cap, int(target_bytes // max(row_bytes, 1.0))))


# --- the export -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cursor:
    """Where the reads are: the window being read (None: take the next one) and its keyset."""

    where: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    chunked: bool = False
    after: tuple[datetime, UUID] | None = None
    open: bool = False


@dataclass(slots=True)
class _Read:
    body: bytes
    queries: int
    done: bool


class EventExport:
    """The bytes of one export, produced when iterated (once, on one thread).

    ``rows`` counts the events in what has been handed out (a query's events are
    counted when its first slice is); ``queries`` the engine round trips so far and
    ``largest_read`` the most events one query returned, ``largest_bytes`` the largest
    encoded result — what bounds memory.
    """

    def __init__(
        self,
        store: Store,
        f: EventFilter,
        fmt: str,
        *,
        order: Order = "desc",
        rows_per_query: int = ROWS_PER_QUERY,
        bytes_per_query: int = BYTES_PER_QUERY,
        slice_bytes: int = SLICE_BYTES,
        read_ahead: bool = True,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        if rows_per_query < 1 or slice_bytes < 1 or bytes_per_query < 1:
            raise ValueError("rows_per_query, bytes_per_query and slice_bytes must be at least 1")
        self.store = store
        self.filter = f
        self.format = fmt
        self.order = order
        self.rows_per_query = rows_per_query
        self.bytes_per_query = bytes_per_query
        self.slice_bytes = slice_bytes
        self.read_ahead = read_ahead
        self.rows = 0
        self.queries = 0
        self.largest_read = 0
        self.largest_bytes = 0
        self._row_bytes = float(INITIAL_ROW_BYTES)
        self._table = f"{store.database}.audit_events"
        self._where, self._params = build_where(f)

    def _limit(self) -> int:
        return rows_for_bytes(self.bytes_per_query, self._row_bytes, self.rows_per_query)

    def __iter__(self) -> Iterator[bytes]:
        fmt = self.format
        planner = WindowPlanner(self._bucket_counts(self.store._client()), self.order)
        # The CSV header and the JSON '[' travel with the first rows, so the first item
        # comes after the first read: a query that fails outright fails before any byte.
        prefix = {"csv": _CSV_HEADER, "json": b"["}.get(fmt, b"")
        first = True
        with _ReadAhead(self.store, enabled=self.read_ahead) as reads:
            cursor = _Cursor()
            pending = reads.submit(self._next_read, planner, cursor, self._limit())
            while pending is not None:
                read = pending.result()
                self.queries += read.queries
                body, done = read.body, read.done
                del read
                if body:
                    rows = max(1, self._count(body))
                    self.rows += rows
                    self.largest_read = max(self.largest_read, rows)
                    self.largest_bytes = max(self.largest_bytes, len(body))
                    # The widest rows seen so far size the next read: a result stays
                    # near bytes_per_query unless its rows are wider than any before.
                    seen = self._row_bytes if self.rows > rows else 0.0
                    self._row_bytes = max(seen, len(body) / rows)
                # One read ahead, no more: it runs in the engine (without the GIL) while
                # this result is handed over.
                pending = None if done else reads.submit(self._next_read, planner, cursor, self._limit())
                if not body:
                    continue
                if not first:
                    prefix = b",\n" if fmt == "json" else b""
                first = False
                size = self.slice_bytes
                if len(body) <= size:
                    yield prefix + body if prefix else body
                    continue
                for start in range(0, len(body), size):
                    piece = body[start : start + size]
                    yield prefix + piece if start == 0 and prefix else piece
                del body
        if fmt == "csv" and first:
            yield _CSV_HEADER
        if fmt == "json":
            yield b"[]\n" if first else b"]\n"

    def _count(self, body: bytes) -> int:
        # bytes.count runs in C; no Python loop over a result.
        if self.format == "ndjson":
            return body.count(b"\n")
        if self.format == "json":
            return body.count(b"\n") + 1  # rows are separated, not terminated
        # A CSV record starts with the quoted event_id. Inside a quoted field every '"' is
        # doubled, so a line break followed by '"' starts a record unless a second '"'
        # follows (a record never starts with an empty field: event_id is a UUID).
        return body.count(b'\n"') - body.count(b'\n""') + 1

    # --- queries (run on the read-ahead thread with its own client) --------------------------

    def _next_read(self, planner: WindowPlanner, cursor: _Cursor, limit: int, client: Client) -> _Read:
        """The next non-empty result (or the end), advancing ``cursor`` and ``planner``."""
        queries = 0
        while True:
            if not cursor.open:
                window = planner.next(limit)
                if window is None:
                    return _Read(b"", queries, done=True)
                cursor.where, cursor.params = self._window_where(window)
                cursor.chunked = window.planned > limit
                cursor.after = None
                cursor.open = True
            if not cursor.chunked:
                cursor.open = False
                body = self._data(client, cursor.where, cursor.params)
                queries += 1
            else:
                body, q = self._chunk(client, cursor, limit)
                queries += q
            if body:
                return _Read(body, queries, done=False)

    def _window_where(self, window: Window) -> tuple[str, dict[str, Any]]:
        where = self._where
        params = dict(self._params)
        if window.since is not None:
            where += f" AND occurred_at >= {{w_since:{DT64}}}"
            params["w_since"] = window.since
        if window.until is not None:
            where += f" AND occurred_at < {{w_until:{DT64}}}"
            params["w_until"] = window.until
        return where, params

    def _chunk(self, client: Client, cursor: _Cursor, limit: int) -> tuple[bytes, int]:
        """One keyset chunk of at most ``limit`` events of a burst window; closes it at the end.

        A key-only query finds the ``limit``-th key after the last one read and the chunk
        is (last key, that key] on (occurred_at, event_id): a boundary inside one
        millisecond neither skips nor repeats an event.
        """
        forward, backward = (">", "<") if self.order == "asc" else ("<", ">")
        where, params = cursor.where, dict(cursor.params)
        if cursor.after is not None:
            # A plain range on the sorting key (index pruning), then the tie on event_id.
            where += (
                f" AND occurred_at {forward}= {{k_ts:{DT64}}}"
                f" AND (occurred_at {forward} {{k_ts:{DT64}}} OR event_id {forward} {{k_id:UUID}})"
            )
            params["k_ts"], params["k_id"] = cursor.after
        last = self._nth_key(client, where, params, limit)
        if last is None:  # the rest of the window is at most ``limit`` events
            cursor.open = False
            return self._data(client, where, params), 2
        where += (
            f" AND occurred_at {backward}= {{u_ts:{DT64}}}"
            f" AND (occurred_at {backward} {{u_ts:{DT64}}} OR event_id {backward}= {{u_id:UUID}})"
        )
        params["u_ts"], params["u_id"] = last
        cursor.after = last
        return self._data(client, where, params), 2

    def _direction(self) -> str:
        return "DESC" if self.order == "desc" else "ASC"

    @staticmethod
    def _select(client: Client, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return list(client.query(sql + _settings_clause(), parameters=params).result_rows)
        except StoreError:
            raise
        except Exception as exc:
            raise classify(exc, query=True) from exc

    def _bucket_counts(self, client: Client) -> list[tuple[datetime, int]]:
        """Stored rows per minute, ascending, without FINAL (an over-estimate with duplicates)."""
        self.queries += 1
        sql = (
            f"SELECT toStartOfMinute(occurred_at) AS m, count() AS n FROM {self._table}"  # noqa: S608
            f" WHERE {self._where} GROUP BY m ORDER BY m"
        )
        return [(m, int(n)) for m, n in self._select(client, sql, dict(self._params))]

    def _nth_key(
        self, client: Client, where: str, params: dict[str, Any], n: int
    ) -> tuple[datetime, UUID] | None:
        """The (occurred_at, event_id) of the ``n``-th distinct event, if any."""
        d = self._direction()
        sql = (
            f"SELECT occurred_at, event_id FROM {self._table} FINAL WHERE {where}"  # noqa: S608
            f" ORDER BY occurred_at {d}, event_id {d} LIMIT 1 OFFSET {{k_skip:UInt64}}"
        )
        rows = self._select(client, sql, {**params, "k_skip": n - 1})
        if not rows:
            return None
        ts, event_id = rows[0]
        return ts, event_id

    def _data(self, client: Client, where: str, params: dict[str, Any]) -> bytes:
        select, output_settings, output = _SELECT[self.format]
        d = self._direction()
        sql = (
            f"SELECT {select} FROM {self._table} FINAL WHERE {where}"  # noqa: S608 - values are parameters
            f" ORDER BY occurred_at {d}, event_id {d}{_settings_clause(output_settings)} FORMAT {output}"
        )
        try:
            return client.raw_query(sql, parameters=params)
        except StoreError:
            raise
        except Exception as exc:
            raise classify(exc, query=True) from exc


class _ReadAhead:
    """Runs an export's reads on one worker thread with a client of its own.

    At most one read is submitted at a time (the export waits for it before it submits
    the next), so at most one result is being built while the previous one is handed
    over. The client is opened for this export and closed with it: a pooled client per
    short-lived thread would stay open until the store closes. Disabled, the reads run
    inline on the iterating thread with the store's client of that thread.
    """

    def __init__(self, store: Store, *, enabled: bool) -> None:
        self._store = store
        self._enabled = enabled
        self._executor: ThreadPoolExecutor | None = None
        self._client: Client | None = None

    def __enter__(self) -> _ReadAhead:
        return self

    def submit(self, fn: Callable[..., _Read], *args: Any) -> Future[_Read]:
        if not self._enabled:
            done: Future[_Read] = Future()
            try:
                done.set_result(fn(*args, self._store._client()))
            except BaseException as exc:
                done.set_exception(exc)
            return done
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auditstream-export-read")
        return self._executor.submit(self._run, fn, args)

    def _run(self, fn: Callable[..., _Read], args: tuple[Any, ...]) -> _Read:
        if self._client is None:
            try:
                self._client = create_client(self._store.dsn)
            except Exception as exc:
                raise classify(exc, query=True) from exc
        return fn(*args, self._client)

    def __exit__(self, *exc_info: object) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # Waits for a read still running (it cannot be interrupted), then closes the
        # client on the thread that used it.
        executor.submit(self._close_client)
        executor.shutdown(wait=True, cancel_futures=False)

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
