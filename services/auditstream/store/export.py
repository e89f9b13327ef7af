"""Exports encoded by ClickHouse: every matching event as NDJSON, JSON or CSV, in bounded pieces.

Why not one streamed query: on chDB, clickhouse-connect either materialises the whole
result of a streamed query (formats it does not stream, such as TSVRaw: 1M rows gave one
773 MB block and no first byte until the query ended) or streams it about one row per
block (~3k rows/s). A materialised query of a bounded range is fast (~155k rows/s for
50k rows), so an export is a sequence of such queries:

1. **Plan**: one count per hour, without FINAL (it only sizes the reads; duplicates
   make it an over-estimate). Consecutive hours are merged into windows of at most
   ``rows_per_query`` rows. The windows are contiguous and cover the whole filter
   range (the first is open below, the last open above), so an event that arrives
   after the plan, between two planned hours, is still read.
2. **Read**: one query per window, ``FINAL`` and in sorting-key order. A window's
   bounds are on ``occurred_at``, part of the sorting key (tenant_id, occurred_at,
   event_id) that duplicates share, so every copy of an event falls in one window
   and FINAL collapses it there. A window planned above ``rows_per_query`` (a burst
   inside one hour) is read in keyset chunks: a key-only query finds the
   ``rows_per_query``-th key after the last one read (``LIMIT 1 OFFSET n-1``) and the
   chunk is the range (last key, that key] on (occurred_at, event_id), so a boundary
   inside one millisecond neither skips nor repeats an event.
3. **Hand over**: each result in slices of at most ``slice_bytes`` (the first slice of
   a file also carries the CSV header or the JSON ``[``, the first of a later JSON
   result its ``,\\n``), so a consumer's bounded queue bounds memory to about one
   query's result.

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

Iterate an export on one thread: it uses that thread's client of the store.
"""

from __future__ import annotations

__all__ = [
    "CSV_COLUMNS",
    "CSV_FORMULA_PREFIXES",
    "EVENT_JSON_SQL",
    "FORMATS",
    "ROWS_PER_QUERY",
    "SLICE_BYTES",
    "EventExport",
    "Window",
    "plan_windows",
]

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from auditstream.store.errors import StoreError, classify
from auditstream.store.filters import DT64, EventFilter, build_where

if TYPE_CHECKING:
    from auditstream.store.store import Store

FORMATS: tuple[str, ...] = ("ndjson", "json", "csv")
# Rows per read: ~0.3 s and a few tens of MB of result on chDB; measured ~155k rows/s.
ROWS_PER_QUERY = 50_000
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
    " toString(kafka_partition), ',\"offset\":', toString(kafka_offset), '}}')"
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

# A CSV record starts with the quoted event_id. Inside a quoted field every '"' is doubled
# and a closing quote is followed by ',', so a line break followed by '"' and a hex digit
# only occurs where a record starts: counting those counts the records of a result.
_CSV_RECORD_START = re.compile(rb'\n"[0-9a-f]')

_SELECT: dict[str, tuple[str, str]] = {
    # format -> (select list, output clause)
    "ndjson": (EVENT_JSON_SQL, "FORMAT TSVRaw"),
    "json": (
        EVENT_JSON_SQL,
        "SETTINGS format_custom_escaping_rule = 'Raw', format_custom_row_after_delimiter = '',"
        " format_custom_row_between_delimiter = ',\\n' FORMAT CustomSeparated",
    ),
    "csv": (
        ", ".join(expr for _, expr in _CSV_FIELDS),
        "SETTINGS output_format_csv_crlf_end_of_line = 1, output_format_json_escape_forward_slashes = 0"
        " FORMAT CSV",
    ),
}


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """``occurred_at`` in [since, until) (None: open), about ``planned`` stored rows."""

    since: datetime | None
    until: datetime | None
    planned: int


def plan_windows(hours: Sequence[tuple[datetime, int]], limit: int) -> list[Window]:
    """Merge consecutive hour counts (ascending) into windows of at most ``limit`` rows.

    The windows are contiguous and cover everything: the first is open below, the last
    open above, each ends where the next starts. A single hour above ``limit`` is a
    window of its own (read in keyset chunks). No hours, no windows.
    """
    windows: list[Window] = []
    since: datetime | None = None
    total = 0
    for hour, n in hours:
        if total and total + n > limit:
            windows.append(Window(since, hour, total))
            since, total = hour, 0
        total += n
    if hours:
        windows.append(Window(since, None, total))
    return windows


# --- the export -------------------------------------------------------------------------------


class EventExport:
    """The bytes of one export, produced when iterated (once, on one thread).

    ``rows`` counts the events in what has been handed out (a query's events are
    counted when its first slice is); ``queries`` the engine round trips so far and
    ``largest_read`` the most events one query returned — what bounds memory.
    """

    def __init__(
        self,
        store: Store,
        f: EventFilter,
        fmt: str,
        *,
        order: Order = "desc",
        rows_per_query: int = ROWS_PER_QUERY,
        slice_bytes: int = SLICE_BYTES,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        if rows_per_query < 1 or slice_bytes < 1:
            raise ValueError("rows_per_query and slice_bytes must be at least 1")
        self.store = store
        self.filter = f
        self.format = fmt
        self.order = order
        self.rows_per_query = rows_per_query
        self.slice_bytes = slice_bytes
        self.rows = 0
        self.queries = 0
        self.largest_read = 0
        self._table = f"{store.database}.audit_events"
        self._where, self._params = build_where(f)

    def __iter__(self) -> Iterator[bytes]:
        fmt = self.format
        windows = plan_windows(self._hour_counts(), self.rows_per_query)
        if self.order == "desc":
            windows.reverse()
        # The CSV header and the JSON '[' travel with the first rows, so the first item
        # comes after the first read: a query that fails outright fails before any byte.
        prefix = {"csv": _CSV_HEADER, "json": b"["}.get(fmt, b"")
        first = True
        for window in windows:
            for body in self._read(window):
                rows = self._count(body)
                self.rows += rows
                self.largest_read = max(self.largest_read, rows)
                if not first:
                    prefix = b",\n" if fmt == "json" else b""
                first = False
                for start in range(0, len(body), self.slice_bytes):
                    piece = body[start : start + self.slice_bytes]
                    yield prefix + piece if start == 0 and prefix else piece
        if fmt == "csv" and first:
            yield _CSV_HEADER
        if fmt == "json":
            yield b"[]\n" if first else b"]\n"

    def _count(self, body: bytes) -> int:
        if self.format == "ndjson":
            return body.count(b"\n")
        if self.format == "json":
            return body.count(b"\n") + 1  # rows are separated, not terminated
        return len(_CSV_RECORD_START.findall(body)) + 1

    # --- queries -----------------------------------------------------------------------------

    def _select(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self.queries += 1
        try:
            return list(self.store._client().query(sql, parameters=params).result_rows)
        except StoreError:
            raise
        except Exception as exc:
            raise classify(exc, query=True) from exc

    def _raw(self, sql: str, params: dict[str, Any]) -> bytes:
        self.queries += 1
        try:
            return bytes(self.store._client().raw_query(sql, parameters=params))
        except StoreError:
            raise
        except Exception as exc:
            raise classify(exc, query=True) from exc

    def _hour_counts(self) -> list[tuple[datetime, int]]:
        sql = (
            f"SELECT toStartOfHour(occurred_at) AS h, count() AS n FROM {self._table}"  # noqa: S608
            f" WHERE {self._where} GROUP BY h ORDER BY h"
        )
        return [(h, int(n)) for h, n in self._select(sql, dict(self._params))]

    def _read(self, window: Window) -> Iterator[bytes]:
        """The encoded, non-empty results of ``window``, each at most about ``rows_per_query`` rows."""
        where = self._where
        params = dict(self._params)
        if window.since is not None:
            where += f" AND occurred_at >= {{w_since:{DT64}}}"
            params["w_since"] = window.since
        if window.until is not None:
            where += f" AND occurred_at < {{w_until:{DT64}}}"
            params["w_until"] = window.until
        if window.planned <= self.rows_per_query:
            body = self._data(where, params)
            if body:
                yield body
            return
        forward, backward = (">", "<") if self.order == "asc" else ("<", ">")
        after: tuple[datetime, UUID] | None = None
        while True:
            chunk_where, chunk_params = where, dict(params)
            if after is not None:
                # A plain range on the sorting key (index pruning), then the tie on event_id.
                chunk_where += (
                    f" AND occurred_at {forward}= {{k_ts:{DT64}}}"
                    f" AND (occurred_at {forward} {{k_ts:{DT64}}} OR event_id {forward} {{k_id:UUID}})"
                )
                chunk_params["k_ts"], chunk_params["k_id"] = after
            last = self._nth_key(chunk_where, chunk_params)
            if last is None:  # the rest of the window is at most rows_per_query events
                body = self._data(chunk_where, chunk_params)
                if body:
                    yield body
                return
            chunk_where += (
                f" AND occurred_at {backward}= {{u_ts:{DT64}}}"
                f" AND (occurred_at {backward} {{u_ts:{DT64}}} OR event_id {backward}= {{u_id:UUID}})"
            )
            chunk_params["u_ts"], chunk_params["u_id"] = last
            body = self._data(chunk_where, chunk_params)
            if body:
                yield body
            after = last

    def _direction(self) -> str:
        return "DESC" if self.order == "desc" else "ASC"

    def _nth_key(self, where: str, params: dict[str, Any]) -> tuple[datetime, UUID] | None:
        """The (occurred_at, event_id) of the ``rows_per_query``-th distinct event, if any."""
        d = self._direction()
        sql = (
            f"SELECT occurred_at, event_id FROM {self._table} FINAL WHERE {where}"  # noqa: S608
            f" ORDER BY occurred_at {d}, event_id {d} LIMIT 1 OFFSET {{k_skip:UInt64}}"
        )
        rows = self._select(sql, {**params, "k_skip": self.rows_per_query - 1})
        if not rows:
            return None
        ts, event_id = rows[0]
        return ts, event_id

    def _data(self, where: str, params: dict[str, Any]) -> bytes:
        select, output = _SELECT[self.format]
        d = self._direction()
        sql = (
            f"SELECT {select} FROM {self._table} FINAL WHERE {where}"  # noqa: S608 - values are parameters
            f" ORDER BY occurred_at {d}, event_id {d} {output}"
        )
        return self._raw(sql, params)
