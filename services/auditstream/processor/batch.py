"""The processing contract as a pure function: Kafka messages in, rows and rejects out.

No broker, no store: ``process_batch`` is what the agent calls once per batch and
what unit tests call directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from auditstream.events.attribution import (
    CHANNEL_INTERNAL,
    KAFKA,
    Attribution,
    AttributionInvalid,
    Attributor,
    is_labelled,
    is_reserved_service,
)
from auditstream.events.fastpath import NATIVE, decode_many, native_rows
from auditstream.events.stored import COLUMNS, enrich, utc_ms
from auditstream.events.validation import FieldError, InvalidEvent, check_retention, parse_event

if TYPE_CHECKING:
    from auditstream.events.fastpath import FastEvent
    from auditstream.store.native import EncodedRows


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """What the processor needs of one consumed record (its position travels with it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Incoming(Protocol):
    """What the steps read of a record: a ``KafkaMessage`` or faust's ``Message``.

    The processor hands faust's messages over as they are (building a ``KafkaMessage``
    per record cost ~5% of the event loop's time at 25k events/s); each row and each
    reject keeps a reference to its message: that is how the write step names a row's
    partition and offset, the dead-letter step a reject's origin, and the commit step
    what to acknowledge.
    """

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Row:
    """An ``audit_events`` row (``values`` in ``COLUMNS`` order) with its source message.

    ``message`` travels with the values through the identity check, the write and the
    poison-row isolation, so there is no position to remap. A slotted pair: 0.14 µs per
    event where a tuple subclass with an attribute cost 0.7 µs (bench/RESULTS.md).
    """

    __slots__ = ("message", "values")

    def __init__(self, values: tuple, message: Incoming) -> None:  # type: ignore[type-arg]
        self.values = values
        self.message = message

    # Read like the tuple it wraps (tests and tools index rows by COLUMNS).
    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> Any:
        return self.values[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that is not a valid event (or not storable), and why."""

    message: Incoming
    errors: list[FieldError]
    reason: str


@dataclass(slots=True)
class ProcessedBatch:
    """One fetched batch on its way down the steps.

    ``messages`` is everything fetched (the commit step acknowledges all of it);
    ``rows`` are the valid events, ``rejected`` what goes to the dead-letter topic. The
    write step removes copies from ``rows`` and adds conflicts and poison rows to
    ``rejected``. ``encoded`` is ``rows`` as the body of their insert, when the validate
    step could encode them (store/native.py); the write step uses it only while ``rows``
    is unchanged, and drops it once written. ``native_body`` is the body of ``rows`` as
    ``process_batch`` built them, written by the native fast path for the columns of
    ``fastpath.NATIVE_COLUMNS`` (the validate step turns it into ``encoded``).
    """

    rows: list[Row] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    messages: Sequence[Incoming] = ()
    encoded: EncodedRows | None = None
    native_body: bytes | None = None

    @property
    def positions(self) -> list[tuple[int, int]]:
        """(partition, offset) of each row, read from its message."""
        return [(r.message.partition, r.message.offset) for r in self.rows]


def dedup_token(topic: str, rows: Sequence[Row]) -> str:
    """The deduplication token of one write of ``rows``: each partition's offset range.

    ``topic/0:10-14,1:11-15``. A retry of the same write (an insert whose outcome was
    not known) names the same ranges, so the store drops it. A batch is written in one
    insert, not one per partition: each insert has a fixed cost of ~30 ms in the engine
    whatever its size (bench/RESULTS.md, stop 20). The rows go in batch order, each
    partition's in offset order, so in ``audit_feed_v2`` (partitioned by ``received_at``, one
    value per batch) each partition still becomes visible as a prefix in offset order.
    """
    ranges: dict[int, tuple[int, int]] = {}
    for row in rows:
        message = row.message
        partition, offset = message.partition, message.offset
        first, last = ranges.get(partition, (offset, offset))
        ranges[partition] = (min(first, offset), max(last, offset))
    return f"{topic}/" + ",".join(f"{p}:{first}-{last}" for p, (first, last) in sorted(ranges.items()))


# Positions in a row (COLUMNS) of what identifies an event and what it says.
_EVENT_ID = COLUMNS.index("event_id")
_TENANT_ID = COLUMNS.index("tenant_id")
_CONTENT_HASH = COLUMNS.index("content_hash")
_SOURCE_SERVICE = COLUMNS.index("source_service")
_INGEST_CHANNEL = COLUMNS.index("ingest_channel")

CONFLICT_REASON = "conflict: event_id already stored with different content"
RESERVED_SOURCE_MESSAGE = "reserved for events written by auditstream itself"


def conflict(message: Incoming) -> Rejected:
    """The reject of an event that reuses a stored ``(tenant_id, event_id)`` with other content."""
    error = FieldError(field="event_id", message=CONFLICT_REASON, type="conflict")
    return Rejected(message, [error], CONFLICT_REASON)


def store_rejected(message: Incoming, error: str) -> Rejected:
    """The reject of a row ClickHouse refused as bad data (isolated by the sink)."""
    reason = f"rejected by ClickHouse: {error}"
    return Rejected(message, [FieldError(field="", message=reason, type="store_rejected")], reason)


def identity(row: Row) -> tuple[str, UUID]:
    """The identity of a stored event: ``(tenant_id, event_id)``."""
    values = row.values
    return values[_TENANT_ID], values[_EVENT_ID]


def row_hash(row: Row) -> bytes:
    return row.values[_CONTENT_HASH]


def process_batch(
    messages: Sequence[Incoming],
    *,
    received_at: datetime,
    now: datetime | None = None,
    attributor: Attributor | None = None,
    retention_days: int | None = None,
    native: bool = True,
    native_body: bool = False,
) -> ProcessedBatch:
    """Validate, attribute and enrich each message.

    Repeats of an identity (``(tenant_id, event_id)``) are kept here, in batch order: the
    write step settles them against the store and against each other in one pass
    (``identity.settle_against_store``), because which occurrence is the first write
    depends on what is already stored.

    ``attributor`` verifies the ingest-channel label of a record (events/attribution.py);
    without one every record counts as ``kafka`` and labelled ones are refused.

    ``native`` picks the native fast path when the installation has it (events/fastpath.py:
    rows built in Rust); ``native=False`` the msgspec one, then ``enrich``. ``native_body``
    asks the native path for the rows' Native insert body too (``ProcessedBatch.native_body``).
    """
    out = ProcessedBatch(messages=messages)
    received_at = utc_ms(received_at)  # once per batch, not once per event in enrich
    values = [message.value for message in messages]
    if native and NATIVE:
        # Rows straight from the bytes, the whole batch in one call, mostly outside the GIL;
        # ``None`` where pydantic decides (it accepts too, or names the field: fastpath.py).
        rows, body = native_rows(
            values,
            [message.topic for message in messages],
            [message.partition for message in messages],
            [message.offset for message in messages],
            received_at=received_at,
            now=now or datetime.now(UTC),
            retention_days=retention_days,
            encode=native_body,
        )
        as_encoded = True
        for message, row in zip(messages, rows, strict=True):
            as_encoded &= _take(out, message, row, None, received_at, now, attributor, retention_days)
        # The body holds every native row as built: right while each was taken as it is, and
        # the messages without one are all rejected (pydantic accepted none of them).
        if as_encoded:
            out.native_body = body
    else:
        # The msgspec fast path accepts the common valid event; pydantic decides the rest.
        for message, event in zip(messages, decode_many(values, now), strict=True):
            _take(out, message, None, event, received_at, now, attributor, retention_days)
    return out


def _take(
    out: ProcessedBatch,
    message: Incoming,
    row: tuple[Any, ...] | None,
    event: FastEvent | None,
    received_at: datetime,
    now: datetime | None,
    attributor: Attributor | None,
    retention_days: int | None,
) -> bool:
    """Add one message to ``out``: its row (given, or built from ``event`` or by pydantic) or its reject.

    True when ``out`` took ``row`` as given, or took nothing where no row was given.
    """
    try:
        if row is None:
            if event is None:
                event = parse_event(message.value, now=now, retention_days=retention_days)
            elif retention_days is not None:
                check_retention(event, now, retention_days)
        attribution = _attribution(message, attributor)
    except InvalidEvent as exc:
        out.rejected.append(Rejected(message, exc.errors, exc.reason))
        return row is None
    as_given = row is not None
    if row is None:
        row = enrich(
            event,  # type: ignore[arg-type]  # parse_event or the fast path gave one
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            received_at=received_at,
            channel=attribution.channel,
            key_id=attribution.key_id,
        )
    elif attribution is not KAFKA:
        # The native row says ``kafka``; a verified label names another channel and its key.
        row = (*row[:_INGEST_CHANNEL], attribution.channel, attribution.key_id)
        as_given = False
    if is_reserved_service(row[_SOURCE_SERVICE]) and attribution.channel != CHANNEL_INTERNAL:
        out.rejected.append(
            Rejected(
                message,
                [FieldError(field="source.service", message=RESERVED_SOURCE_MESSAGE, type="reserved")],
                f"source.service: {RESERVED_SOURCE_MESSAGE}",
            )
        )
        return False
    out.rows.append(Row(row, message))
    return as_given


def _attribution(message: Incoming, attributor: Attributor | None) -> Attribution:
    headers = getattr(message, "headers", None)
    if not headers:
        return KAFKA
    try:
        if attributor is None:
            if is_labelled(headers):
                raise AttributionInvalid("a labelled record, but this processor holds no ingest secret")
            return KAFKA
        return attributor.verify(headers, message.value or b"")
    except AttributionInvalid as exc:
        raise InvalidEvent([FieldError(field="", message=str(exc), type="attribution")]) from None
