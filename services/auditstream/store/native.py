"""Rows -> the body of a ``FORMAT Native`` insert, encoded ahead of the insert itself.

Why ahead: the processor writes one batch at a time, in order, so the write is the one
step no batch can overlap with another's. clickhouse-connect encodes the rows inside the
insert call, in Python under the GIL, about 5.5 µs of the ~20 µs an event's insert takes
(bench/RESULTS.md, issue 12 stop 22). Encoding on the validation thread, while the batch
before is being written, takes that off the serial step; the write then only hands the
engine bytes (``Client.raw_insert``: over HTTP the request body, in chDB a file it
reads).

The encoder is clickhouse-connect's own (``InsertContext`` + ``NativeTransform``), with
the column types read once from the table, so the bytes are exactly those
``Client.insert`` would have sent: one implementation of rows -> Native. One difference
over HTTP: the body goes uncompressed, where ``Client.insert`` compresses it when the
client negotiated lz4 or zstd (it compresses the statement line with the rows, which a
raw insert must not carry). On chDB nothing is compressed either way; against a server
it costs bandwidth, not correctness, and could not be measured here (no server).
"""

from __future__ import annotations

__all__ = ["EncodedRows", "encode_native"]

from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform


class EncodedRows(Sequence[tuple]):  # type: ignore[type-arg]
    """Rows (tuples in ``columns`` order) together with the body of their Native insert.

    A sequence of the rows themselves, so whatever takes rows takes these (the store's
    ``insert_rows`` is the one seam of every write, and tests wrap it); the store inserts
    ``body`` instead of encoding the rows again.
    """

    __slots__ = ("body", "columns", "table", "values")

    def __init__(self, table: str, columns: tuple[str, ...], values: tuple[tuple, ...], body: bytes) -> None:  # type: ignore[type-arg]
        self.table = table
        self.columns = columns
        self.values = values
        self.body = body

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: Any) -> Any:
        return self.values[index]


def encode_native(
    table: str,
    columns: Sequence[str],
    types: Sequence[ClickHouseType],
    rows: Sequence[Sequence[Any]],
    *,
    server_tz: tzinfo,
) -> EncodedRows:
    """Encode ``rows`` (tuples in ``columns`` order) for ``INSERT INTO table (columns) FORMAT Native``.

    Raises what the column encoders raise for a value a column cannot take
    (``ValueError``, ``TypeError``, ``struct.error``, ...), as ``Client.insert`` would.
    """
    values = tuple(rows)
    own = list(values)
    try:
        context = InsertContext(table, list(columns), list(types), data=own, server_tz=server_tz)
        body = b"".join(NativeTransform.build_insert(context))
    finally:
        # The context is in a reference cycle (store/client.py, ``insert_releasing``): it
        # must not keep the rows alive until an older-generation collection.
        own.clear()
    if context.insert_exception is not None:
        # The encoder logs the column and yields a marker instead of raising mid-stream.
        raise context.insert_exception
    # The first block starts with the statement (the HTTP insert carries it in the body);
    # a raw insert names table and columns itself.
    statement = f"INSERT INTO {table} ({', '.join(quote_identifier(c) for c in columns)}) FORMAT Native\n"
    prefix = statement.encode()
    if not body.startswith(prefix):
        raise ValueError("unexpected Native insert body (clickhouse-connect changed its framing?)")
    return EncodedRows(table, tuple(columns), values, body[len(prefix) :])
