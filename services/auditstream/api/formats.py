"""Export formats: stored rows -> bytes, chunk by chunk, in constant memory.

Shared by the streamed ``GET /v1/export`` and the asynchronous export jobs. Input is
what ``Store.query_events``/``Store.iter_events`` return (lists of row dicts keyed by
column name); every row goes through ``row_to_event`` so all formats carry exactly
the event shape the API serves.

* ``ndjson``: one JSON object per line, ``\\n``-terminated.
* ``json``: one JSON array of objects (``[]`` when nothing matched).
* ``csv``: RFC 4180 — a header row, ``\\r\\n`` line ends, fields quoted when they hold
  a comma, a quote or a line break, quotes doubled. Nested objects are flattened to
  dotted column names (``actor.id``, ``resource.type``, ``ingest.offset``). The column
  set is fixed (``CSV_COLUMNS``) whatever the rows hold, so files from different
  queries line up; an absent value is an empty field. ``changes`` (a list) and
  ``details`` (a map with free keys) stay JSON text in one column each, because
  per-key columns would make the header depend on the data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from auditstream.events.stored import row_to_event

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "encode_chunks",
    "event_to_csv_record",
    "file_extension",
    "media_type",
]

FORMATS: tuple[str, ...] = ("ndjson", "json", "csv")

_MEDIA_TYPES = {
    "ndjson": "application/x-ndjson",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}
_EXTENSIONS = {"ndjson": "ndjson", "json": "json", "csv": "csv"}

# The CSV header, in order. Dotted names are paths into the event JSON.
CSV_COLUMNS: tuple[str, ...] = (
    "event_id",
    "tenant_id",
    "occurred_at",
    "received_at",
    "action",
    "category",
    "severity",
    "outcome",
    "reason",
    "actor.id",
    "actor.type",
    "actor.name",
    "actor.email",
    "actor.ip",
    "actor.user_agent",
    "resource.type",
    "resource.id",
    "resource.name",
    "source.service",
    "source.host",
    "source.request_id",
    "changes",
    "details",
    "schema_version",
    "ingest.topic",
    "ingest.partition",
    "ingest.offset",
)
_CSV_PATHS: tuple[tuple[str, ...], ...] = tuple(tuple(c.split(".")) for c in CSV_COLUMNS)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def media_type(fmt: str) -> str:
    """The Content-Type of a file in ``fmt``; ValueError for an unknown format."""
    _check(fmt)
    return _MEDIA_TYPES[fmt]


def file_extension(fmt: str) -> str:
    """The file name extension (without the dot) for ``fmt``."""
    _check(fmt)
    return _EXTENSIONS[fmt]


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # lists (changes) and maps (details): compact JSON text with stable key order
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def event_to_csv_record(event: Mapping[str, Any]) -> list[str]:
    """One event (API JSON shape) as the CSV fields of ``CSV_COLUMNS``."""
    record: list[str] = []
    for path in _CSV_PATHS:
        value: Any = event
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
            if value is None:
                break
        record.append(_csv_value(value))
    return record


def _ndjson(chunks: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    for rows in chunks:
        if rows:
            yield b"\n".join([orjson.dumps(row_to_event(r)) for r in rows]) + b"\n"


def _json(chunks: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    first = True
    yield b"["
    for rows in chunks:
        if not rows:
            continue
        body = b",\n".join([orjson.dumps(row_to_event(r)) for r in rows])
        yield body if first else b",\n" + body
        first = False
    yield b"]\n"


def _csv(chunks: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue().encode()
    for rows in chunks:
        if not rows:
            continue
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([event_to_csv_record(row_to_event(r)) for r in rows])
        yield buffer.getvalue().encode()


def encode_chunks(fmt: str, chunks: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    """Encode chunks of stored rows as ``fmt``; one bytes item per non-empty chunk.

    Concatenating every yielded item gives the complete file (for ``json`` and ``csv``
    also when nothing matched: ``[]`` or the header alone). ValueError for an unknown
    format, raised on the call, before any chunk is consumed.
    """
    _check(fmt)
    if fmt == "ndjson":
        return _ndjson(chunks)
    if fmt == "json":
        return _json(chunks)
    return _csv(chunks)
