"""A three-broker cluster loses nothing when a broker is SIGKILLed mid-ingest and comes back.

Topics are created by the pipeline itself from the settings (replication 3,
``min.insync.replicas`` 2). 30,000 events go in through two kinds of producer at once: the
SDK (idempotent, ``acks=all``) and a plain aiokafka producer as any other client would
write them (``acks=all``, not idempotent, re-sending what was not acknowledged, as kcat or
a script does: copies in Kafka are expected and must be stored once). While they run, the
broker that leads the most input partitions is killed with SIGKILL, kept down for
``OUTAGE_SECONDS``, and started again. The pipeline process runs throughout (same pid)
and must follow the leader changes by itself. At the end every acknowledged event is read
back exactly once through the API, and reconcile finds no gap.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from auditstream.producer import AuditProducer
from tests.cluster.kafka_cluster import KafkaCluster, describe, leaders, topic_config
from tests.faults.support import all_committed, exported_ids, reconcile, until, valid_events
from tests.fixtures.kafka import Topics
from tests.fixtures.pipeline import running_pipeline

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline]

SDK_EVENTS = 15_000
PLAIN_EVENTS = 15_000
EVENTS_PER_SECOND = 600  # per producer: ~25 s of ingest, the kill in the middle
KILL_AFTER = 6_000  # acknowledged events (both producers) before the kill
OUTAGE_SECONDS = 10.0
PARTITIONS = 6


class Producer(threading.Thread):
    """Emits its events at a steady pace; records the event_ids the broker acknowledged."""

    def __init__(self, name: str, events: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True, name=name)
        self.events = events
        self.acked: list[str] = []
        self.resent = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self.go())
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.done.set()

    async def pace(self, started: float, sent: int) -> None:
        ahead = sent / EVENTS_PER_SECOND - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)  # pacing, not synchronisation

    async def go(self) -> None:
        raise NotImplementedError


class SdkProducer(Producer):
    def __init__(self, bootstrap: str, topic: str, events: list[dict[str, Any]], spool: Path) -> None:
        super().__init__("sdk", events)
        self.bootstrap, self.topic, self.spool = bootstrap, topic, spool

    async def go(self) -> None:
        async with AuditProducer(
            bootstrap=self.bootstrap,
            topic=self.topic,
            spool_dir=self.spool,
            request_timeout_ms=10_000,
            spool_close_timeout=120.0,
        ) as sdk:
            started = time.monotonic()
            for i, event in enumerate(self.events):
                self.acked.append(str(await sdk.emit(event)))  # accepted: sent or spooled
                await self.pace(started, i + 1)


class PlainProducer(Producer):
    """What a non-SDK client does: JSON bytes keyed by tenant, acks=all, re-send on error."""

    def __init__(self, bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
        super().__init__("plain", events)
        self.bootstrap, self.topic = bootstrap, topic

    async def go(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=10_000, linger_ms=5
        )
        await producer.start()
        try:
            started = time.monotonic()
            for first in range(0, len(self.events), 100):
                chunk = self.events[first : first + 100]
                await self.send_until_acked(producer, chunk, deadline=time.monotonic() + 120)
                await self.pace(started, first + len(chunk))
        finally:
            await producer.stop()

    async def send_until_acked(
        self, producer: AIOKafkaProducer, chunk: list[dict[str, Any]], deadline: float
    ) -> None:
        pending = chunk
        while pending:
            sent: list[tuple[dict[str, Any], Any]] = []
            failed = []
            for e in pending:
                try:
                    # send() itself can time out waiting for metadata while leaders move
                    # (KafkaTimeoutError): a client re-sends that one like any failed record.
                    sent.append(
                        (e, await producer.send(self.topic, orjson.dumps(e), key=e["tenant_id"].encode()))
                    )
                except KafkaError:
                    failed.append(e)
            for event, future in sent:
                try:
                    await future
                    self.acked.append(event["event_id"])
                except KafkaError:
                    failed.append(event)
            if failed and time.monotonic() > deadline:
                raise TimeoutError(f"{len(failed)} events not acknowledged in time")
            if failed:
                self.resent += len(failed)
                await asyncio.sleep(0.2)  # a client's back-off before re-sending, not a wait for a state
            pending = failed


@pytest.mark.timeout(600)
def test_broker_sigkill_in_a_three_node_cluster_loses_and_doubles_nothing(
    kafka_cluster: KafkaCluster, clickhouse_dsn: str, tmp_path: Path
) -> None:
    bootstrap = kafka_cluster.bootstrap
    suffix = uuid.uuid4().hex[:8]
    # Not created here: the pipeline creates them from its settings.
    topics = Topics(
        events=f"cluster.events.{suffix}", dlq=f"cluster.events.{suffix}.dlq", partitions=PARTITIONS
    )
    events = valid_events(SDK_EVENTS + PLAIN_EVENTS, seed=77)
    with running_pipeline(
        bootstrap,
        topics,
        clickhouse_dsn,
        AUDITSTREAM_TOPIC_REPLICATION_FACTOR="3",
        AUDITSTREAM_TOPIC_MIN_INSYNC_REPLICAS="2",
        AUDITSTREAM_BATCH_MAX_EVENTS="2000",
    ) as pipeline:
        assert pipeline.proc is not None
        pid = pipeline.proc.pid
        layout = asyncio.run(describe(bootstrap, topics.events))
        assert len(layout) == PARTITIONS and all(len(p["replicas"]) == 3 for p in layout.values()), layout
        for topic in (topics.events, topics.dlq):
            assert asyncio.run(topic_config(bootstrap, topic, "min.insync.replicas")) == "2"

        sdk = SdkProducer(bootstrap, topics.events, events[:SDK_EVENTS], tmp_path / "spool")
        plain = PlainProducer(bootstrap, topics.events, events[SDK_EVENTS:])
        started = time.monotonic()
        sdk.start()
        plain.start()
        before = leaders(bootstrap, topics.events)
        victim = Counter(before.values()).most_common(1)[0][0]  # node ids are cluster.sh's 1..3
        survivors = ",".join(f"127.0.0.1:{kafka_cluster.port(n)}" for n in (1, 2, 3) if n != victim)
        killed = False
        try:
            until(lambda: len(sdk.acked) + len(plain.acked) >= KILL_AFTER, "events before the kill", 120)
            kafka_cluster.kill(victim)
            killed = True
            killed_at = time.monotonic()
            acked_at_kill = len(sdk.acked) + len(plain.acked)
            moved: set[int] = set()

            def new_leaders() -> bool:
                now = leaders(survivors, topics.events)
                moved.update(p for p, leader in now.items() if before.get(p) == victim and leader != victim)
                led_by_victim = [p for p, leader in before.items() if leader == victim]
                return bool(now) and set(led_by_victim) <= moved

            until(new_leaders, "new leaders for the killed broker's partitions", 60)
            election_seconds = time.monotonic() - killed_at
            until(lambda: time.monotonic() - killed_at >= OUTAGE_SECONDS, "the end of the outage", 30)
            acked_in_outage = len(sdk.acked) + len(plain.acked) - acked_at_kill
            kafka_cluster.start_node(victim)
            killed = False
            outage = time.monotonic() - killed_at

            def back_in_sync() -> bool:
                now = asyncio.run(describe(bootstrap, topics.events))
                return all(victim in p["isr"] for p in now.values())

            until(back_in_sync, "the restarted broker back in every ISR", 120)
            resync_seconds = time.monotonic() - killed_at - outage
        finally:
            if killed:
                kafka_cluster.start_node(victim)
        until(lambda: sdk.done.is_set() and plain.done.is_set(), "both producers to finish", 240)
        assert sdk.error is None and plain.error is None, (repr(sdk.error), repr(plain.error))
        ingest_seconds = time.monotonic() - started
        acked = sdk.acked + plain.acked
        assert len(acked) == SDK_EVENTS + PLAIN_EVENTS

        until(lambda: all_committed(bootstrap, pipeline), "every offset committed", 240, pipeline.tail)
        assert pipeline.proc.poll() is None and pipeline.proc.pid == pid, "the processor was restarted"
        ids = exported_ids(pipeline)
        counts = Counter(ids)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        lost = set(acked) - set(counts)
        unexpected = set(counts) - set(acked)
        assert pipeline.stop() == 0
        code, report, output = reconcile(pipeline)
        print(
            f"\nkafka cluster: 3 brokers, RF 3, min ISR 2, {PARTITIONS} partitions; {len(acked)} events "
            f"(SDK {len(sdk.acked)}, plain {len(plain.acked)}, plain re-sends {plain.resent}) in "
            f"{ingest_seconds:.1f} s; broker {victim} SIGKILLed after {acked_at_kill} events, down "
            f"{outage:.1f} s ({acked_in_outage} events acknowledged meanwhile); leader changes seen "
            f"{len(moved)} (partitions {sorted(moved)}), new leaders after {election_seconds:.1f} s, back "
            f"in every ISR {resync_seconds:.1f} s after restart; read back {len(ids)}: duplicates "
            f"{duplicates}, lost {len(lost)}, unexpected {len(unexpected)}; reconcile exit {code}"
        )
        assert duplicates == 0 and not lost and not unexpected
        assert moved, "the kill moved no leader: the test proved nothing"
        assert code == 0 and report is not None and report["ok"], output
