"""Reading the dead-letter topic back, and replaying fixed records to the input topic.

The records are those :mod:`auditstream.processor.dlq` writes: the original bytes as
the value, the reason, the errors and the source position in headers. A record is
named by its position in the DLQ topic, ``PARTITION:OFFSET`` (a bare ``OFFSET`` when
only one partition has it).

Replay (``auditstream dlq replay``) re-publishes a record as it was, or with a
corrected payload, keyed by tenant like the SDK. It keeps the event's identity: an
event without ``event_id`` gets the id the processor would have given it at its
*original* position (:func:`~auditstream.events.ids.position_event_id`), so replaying
the same record twice stores it once. The payload is validated with the processor's
own ``parse_event`` before anything is sent.

Errors::

    DlqError
     ├── DlqUnavailable   broker unreachable, topic missing, read did not finish
     ├── RecordNotFound   no record at that position
     └── NotReplayable    the record cannot be replayed as it is (invalid, truncated, no position)
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from auditstream.events.ids import position_event_id
from auditstream.events.validation import FieldError, InvalidEvent, parse_event
from auditstream.processor.dlq import read_dead_letter_headers

__all__ = [
    "DlqError",
    "DlqRecord",
    "DlqUnavailable",
    "NotReplayable",
    "RecordNotFound",
    "Replay",
    "fetch_record",
    "parse_position",
    "prepare_replay",
    "publish",
    "read_records",
    "resolve_position",
]

_POSITION = re.compile(r"^(?:(\d{1,6}):)?(\d{1,19})$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A read of the topic up to its end must progress; a broker that stops answering ends it.
_STALL_SECONDS = 15.0
_CONNECT_TIMEOUT_MS = 10_000


class DlqError(Exception):
    """Base of this module's errors; the message is meant for the operator."""


class DlqUnavailable(DlqError):
    pass


class RecordNotFound(DlqError):
    pass


class NotReplayable(DlqError):
    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One dead letter: its own position and time, the original bytes, the headers."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return self.headers.get("auditstream.error.reason", "")

    @property
    def errors(self) -> list[Any]:
        try:
            errors = orjson.loads(self.headers.get("auditstream.error.errors", "[]"))
        except orjson.JSONDecodeError:
            return []
        return errors if isinstance(errors, list) else []

    @property
    def source(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) the record was consumed from, when the headers say."""
        try:
            return (
                self.headers["auditstream.source.topic"],
                int(self.headers["auditstream.source.partition"]),
                int(self.headers["auditstream.source.offset"]),
            )
        except (KeyError, ValueError):
            return None

    @property
    def rejected_at(self) -> str:
        return self.headers.get("auditstream.rejected_at") or _iso(self.timestamp_ms)

    @property
    def truncated(self) -> bool:
        return self.headers.get("auditstream.original.truncated") == "true"

    @property
    def tenant_id(self) -> str | None:
        """The tenant, when the payload (or else the record key) names a plausible one."""
        if self.value:
            try:
                doc = orjson.loads(self.value)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("tenant_id"), str):
                return doc["tenant_id"] if _TENANT.match(doc["tenant_id"]) else None
        if self.key:
            key = self.key.decode("utf-8", "replace")
            return key if _TENANT.match(key) else None
        return None

    def as_dict(self, *, payload: bool = False) -> dict[str, Any]:
        source = self.source
        out: dict[str, Any] = {
            "position": self.position,
            "partition": self.partition,
            "offset": self.offset,
            "rejected_at": self.rejected_at,
            "source": {"topic": source[0], "partition": source[1], "offset": source[2]} if source else None,
            "tenant_id": self.tenant_id,
            "reason": self.reason,
            "errors": self.errors,
            "truncated": self.truncated,
            "size": len(self.value) if self.value is not None else None,
        }
        if payload:
            out["payload"] = None if self.value is None else self.value.decode("utf-8", "backslashreplace")
        return out


def _iso(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")


def parse_position(text: str) -> tuple[int | None, int]:
    """``P:O`` -> (P, O); ``O`` -> (None, O). ValueError otherwise."""
    m = _POSITION.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a DLQ position (PARTITION:OFFSET, or OFFSET)")
    return (int(m.group(1)) if m.group(1) is not None else None), int(m.group(2))


# --- reading ---------------------------------------------------------------------------------


def _consumer(bootstrap: str, max_fetch_bytes: int) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max_fetch_bytes,
        fetch_max_bytes=max(max_fetch_bytes, 52428800),
        request_timeout_ms=_CONNECT_TIMEOUT_MS + 5000,
        connections_max_idle_ms=60_000,
    )


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_CONNECT_TIMEOUT_MS)
    try:
        await admin.start()
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic") == topic and entry.get("error_code") == 0:
            return sorted(p["partition"] for p in entry.get("partitions") or [])
    return []


async def _start(consumer: AIOKafkaConsumer, bootstrap: str, topic: str) -> list[TopicPartition]:
    # The admin client, not consumer.topics(): a consumer without a subscription has no
    # partition metadata to assign from.
    try:
        partitions = await asyncio.wait_for(_partitions(bootstrap, topic), _CONNECT_TIMEOUT_MS / 1000)
        if partitions:
            await asyncio.wait_for(consumer.start(), _CONNECT_TIMEOUT_MS / 1000)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise DlqUnavailable(f"broker {bootstrap} unavailable: {type(exc).__name__}: {exc}") from None
    if not partitions:
        raise DlqUnavailable(f"topic {topic} does not exist on {bootstrap}")
    return [TopicPartition(topic, p) for p in partitions]


async def _bounds(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, tuple[int, int]]:
    try:
        low = await consumer.beginning_offsets(tps)
        high = await consumer.end_offsets(tps)
    except KafkaError as exc:
        raise DlqUnavailable(f"cannot read the offsets of the DLQ: {exc}") from None
    return {tp: (low[tp], high[tp]) for tp in tps}


def _record(msg: Any) -> DlqRecord:
    return DlqRecord(
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=msg.timestamp,
        key=msg.key,
        value=msg.value,
        headers=read_dead_letter_headers(list(msg.headers or [])),
    )


async def _read_to(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], *, stop_after: int | None = None
) -> Iterable[Any]:
    """Every message of the assigned partitions up to ``ends`` (exclusive), partition by partition."""
    out: list[Any] = []
    remaining = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    last_progress = time.monotonic()
    while remaining:
        if time.monotonic() - last_progress > _STALL_SECONDS:
            raise DlqUnavailable(f"reading the DLQ made no progress for {_STALL_SECONDS:g} s")
        try:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
        except KafkaError as exc:
            raise DlqUnavailable(f"reading the DLQ failed: {exc}") from None
        for tp, messages in batches.items():
            if messages:
                last_progress = time.monotonic()
            for msg in messages:
                if msg.offset < ends[tp]:
                    out.append(msg)
                    if stop_after is not None and len(out) >= stop_after:
                        return out
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return out


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    since: datetime | None = None,
    reason: str | None = None,
    limit: int = 100,
    max_fetch_bytes: int = 16 * 1024 * 1024,
) -> list[DlqRecord]:
    """The ``limit`` most recent records (oldest first) since ``since`` whose reason contains ``reason``.

    Reads from ``since`` (or the start) to the end of each partition as it was when
    the call began; records arriving meanwhile are for the next call.
    """
    consumer = _consumer(bootstrap, max_fetch_bytes)
    try:
        tps = await _start(consumer, bootstrap, topic)
        bounds = await _bounds(consumer, tps)
        consumer.assign(tps)
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        starts: dict[TopicPartition, int] = {tp: low for tp, (low, _) in bounds.items()}
        if since_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            for tp in tps:
                at = found.get(tp)
                starts[tp] = at.offset if at is not None else bounds[tp][1]
        for tp in tps:
            consumer.seek(tp, starts[tp])
        messages = await _read_to(consumer, {tp: high for tp, (_, high) in bounds.items()})
    finally:
        await consumer.stop()
    needle = reason.lower() if reason else None
    kept: deque[DlqRecord] = deque(maxlen=limit)
    for msg in sorted(messages, key=lambda m: (m.timestamp, m.partition, m.offset)):
        record = _record(msg)
        if since_ms is not None and record.timestamp_ms < since_ms:
            continue
        if needle is not None and needle not in record.reason.lower():
            continue
        kept.append(record)
    return list(kept)


async def resolve_position(bootstrap: str, topic: str, partition: int | None, offset: int) -> tuple[int, int]:
    """(partition, offset) of a record; a bare offset must fall in exactly one partition."""
    if partition is not None:
        return partition, offset
    consumer = _consumer(bootstrap, 1024 * 1024)
    try:
        tps = await _start(consumer, bootstrap, topic)
        bounds = await _bounds(consumer, tps)
    finally:
        await consumer.stop()
    holding = [tp.partition for tp, (low, high) in bounds.items() if low <= offset < high]
    if not holding:
        raise RecordNotFound(f"no record at offset {offset} in any partition of {topic}")
    if len(holding) > 1:
        choices = ", ".join(f"{p}:{offset}" for p in holding)
        raise DlqError(f"offset {offset} exists in several partitions of {topic}: name one of {choices}")
    return holding[0], offset


async def fetch_record(
    bootstrap: str, topic: str, partition: int, offset: int, *, max_fetch_bytes: int = 16 * 1024 * 1024
) -> DlqRecord:
    """The record at ``partition:offset`` of the DLQ topic."""
    consumer = _consumer(bootstrap, max_fetch_bytes)
    try:
        tps = await _start(consumer, bootstrap, topic)
        tp = TopicPartition(topic, partition)
        if tp not in tps:
            raise RecordNotFound(f"{topic} has no partition {partition}")
        low, high = (await _bounds(consumer, [tp]))[tp]
        if not low <= offset < high:
            raise RecordNotFound(f"no record at {partition}:{offset} in {topic} (offsets {low}..{high - 1})")
        consumer.assign([tp])
        consumer.seek(tp, offset)
        messages = await _read_to(consumer, {tp: offset + 1}, stop_after=1)
    finally:
        await consumer.stop()
    for msg in messages:
        if msg.offset == offset:
            return _record(msg)
    raise RecordNotFound(f"no record at {partition}:{offset} in {topic} (removed by compaction?)")


# --- replay ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replay:
    """What one replay sends: the validated payload, keyed by tenant, and its identity."""

    record: DlqRecord
    tenant_id: str
    event_id: str
    value: bytes
    edited: bool


def prepare_replay(record: DlqRecord, payload: bytes | None = None) -> Replay:
    """Validate what would be replayed (``payload`` or the original bytes) and fix its id.

    Raises :class:`NotReplayable` naming the field when the event is still invalid.
    """
    edited = payload is not None
    raw = payload if edited else record.value
    if raw is None:
        raise NotReplayable(f"record {record.position} has no payload (a tombstone); replay it with --edit")
    if record.truncated and not edited:
        raise NotReplayable(
            f"record {record.position} was truncated when dead-lettered; "
            "replay it with --edit and the full event"
        )
    event = _validate(record, raw)
    if event.event_id is None:
        source = record.source
        if source is None:
            raise NotReplayable(
                f"record {record.position} has no source position headers, so its id cannot be derived; "
                "put an event_id in the payload (--edit)"
            )
        event_id = position_event_id(event.occurred_at, *source)
        doc = orjson.loads(raw)
        doc["event_id"] = str(event_id)
        raw = orjson.dumps(doc)
        event = _validate(record, raw)  # the id adds bytes: the size limit still holds
    return Replay(record, event.tenant_id, str(event.event_id), raw, edited)


def _validate(record: DlqRecord, raw: bytes) -> Any:
    try:
        return parse_event(raw)
    except InvalidEvent as exc:
        raise NotReplayable(f"record {record.position} is still invalid: {exc.reason}", exc.errors) from None


async def publish(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]]
) -> None:
    """Send (key, value, headers) records to ``topic`` in order and wait until the broker has them all."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=_CONNECT_TIMEOUT_MS + 5000,
        max_request_size=16 * 1024 * 1024,
    )
    try:
        await asyncio.wait_for(producer.start(), _CONNECT_TIMEOUT_MS / 1000)
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise DlqUnavailable(f"broker {bootstrap} unavailable: {type(exc).__name__}: {exc}") from None
    try:
        futures = [
            await producer.send(topic, key=key, value=value, headers=list(headers) or None)
            for key, value, headers in records
        ]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
    except (KafkaError, TimeoutError) as exc:
        raise DlqUnavailable(
            f"the broker did not acknowledge the replay: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        await producer.stop()
