"""The processing contract as a pure function: Kafka messages in, rows and rejects out.

No broker, no store: ``process_batch`` is what the agent calls once per batch and
what unit tests call directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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
from auditstream.events.fastpath import decode_many
from auditstream.events.stored import COLUMNS, enrich, utc_ms
from auditstream.events.validation import FieldError, InvalidEvent, check_retention, parse_event

if TYPE_CHECKING:
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
    is unchanged, and drops it once written.
    """

    rows: list[Row] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    messages: Sequence[Incoming] = ()
    encoded: EncodedRows | None = None

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
) -> ProcessedBatch:
    """Validate, attribute and enrich each message.

    Repeats of an identity (``(tenant_id, event_id)``) are kept here, in batch order: the
    write step settles them against the store and against each other in one pass
    (``identity.settle_against_store``), because which occurrence is the first write
    depends on what is already stored.

    ``attributor`` verifies the ingest-channel label of a record (events/attribution.py);
    without one every record counts as ``kafka`` and labelled ones are refused.

    ``native`` picks the native fast path when the installation has it (events/fastpath.py).
    """
    out = ProcessedBatch(messages=messages)
    received_at = utc_ms(received_at)  # once per batch, not once per event in enrich
    # The compiled fast path accepts the common valid event, the whole batch in one call (the
    # native one outside the GIL); anything it is not sure of goes through pydantic, which
    # accepts it too or names the field (fastpath.py).
    fast = decode_many([message.value for message in messages], now, native=native)
    for message, event in zip(messages, fast, strict=True):
        value = message.value
        try:
            if event is None:
                event = parse_event(value, now=now, retention_days=retention_days)
            elif retention_days is not None:
                check_retention(event, now, retention_days)
            attribution = _attribution(message, attributor)
        except InvalidEvent as exc:
            out.rejected.append(Rejected(message, exc.errors, exc.reason))
            continue
        row = enrich(
            event,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            received_at=received_at,
            channel=attribution.channel,
            key_id=attribution.key_id,
        )
        source = event.source
        if (
            source is not None
            and is_reserved_service(source.service)
            and attribution.channel != CHANNEL_INTERNAL
        ):
            out.rejected.append(
                Rejected(
                    message,
                    [FieldError(field="source.service", message=RESERVED_SOURCE_MESSAGE, type="reserved")],
                    f"source.service: {RESERVED_SOURCE_MESSAGE}",
                )
            )
            continue
        out.rows.append(Row(row, message))
    return out


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
