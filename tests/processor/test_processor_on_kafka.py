"""The processor against the real broker and ClickHouse engine, in this process.

The faust app runs on the test's event loop; the store is the real one with a fault
switch at its seam (``insert_rows``), so an outage can be started and ended on cue.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from auditstream.config import Settings
from auditstream.demo.generator import generate_events
from auditstream.processor.service import Processor
from auditstream.store import EventFilter, Store
from auditstream.store.errors import StoreUnavailable
from tests.fixtures.kafka import Topics

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

N_EVENTS = 300
DEADLINE_SECONDS = 60.0


class OutageStore(Store):
    """The real store; while ``failing`` is set, every insert fails as during an outage."""

    failing = False
    attempts = 0

    def insert_rows(self, rows: Sequence[tuple], *, dedup_token: str | None = None) -> None:
        if self.failing:
            self.attempts += 1
            raise StoreUnavailable("injected outage")
        super().insert_rows(rows, dedup_token=dedup_token)


async def _until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(offsets[tp].offset for p in range(partitions) if (tp := TopicPartition(topic, p)) in offsets)


@pytest.fixture
async def store(clickhouse_dsn: str, clickhouse_database: str) -> AsyncIterator[OutageStore]:
    s = OutageStore(clickhouse_dsn, f"{clickhouse_database}_{uuid.uuid4().hex[:6]}")
    await asyncio.to_thread(s.open)
    yield s
    await asyncio.to_thread(s.close)


async def test_nothing_is_committed_while_the_store_fails_and_everything_is_stored_after(
    kafka_bootstrap: str, topics: Topics, store: OutageStore, tmp_path
) -> None:
    group = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic=topics.events,
        dlq_topic=topics.dlq,
        consumer_group=group,
        data_dir=tmp_path,
        batch_max_events=100,
        batch_max_seconds=0.2,
        write_retry_initial_seconds=0.05,
        write_retry_max_seconds=0.2,
    )
    events = list(generate_events(N_EVENTS, tenants=["acme"], seed=3))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send(topics.events, orjson.dumps(event), key=b"acme")
        await producer.flush()
    finally:
        await producer.stop()

    store.failing = True
    processor = Processor(settings, store)
    await processor.start()
    try:
        await _until(lambda: store.attempts >= 12, "the processor to retry the failing write")
        assert processor.readiness()["ready"] is False
        assert processor.readiness()["store_available"] is False
        # Faust commits every second; 12 retries at <= 0.2 s apart span more than one interval.
        assert await _committed(kafka_bootstrap, group, topics.events, topics.partitions) == 0

        store.failing = False
        everything = EventFilter(tenant_id="acme", since=datetime(2000, 1, 1, tzinfo=UTC))
        await _until(lambda: store.count_events(everything) == N_EVENTS, "all events stored")
        assert processor.readiness()["ready"] is True

        async def committed_all() -> bool:
            return await _committed(kafka_bootstrap, group, topics.events, topics.partitions) == N_EVENTS

        deadline = time.monotonic() + DEADLINE_SECONDS
        while not await committed_all():
            assert time.monotonic() < deadline, "offsets were not committed after the writes"
            await asyncio.sleep(0.1)
    finally:
        await processor.stop()
    assert store.count_events(everything) == N_EVENTS
