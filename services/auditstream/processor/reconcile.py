"""Reconciliation: is every committed offset accounted for?

For each partition of the input topic, every offset in ``[low watermark, committed)``
must be one of:

- **stored**: a row with this ``kafka_partition``/``kafka_offset`` is in ClickHouse;
- **dead-lettered**: a DLQ record names it in its ``auditstream.source.*`` headers;
- **duplicate**: the message carries a ``(tenant_id, event_id)`` that is stored at
  another offset (an exact copy, dropped: first write wins), found by reading the
  uncovered offsets back from Kafka. The identity includes the tenant: another
  tenant's event with the same id accounts for nothing;
- **expired**: the message's event is older than the store's retention, so the TTL
  has removed its row (or would have: such events are refused at validation now);
- **no record**: Kafka has no message at that offset (transaction markers).

Anything else is a gap: committed, yet neither stored nor dead-lettered. Offsets
at or after the committed one are not judged (not processed yet, or processed
and not committed: they will be replayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from auditstream.events.validation import InvalidEvent, parse_event
from auditstream.store.store import Store

__all__ = ["PartitionReport", "Report", "reconcile"]

log = logging.getLogger(__name__)

SOURCE_TOPIC = "auditstream.source.topic"
SOURCE_PARTITION = "auditstream.source.partition"
SOURCE_OFFSET = "auditstream.source.offset"


@dataclass
class PartitionReport:
    partition: int
    low: int
    committed: int
    stored: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    expired: int = 0
    no_record: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # inclusive offset ranges

    @property
    def missing(self) -> int:
        return sum(last - first + 1 for first, last in self.gaps)


@dataclass
class Report:
    topic: str
    group: str
    partitions: list[PartitionReport]
    rows: dict[str, int]

    @property
    def ok(self) -> bool:
        return not any(p.gaps for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "ok": self.ok,
            "rows": self.rows,
            "partitions": [{**asdict(p), "missing": p.missing} for p in self.partitions],
        }


async def reconcile(
    store: Store, bootstrap: str, topic: str, dlq_topic: str, group: str, *, max_fetch_bytes: int
) -> Report:
    committed = await _committed(bootstrap, group, topic)
    partitions = await partitions_of(bootstrap, [topic, dlq_topic])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        # assign() starts a position reset; "latest" could win the race with seek() and skip
        # records, "earliest" at worst re-reads ones that are filtered out.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max_fetch_bytes,
        fetch_max_bytes=max(max_fetch_bytes, 52428800),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions.get(topic, [])]
        lows = await consumer.beginning_offsets(tps) if tps else {}
        dlq_tps = [TopicPartition(dlq_topic, p) for p in partitions.get(dlq_topic, [])]
        dead = await _dead_lettered(consumer, dlq_tps, topic)
        reports = []
        for tp in tps:
            low = lows[tp]
            end = committed.get(tp.partition, low)
            report = PartitionReport(tp.partition, low, end)
            if end > low:
                stored = store.stored_offsets(topic, tp.partition, low, end)
                dlq = {o for o in dead.get(tp.partition, set()) if low <= o < end}
                report.stored = len(stored)
                report.dead_lettered = len(dlq - stored)
                uncovered = [o for o in range(low, end) if o not in stored and o not in dlq]
                await _judge(consumer, store, tp, uncovered, report)
            reports.append(report)
    finally:
        # aiokafka 0.14 re-raises the CancelledError of its own internal task when a consumer
        # without a group stops; the consumer is stopped all the same.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    return Report(topic, group, reports, store.row_counts(topic))


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0
    }


async def partitions_of(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Partition numbers of each existing topic of ``topics``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {
        t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described if t["error_code"] == 0
    }


async def _dead_lettered(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], topic: str
) -> dict[int, set[int]]:
    """Source positions named by the DLQ records that came from ``topic``."""
    found: dict[int, set[int]] = {}
    for message in await _read_all(consumer, tps):
        headers = {k: v for k, v in message.headers or []}
        if headers.get(SOURCE_TOPIC, b"").decode("utf-8", "replace") != topic:
            continue
        try:
            partition, offset = int(headers[SOURCE_PARTITION]), int(headers[SOURCE_OFFSET])
        except (KeyError, ValueError):
            continue
        found.setdefault(partition, set()).add(offset)
    return found


async def _read_all(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> list[Any]:
    if not tps:
        return []
    ends = await consumer.end_offsets(tps)
    starts = await consumer.beginning_offsets(tps)
    wanted = {tp: (starts[tp], ends[tp]) for tp in tps if ends[tp] > starts[tp]}
    return [m for tp, (s, e) in wanted.items() async for m in _read_range(consumer, tp, s, e)]


async def _read_range(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> AsyncIterator[Any]:
    consumer.assign([tp])
    consumer.seek(tp, start)
    while await consumer.position(tp) < end:
        batches = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
        for message in batches.get(tp, []):
            if message.offset >= end:
                return
            yield message


async def _judge(
    consumer: AIOKafkaConsumer,
    store: Store,
    tp: TopicPartition,
    uncovered: list[int],
    report: PartitionReport,
) -> None:
    """Read the uncovered offsets back from Kafka: a stored event_id accounts for them."""
    if not uncovered:
        return
    wanted = set(uncovered)
    ids: dict[int, tuple[str, UUID]] = {}
    expired: set[int] = set()
    oldest = datetime.now(UTC) - timedelta(days=store.retention_days)
    seen: set[int] = set()
    for first, last in _ranges(uncovered):
        async for message in _read_range(consumer, tp, first, last + 1):
            if message.offset not in wanted:
                continue
            seen.add(message.offset)
            try:
                event = parse_event(message.value)
            except InvalidEvent:
                continue  # invalid and not in the DLQ: a gap
            if event.occurred_at < oldest:
                expired.add(message.offset)
            elif event.event_id is not None:  # without one, its row could only be at this offset
                ids[message.offset] = (event.tenant_id, event.event_id)
    stored_keys = store.stored_event_keys(list(set(ids.values())))
    gap_offsets = []
    for offset in uncovered:
        if offset not in seen:
            report.no_record += 1
        elif offset in expired:
            report.expired += 1
        elif ids.get(offset) in stored_keys:
            report.duplicates += 1
        else:
            gap_offsets.append(offset)
    report.gaps = list(_ranges(gap_offsets))


def _ranges(offsets: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Sorted offsets as inclusive (first, last) runs."""
    first = last = None
    for o in sorted(offsets):
        if last is not None and o == last + 1:
            last = o
            continue
        if first is not None and last is not None:
            yield first, last
        first = last = o
    if first is not None and last is not None:
        yield first, last
