"""Errors raised by the store, drawn once as a tree::

    StoreError                  anything the store raises on purpose
    ├── StoreUnavailable        transient: the engine is down, slow, overloaded or out of memory,
    │                           or the failure is not provably the data's fault -> retry with backoff
    ├── StoreRejected           poison data: ClickHouse (or the client encoder) refused the rows
    │   │                       themselves -> never retry, route to the dead-letter topic
    │   └── QueryRejected       a read refused because of its parameter values (a date outside
    │                           DateTime64, an illegal argument) -> the caller's fault: a 400
    └── MigrationError          the schema on disk and the schema recorded in the database disagree

The split exists for the processor: a batch that raised ``StoreUnavailable`` is retried
inside the batch before the Kafka stream may advance, a batch that raised
``StoreRejected`` is not worth retrying. When in doubt we say "unavailable": a wrong
retry only costs time, a wrong rejection would move valid audit events to the DLQ.

``QueryRejected`` is only raised for reads (``classify(..., query=True)``), and only for
codes that name a bad argument or value: the API answers them 400 instead of a 503
that would send the client retrying a request that can never succeed. An outage
(network, timeout, memory, an unknown code) stays ``StoreUnavailable``, whatever the query.
"""

from __future__ import annotations

__all__ = [
    "DATA_ERROR_CODES",
    "QUERY_ARGUMENT_ERROR_CODES",
    "TRANSIENT_ERROR_CODES",
    "MigrationError",
    "QueryRejected",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "classify",
]

import struct

from clickhouse_connect.driver.exceptions import DataError, Error, OperationalError

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that mean "these values are bad":
# retrying the same rows can never succeed.
DATA_ERROR_CODES: frozenset[int] = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        376,  # CANNOT_PARSE_UUID_
        407,  # DECIMAL_OVERFLOW
        441,  # CANNOT_PARSE_IPV4
        442,  # CANNOT_PARSE_IPV6
        691,  # UNKNOWN_ELEMENT_OF_ENUM
    }
)

# Codes a read gets for the values it was given (query parameters, function arguments):
# the same query with the same values fails again, on any healthy server. Together with
# DATA_ERROR_CODES (a parameter that does not parse as its type) they make a read a
# client error (``QueryRejected``).
QUERY_ARGUMENT_ERROR_CODES: frozenset[int] = frozenset(
    {
        36,  # BAD_ARGUMENTS
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        44,  # ILLEGAL_COLUMN
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        407,  # DECIMAL_OVERFLOW
        427,  # CANNOT_COMPILE_REGEXP
        456,  # UNKNOWN_QUERY_PARAMETER
        457,  # BAD_QUERY_PARAMETER
    }
)

# Codes that are transient by nature. Unknown codes are treated as transient as well
# (see the module docstring); this list documents the expected ones.
TRANSIENT_ERROR_CODES: frozenset[int] = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)

# Exceptions the clickhouse-connect encoder raises while serialising a value that does not
# fit its column (a str for a UUID, 70000 for UInt16, a str for a DateTime64, ...). They
# happen before anything reaches the engine, so they are always about the data.
_ENCODER_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    ValueError,
    TypeError,
    OverflowError,
    AttributeError,
    struct.error,
)


class StoreError(Exception):
    """Base class of every error the store raises; ``code`` is the ClickHouse code when known."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class StoreUnavailable(StoreError):
    """Transient failure: retry the same call later (with backoff)."""


class StoreRejected(StoreError):
    """The rows themselves are invalid for the table: do not retry, dead-letter them."""


class QueryRejected(StoreRejected):
    """A read the engine refused because of the values it was given: do not retry it."""


class MigrationError(StoreError):
    """A migration failed, or an applied migration's file changed since it was applied."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def classify(exc: BaseException, *, encoding: bool = False, query: bool = False) -> StoreError:
    """Map a driver exception to ``StoreRejected``, ``QueryRejected`` or ``StoreUnavailable``.

    ``encoding=True`` marks exceptions raised around an insert, where a plain Python
    ``ValueError``/``TypeError`` can only come from encoding a row value. ``query=True``
    marks a read: an argument or value error there is ``QueryRejected``.
    """
    if isinstance(exc, StoreError):
        return exc
    code = getattr(exc, "code", None) if isinstance(exc, Error) else None
    message = _first_line(exc)
    if query and code is not None and (code in QUERY_ARGUMENT_ERROR_CODES or code in DATA_ERROR_CODES):
        return QueryRejected(message, code=code)
    if code in DATA_ERROR_CODES:
        return StoreRejected(message, code=code)
    encoder_error = isinstance(exc, _ENCODER_ERRORS) and not isinstance(exc, OperationalError)
    if code is None and encoding and encoder_error:
        return StoreRejected(message)
    return StoreUnavailable(message, code=code)
