"""SyncAuditProducer from plain synchronous code, also from several threads."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import defaultdict

import orjson
import pytest

from auditstream.demo.generator import generate_events
from auditstream.events.validation import InvalidEvent
from auditstream.producer import ProducerClosed, SyncAuditProducer
from tests.fixtures.kafka import Topics
from tests.producer.test_producer import consume, event

pytestmark = pytest.mark.kafka


def test_sync_producer_from_plain_code(kafka_bootstrap: str, topics: Topics) -> None:
    events = list(generate_events(200, tenants=["acme", "globex"], seed=5))
    with SyncAuditProducer(bootstrap=kafka_bootstrap, topic=topics.events) as producer:
        ids = [producer.emit(ev) for ev in events]
        with pytest.raises(InvalidEvent, match=r"actor\.id"):
            producer.emit(event(actor={"name": "no id"}))
        acked = producer.emit_and_wait(event(tenant="globex"), timeout=30)
        producer.flush(timeout=30)
    with pytest.raises(ProducerClosed):
        producer.emit(event())
    producer.close()  # idempotent

    records = asyncio.run(consume(kafka_bootstrap, topics.events, len(ids) + 1))
    got = [orjson.loads(r.value)["event_id"] for r in records if r.value]
    assert sorted(got) == sorted(str(i) for i in [*ids, acked])


def test_sync_producer_is_thread_safe_and_keeps_each_threads_order(
    kafka_bootstrap: str, topics: Topics
) -> None:
    per_thread = 250
    emitted: dict[str, list[uuid.UUID]] = {}
    errors: list[BaseException] = []
    with SyncAuditProducer(bootstrap=kafka_bootstrap, topic=topics.events, max_pending=64) as producer:

        def work(tenant: str) -> None:
            try:
                emitted[tenant] = [producer.emit(event(tenant=tenant)) for _ in range(per_thread)]
            except BaseException as exc:  # surfaced in the main thread below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(f"tenant-{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    records = asyncio.run(consume(kafka_bootstrap, topics.events, 4 * per_thread))
    assert len(records) == 4 * per_thread
    seen: dict[str, list[uuid.UUID]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        seen[r.key.decode()].append(uuid.UUID(orjson.loads(r.value)["event_id"]))
    assert seen == emitted
