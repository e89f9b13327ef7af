"""AuditProducer against the real broker: exactly once, keyed by tenant, validated first."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from auditstream.demo.generator import generate_events
from auditstream.events.validation import InvalidEvent, parse_event
from auditstream.producer import AuditProducer, BrokerUnavailable, ProducerClosed
from tests.fixtures.kafka import Topics

pytestmark = pytest.mark.kafka

CONSUME_DEADLINE = 60.0


async def consume(
    bootstrap: str, topic: str, expected: int, *, deadline: float = CONSUME_DEADLINE, settle: float = 1.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning until ``expected`` records arrived (or the deadline).

    After reaching ``expected`` it keeps polling for ``settle`` seconds, so that
    a duplicate (more records than expected) would be seen. Bounded: never hangs.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    try:
        while loop.time() < stop_at:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in batches.values():
                records.extend(batch)
            if len(records) >= expected:
                stop_at = min(stop_at, loop.time() + settle)
    finally:
        await consumer.stop()
    return records


def event(tenant: str = "acme", **extra: Any) -> dict[str, Any]:
    return {
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "tenant_id": tenant,
        "action": "scan.initiated",
        "actor": {"id": "usr_1", "type": "user", "email": "ana@acme.example"},
        "resource": {"type": "scan", "id": "scn_1", "name": "test-credit-2"},
        **extra,
    }


async def test_events_arrive_once_keyed_by_tenant_in_order(kafka_bootstrap: str, topics: Topics) -> None:
    n = 600
    tenants = ["acme", "globex", "initech", "umbrella", "hooli"]
    emitted: list[tuple[str, uuid.UUID]] = []
    async with AuditProducer(bootstrap=kafka_bootstrap, topic=topics.events) as producer:
        for ev in generate_events(n, tenants=tenants, seed=11):
            emitted.append((ev["tenant_id"], await producer.emit(ev)))
    assert len({eid for _, eid in emitted}) == n

    records = await consume(kafka_bootstrap, topics.events, n)
    assert len(records) == n  # exactly once: nothing lost, nothing duplicated

    partitions_of: dict[str, set[int]] = defaultdict(set)
    order_seen: dict[str, list[uuid.UUID]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None and record.value is not None
        tenant = record.key.decode()
        body = orjson.loads(record.value)
        assert body["tenant_id"] == tenant
        parsed = parse_event(record.value)  # the processor's own check accepts every record
        assert parsed.event_id is not None and str(parsed.event_id) == body["event_id"]
        partitions_of[tenant].add(record.partition)
        order_seen[tenant].append(parsed.event_id)
    for tenant in tenants:
        assert len(partitions_of[tenant]) == 1, f"{tenant} spread over {partitions_of[tenant]}"
        assert order_seen[tenant] == [eid for t, eid in emitted if t == tenant]  # emit order kept


async def test_compact_json_and_given_event_id_kept(kafka_bootstrap: str, topics: Topics) -> None:
    given = uuid.UUID("0190f1c2-7d3e-7a4b-8c5d-6e7f8a9b0c1d")
    async with AuditProducer(bootstrap=kafka_bootstrap, topic=topics.events) as producer:
        assert await producer.emit_and_wait(event(event_id=str(given))) == given
        assigned = await producer.emit_and_wait(event(tenant="globex"))
    assert assigned.version == 7
    records = await consume(kafka_bootstrap, topics.events, 2)
    bodies = {orjson.loads(r.value)["event_id"]: r.value for r in records if r.value}
    assert set(bodies) == {str(given), str(assigned)}
    assert b": " not in bodies[str(given)] and b", " not in bodies[str(given)].split(b'"resource"')[0]


async def test_invalid_event_raises_naming_field_and_sends_nothing(
    kafka_bootstrap: str, topics: Topics
) -> None:
    bad_events = [
        (event(actor={"type": "user"}), "actor.id"),
        (event(action="Scan.Created"), "action"),
        (event(tenant="acme corp!"), "tenant_id"),
        (event(occurred_at="2026-03-10T10:00:00"), "occurred_at"),
        (event(details=["token"]), "details"),
        (event(outcome="maybe"), "outcome"),
        (event(details={"blob": "x" * 4000, **{f"k{i}": "y" * 4000 for i in range(20)}}), ""),
    ]
    async with AuditProducer(bootstrap=kafka_bootstrap, topic=topics.events) as producer:
        for bad, field in bad_events:
            with pytest.raises(InvalidEvent) as caught:
                await producer.emit(bad)
            assert field in [e["field"] for e in caught.value.errors], caught.value.reason
            if field:
                assert field in str(caught.value)
            with pytest.raises(InvalidEvent):
                await producer.emit_and_wait(bad)
        # A marker proves the topic is readable and that it is the only record.
        marker = await producer.emit_and_wait(event())
    records = await consume(kafka_bootstrap, topics.events, 1)
    assert [orjson.loads(r.value)["event_id"] for r in records if r.value] == [str(marker)]


async def test_audit_event_model_accepted(kafka_bootstrap: str, topics: Topics) -> None:
    model = parse_event(orjson.dumps(event(tenant="initech")))
    async with AuditProducer(bootstrap=kafka_bootstrap, topic=topics.events) as producer:
        event_id = await producer.emit(model)
        await producer.flush()
    records = await consume(kafka_bootstrap, topics.events, 1)
    assert len(records) == 1 and records[0].key == b"initech"
    assert parse_event(records[0].value).event_id == event_id


async def test_emit_before_start_is_refused() -> None:
    producer = AuditProducer(bootstrap="127.0.0.1:9", topic="t")
    with pytest.raises(ProducerClosed):
        await producer.emit(event())


async def test_unreachable_broker_fails_after_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BrokerUnavailable, match="did not answer"):
        async with AuditProducer(bootstrap="127.0.0.1:9", topic="t", start_timeout=1.5):
            pass
    assert loop.time() - started < 15
