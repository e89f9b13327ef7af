"""ensure_topics: creates what is missing, tolerates what exists, fails clearly when no broker answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from auditstream.kafka_admin import TopicSetupError, ensure_topics

pytestmark = pytest.mark.kafka


async def _partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def test_creates_missing_and_tolerates_existing(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    wanted = {f"ensure.a.{suffix}": 3, f"ensure.b.{suffix}": 1}
    await ensure_topics(kafka_bootstrap, wanted)
    assert await _partitions(kafka_bootstrap, list(wanted)) == wanted
    await ensure_topics(kafka_bootstrap, wanted)  # again: nothing to do, no error
    # Concurrent callers racing to create the same topic all succeed.
    racing = {f"ensure.c.{suffix}": 2}
    await asyncio.gather(*(ensure_topics(kafka_bootstrap, racing) for _ in range(3)))
    assert await _partitions(kafka_bootstrap, list(racing)) == racing


async def test_unreachable_broker_raises_after_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TopicSetupError, match="did not answer within"):
        await ensure_topics("127.0.0.1:9", {"x": 1}, wait_seconds=1.5)
    assert 1.0 <= loop.time() - started < 15
