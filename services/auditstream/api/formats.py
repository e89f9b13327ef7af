"""Export formats: their names, media types and file extensions.

Shared by the streamed ``GET /v1/export`` and the asynchronous export jobs; the bytes
themselves are written by ClickHouse (``store.export``):

* ``ndjson``: one JSON object per line, ``\\n``-terminated — the event shape the API
  serves (``row_to_event``).
* ``json``: one JSON array of those objects (``[]`` when nothing matched).
* ``csv``: RFC 4180 — a header row, ``\\r\\n`` line ends, quoted fields, quotes doubled.
  Nested objects are flattened to dotted column names (``actor.id``, ``resource.type``,
  ``ingest.offset``). The column set is fixed (``CSV_COLUMNS``) whatever the rows hold,
  so files from different queries line up; an absent value is an empty field.
  ``changes`` (a list) and ``details`` (a map with free keys) stay compact JSON text
  with sorted keys in one column each, because per-key columns would make the header
  depend on the data.
"""

from __future__ import annotations

from auditstream.store.export import CSV_COLUMNS, FORMATS

__all__ = ["CSV_COLUMNS", "FORMATS", "file_extension", "media_type"]

_MEDIA_TYPES = {
    "ndjson": "application/x-ndjson",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}
_EXTENSIONS = {"ndjson": "ndjson", "json": "json", "csv": "csv"}


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
