"""Pre-encoded benchmark messages and a fast way to put them in a fresh topic.

Encoding happens once, before any clock starts, so every consumer measured (ours and
each baseline) reads the very same bytes and none pays for producing them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer

from auditstream.demo.generator import generate_events
from auditstream.events.ids import uuid7
from auditstream.kafka_admin import ensure_topics

TENANTS = [f"bench-{i:02d}" for i in range(12)]
PARTITIONS = 3


def encode_messages(n: int, *, seed: int = 5) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) pairs: realistic v1 events keyed by tenant, each with its own event_id."""
    end = datetime.now(UTC) - timedelta(minutes=1)
    out: list[tuple[bytes, bytes]] = []
    for event in generate_events(n, tenants=TENANTS, seed=seed, start=end - timedelta(days=2), end=end):
        event["event_id"] = str(uuid7())
        out.append((event["tenant_id"].encode(), orjson.dumps(event)))
    return out


def fresh_topic(prefix: str) -> str:
    return f"bench.{prefix}.{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    await ensure_topics(bootstrap, {topic: partitions})


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    # Large linger and batches: filling the topic is set-up, not what is measured.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=16 * 1024 * 1024,
    )


async def fill_topic(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Produce every message (keyed, so partitioned as the SDK would); returns seconds taken."""
    loop = asyncio.get_running_loop()
    producer = new_producer(bootstrap)
    await producer.start()
    t0 = loop.time()
    try:
        pending: list[asyncio.Future[object]] = []
        for key, value in messages:
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return loop.time() - t0


async def send_at_rate(
    producer: AIOKafkaProducer,
    topic: str,
    total: int,
    rate: float,
    seconds: float,
    message: Callable[[int], bytes],
) -> None:
    """Send ``message(i)`` for i < ``total`` at ``rate`` per second, to partition i % PARTITIONS.

    A 10 ms tick sends whatever the schedule says is due: the clock, not the send rate, sets
    the load, so a slow tick catches up instead of drifting. ``message`` is called just
    before its send (the place to note a send time). Stops 5 s after ``seconds`` at the latest.
    """
    t0 = time.monotonic()
    i = 0
    end = t0 + seconds
    while i < total and time.monotonic() < end + 5:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        while i < due:
            await producer.send(topic, value=message(i), partition=i % PARTITIONS)
            i += 1
        await asyncio.sleep(0.01)
    await producer.flush()
