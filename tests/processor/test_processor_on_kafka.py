"""The processor against the real broker and ClickHouse engine, in this process.

The faust app runs on the test's event loop; the store is the real one with a fault
switch at its seam (``insert_rows``), so an outage can be started and ended on cue.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from auditstream.config import Settings
from auditstream.demo.generator import generate_events
from auditstream.events.stored import COLUMNS
from auditstream.processor.dlq import read_dead_letter_headers
from auditstream.processor.service import Processor
from auditstream.store import EventFilter, Store
from auditstream.store.errors import StoreRejected, StoreUnavailable
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


class PickyStore(OutageStore):
    """The real store; ClickHouse "refuses" any batch holding a row of actor ``poison``.

    Stands for a row the table cannot take (a type or range error): the fault is
    injected at the seam because valid events never produce one for real.
    """

    def insert_rows(self, rows: Sequence[tuple], *, dedup_token: str | None = None) -> None:
        if any(row[_ACTOR_ID] == "poison" for row in rows):
            raise StoreRejected("Code: 53. TYPE_MISMATCH (injected)")
        super().insert_rows(rows, dedup_token=dedup_token)


_ACTOR_ID = COLUMNS.index("actor_id")


@pytest.fixture
async def store(clickhouse_dsn: str, clickhouse_database: str) -> AsyncIterator[OutageStore]:
    s = OutageStore(clickhouse_dsn, f"{clickhouse_database}_{uuid.uuid4().hex[:6]}")
    await asyncio.to_thread(s.open)
    yield s
    await asyncio.to_thread(s.close)


def _settings(kafka_bootstrap: str, topics: Topics, tmp_path, group: str) -> Settings:
    return Settings(
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


async def test_a_row_clickhouse_refuses_goes_to_the_dlq_and_the_partition_moves_on(
    kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str, clickhouse_database: str, tmp_path
) -> None:
    store = PickyStore(clickhouse_dsn, f"{clickhouse_database}_{uuid.uuid4().hex[:6]}")
    await asyncio.to_thread(store.open)
    group = f"test-{uuid.uuid4().hex[:8]}"
    events = list(generate_events(60, tenants=["acme"], seed=5))
    events[17]["actor"] = {"id": "poison"}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send(topics.events, orjson.dumps(event), key=b"acme")
        await producer.flush()
    finally:
        await producer.stop()
    # Not the default, so the assertion below sees the processor set it.
    settings = _settings(kafka_bootstrap, topics, tmp_path, group).model_copy(
        update={"switch_interval_ms": 2.0}
    )
    before = sys.getswitchinterval()
    assert before != pytest.approx(0.002)
    processor = Processor(settings, store)
    await processor.start()
    everything = EventFilter(tenant_id="acme", since=datetime(2000, 1, 1, tzinfo=UTC))
    try:
        # The processor's switch interval holds while it runs (processor/switch_interval.py).
        assert sys.getswitchinterval() == pytest.approx(settings.switch_interval_ms / 1000)
        await _until(lambda: store.count_events(everything) == len(events) - 1, "the other events stored")

        async def committed_all() -> bool:
            return await _committed(kafka_bootstrap, group, topics.events, topics.partitions) == len(events)

        deadline = time.monotonic() + DEADLINE_SECONDS
        while not await committed_all():
            assert time.monotonic() < deadline, "the partition did not move past the refused row"
            await asyncio.sleep(0.1)
    finally:
        await processor.stop()
        await asyncio.to_thread(store.close)
    assert sys.getswitchinterval() == pytest.approx(before), "stop gives the process its interval back"
    letters = await _dead_letters(kafka_bootstrap, topics.dlq, expected=1)
    assert len(letters) == 1
    headers = read_dead_letter_headers(letters[0].headers)
    assert "rejected by ClickHouse" in headers["auditstream.error.reason"]
    assert orjson.loads(letters[0].value)["actor"]["id"] == "poison"


async def _dead_letters(bootstrap: str, topic: str, *, expected: int) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
        for records in (await consumer.getmany(timeout_ms=300)).values():  # nothing more may come
            out.extend(records)
    finally:
        await consumer.stop()
    return out


async def test_nothing_is_committed_while_the_store_fails_and_everything_is_stored_after(
    kafka_bootstrap: str, topics: Topics, store: OutageStore, tmp_path
) -> None:
    group = f"test-{uuid.uuid4().hex[:8]}"
    settings = _settings(kafka_bootstrap, topics, tmp_path, group)
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


class OrderedWritesStore(Store):
    """The real store, recording every write and whether two ever overlapped.

    The first write is held until the processor has started validating the next
    batch (or a deadline passes): the pipelining under test is that the next batch
    is validated while the previous one is being written.
    """

    def __init__(self, *args: object, next_batch_started: threading.Event, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.next_batch_started = next_batch_started
        self.writes: list[list[tuple[int, int]]] = []  # (partition, offset) of each row, per insert
        self.overlapped = False
        self.overlap_seen_in_first_write = False
        self._active = 0
        self._lock = threading.Lock()

    def insert_rows(self, rows: Sequence[tuple], *, dedup_token: str | None = None) -> None:
        with self._lock:
            self._active += 1
            self.overlapped |= self._active > 1
            first = not self.writes
            self.writes.append([(row[_PARTITION], row[_OFFSET]) for row in rows])
        try:
            if first:
                self.overlap_seen_in_first_write = self.next_batch_started.wait(DEADLINE_SECONDS)
            super().insert_rows(rows, dedup_token=dedup_token)
        finally:
            with self._lock:
                self._active -= 1


_PARTITION = COLUMNS.index("kafka_partition")
_OFFSET = COLUMNS.index("kafka_offset")


async def test_the_next_batch_is_validated_during_a_write_and_writes_stay_in_offset_order(
    kafka_bootstrap: str,
    topics: Topics,
    clickhouse_dsn: str,
    clickhouse_database: str,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from auditstream.processor import service

    validations: list[int] = []
    next_batch_started = threading.Event()
    real_process_batch = service.process_batch

    def counting_process_batch(messages: Sequence[object], **kwargs: object) -> object:
        validations.append(len(messages))
        if len(validations) >= 2:
            next_batch_started.set()
        return real_process_batch(messages, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "process_batch", counting_process_batch)
    store = OrderedWritesStore(
        clickhouse_dsn,
        f"{clickhouse_database}_{uuid.uuid4().hex[:6]}",
        next_batch_started=next_batch_started,
    )
    await asyncio.to_thread(store.open)
    events = list(generate_events(N_EVENTS, tenants=["acme", "globex", "initech"], seed=11))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send(topics.events, orjson.dumps(event), key=event["tenant_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    settings = _settings(kafka_bootstrap, topics, tmp_path, f"test-{uuid.uuid4().hex[:8]}")
    assert settings.batches_in_flight == 2
    processor = Processor(settings, store)
    await processor.start()
    try:
        stored = lambda: sum(len(rows) for rows in store.writes) >= N_EVENTS  # noqa: E731
        await _until(stored, "every event written")
    finally:
        await processor.stop()
        await asyncio.to_thread(store.close)
    assert store.overlap_seen_in_first_write, "the second batch was not validated during the first write"
    assert not store.overlapped, "two writes ran at the same time"
    last: dict[int, int] = {}
    for rows in store.writes:
        for partition, offset in rows:  # each partition in offset order, within and across inserts
            assert offset > last.get(partition, -1), f"partition {partition} written out of order"
            last[partition] = offset
    assert sum(len(rows) for rows in store.writes) == N_EVENTS
