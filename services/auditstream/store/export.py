"""Exports encoded by ClickHouse: every matching event as NDJSON, JSON or CSV, streamed.

One query per export, ``FINAL`` and in sorting-key order, streamed through
clickhouse-connect's ``raw_stream`` (chDB hands over one ClickHouse block at a time, a
server an HTTP body): one snapshot of the log, the first byte after the engine's first
block, and the memory of a block in flight whatever the export's size. The stream is read
in ``slice_bytes`` pieces, each cut after its last line break so it holds whole lines:

* ``ndjson``: the ``row_to_event`` JSON of each row (``EVENT_JSON_SQL``; a test compares it
  with the Python function), one line per event. It is read as ``FORMAT TSV`` (TSVRaw is
  not one of the formats clickhouse-connect streams from chDB) and unescaped here with
  ``codecs.escape_decode``: TSV writes ``\\`` and ``\'`` (and C escapes for control
  characters, which JSON text never holds raw), exactly the escapes that function undoes.
  A TSV line break is always a row's end, so a piece cut after one never splits an escape.
* ``json``: one array of the same objects separated by ``,\n`` (the NDJSON rows with a
  ``,`` appended in SQL; the last one's separator is dropped); ``[]`` when nothing matched.
* ``csv``: RFC 4180 (``FORMAT CSV``, CRLF), the header written here once.
  ``CSV_COLUMNS`` are the dotted paths of the event JSON; ``changes`` and ``details``
  are compact JSON with sorted keys, escaped as orjson does, so Python's csv reader
  reads back the same records as from the former Python encoder. Every text field that
  starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
  ``'`` (OWASP's advice against CSV injection): a spreadsheet would otherwise run
  ``=HYPERLINK(...)`` sent as an actor name. NDJSON and JSON are never altered.

Rows are counted with ``bytes.count`` (C), never a Python loop per row. The first item
comes after the first read, so a query that fails outright fails before any byte.
Iterate an export on one thread: the stream belongs to a client opened on that thread
for this export and closed with it, also when the consumer stops early (closing the
stream ends the query).

Through stop 27 an export was a sequence of bounded materialised reads (per-minute plan,
windows, keyset chunks): a benchmark reading clickhouse-connect's stream line by line
(one byte per call) had made streaming look ~2k rows/s. Read in pieces it is faster and
holds less (``bench/RESULTS.md``, issue 12 stop 28).
"""

from __future__ import annotations

__all__ = [
    "CSV_COLUMNS",
    "CSV_FORMULA_PREFIXES",
    "EVENT_JSON_SQL",
    "FORMATS",
    "READ_SETTINGS",
    "SLICE_BYTES",
    "EventExport",
]

import codecs
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Literal

from auditstream.store.client import create_client
from auditstream.store.errors import StoreError, classify
from auditstream.store.filters import EventFilter, build_where

if TYPE_CHECKING:
    from auditstream.store.store import Store

FORMATS: tuple[str, ...] = ("ndjson", "json", "csv")
# Per-query settings of every export query (portable: valid on a ClickHouse server too).
# One thread and small blocks: the engine's working memory during a 10M-row export, in
# the API process with chDB, is what bounds the API's peak (VmHWM 10k -> 10M, NDJSON:
# +286 MB with the engine's defaults, +226 with one thread, +171 with 1,024-row blocks
# as well, +160 with 256) at the same rate (~345k rows/s; bench/RESULTS.md, stop 28).
READ_SETTINGS: dict[str, Any] = {"max_threads": 1, "max_block_size": 1024}
# What one read of the stream takes, and so about the size of one handed-over item.
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
    # format -> (select list, output settings, output format); all three stream from chDB.
    "ndjson": (EVENT_JSON_SQL, "", "TSV"),
    "json": (f"concat({EVENT_JSON_SQL}, ',')", "", "TSV"),
    "csv": (
        ", ".join(expr for _, expr in _CSV_FIELDS),
        "output_format_csv_crlf_end_of_line = 1, output_format_json_escape_forward_slashes = 0",
        "CSV",
    ),
}


def _settings_clause(*extra: str) -> str:
    """`` SETTINGS ...`` of ``READ_SETTINGS`` and ``extra``, in the SQL text: on chDB
    clickhouse-connect does not stream a query that carries a settings argument."""
    parts = [f"{k} = {v}" for k, v in READ_SETTINGS.items()] + [e for e in extra if e]
    return f" SETTINGS {', '.join(parts)}" if parts else ""


def _csv_records(piece: bytes) -> int:
    """Records starting in ``piece``, which starts at a line start (the stream's or after a ``\n``).

    A record starts with the quoted event_id, so with a ``"`` and a hex digit. Inside a
    quoted field every ``"`` is doubled and a closing quote is followed by ``,`` or the
    CRLF: a ``"`` after a line break followed by anything else starts a record.
    """
    starts = piece.count(b'\n"') - piece.count(b'\n""') - piece.count(b'\n",') - piece.count(b'\n"\r')
    if piece[:1] == b'"' and piece[1:2] not in (b'"', b",", b"\r"):
        starts += 1
    return starts


class EventExport:
    """The bytes of one export, produced when iterated (once, on one thread).

    ``rows`` counts the events handed out so far, ``bytes`` what was handed out and
    ``largest_item`` the largest item of rows (what a consumer holds at a time).
    """

    def __init__(
        self,
        store: Store,
        f: EventFilter,
        fmt: str,
        *,
        order: Order = "desc",
        slice_bytes: int = SLICE_BYTES,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        if slice_bytes < 1:
            raise ValueError("slice_bytes must be at least 1")
        self.store = store
        self.filter = f
        self.format = fmt
        self.order = order
        self.slice_bytes = slice_bytes
        self.rows = 0
        self.bytes = 0
        self.largest_item = 0
        self._where, self._params = build_where(f)

    def sql(self) -> str:
        """The one query of this export (values are parameters, bound by the engine)."""
        select, output_settings, output = _SELECT[self.format]
        d = "DESC" if self.order == "desc" else "ASC"
        return (
            f"SELECT {select} FROM {self.store.database}.audit_events FINAL"  # noqa: S608
            f" WHERE {self._where} ORDER BY occurred_at {d}, event_id {d}"
            f"{_settings_clause(output_settings)} FORMAT {output}"
        )

    def __iter__(self) -> Iterator[bytes]:
        fmt = self.format
        first = True
        for piece in self._lines():
            if fmt == "csv":
                rows, out = _csv_records(piece), piece
                if first:
                    out = _CSV_HEADER + out
            else:
                out = codecs.escape_decode(piece)[0]
                rows = out.count(b"\n")
                if fmt == "json":
                    # Every row ends in ",\n"; the separator goes in front of the next
                    # piece instead, so the last row ends the array cleanly.
                    out = (b"[" if first else b",\n") + out[:-2]
            first = False
            self.rows += rows
            self.bytes += len(out)
            self.largest_item = max(self.largest_item, len(out))
            yield out
        if first:  # nothing matched: a file of its format all the same
            end = {"csv": _CSV_HEADER, "json": b"[]\n"}.get(fmt, b"")
        else:
            end = b"]\n" if fmt == "json" else b""
        if end:
            self.bytes += len(end)
            yield end

    def _lines(self) -> Iterator[bytes]:
        """The stream in pieces of about ``slice_bytes`` that end after a line break."""
        with _engine_errors():
            client = create_client(self.store.dsn)
        try:
            with _engine_errors():
                stream: IO[bytes] = client.raw_stream(self.sql(), parameters=self._params)
            try:
                carry = b""
                while True:
                    with _engine_errors():
                        chunk = stream.read(self.slice_bytes)
                    if not chunk:
                        break
                    buf = carry + chunk if carry else chunk
                    cut = buf.rfind(b"\n") + 1
                    carry = buf[cut:]
                    if cut:
                        yield buf[:cut] if carry else buf
                if carry:  # every format ends its last line; anything else is a broken stream
                    raise StoreError(f"the export stream ended inside a line ({len(carry)} bytes)")
            finally:
                stream.close()
        finally:
            client.close()


@contextmanager
def _engine_errors() -> Iterator[None]:
    """The driver's failures as the store's errors; an export is a read (``query=True``)."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise classify(exc, query=True) from exc
