"""The producer's on-disk spool: bounded, never a silent drop, emit order kept, left-overs sent first.

An unreachable broker is an address where nothing listens (127.0.0.1 on a free port);
the real broker drains the spool.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from auditstream.producer import AuditProducer, SpoolFull, encode_event
from auditstream.producer.spool import Spool
from tests.fixtures.kafka import Topics, free_port
from tests.producer.test_producer import consume

TENANTS = ["acme", "globex", "initech"]


def _event(tenant: str, n: int) -> dict[str, Any]:
    return {
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "tenant_id": tenant,
        "action": "scan.initiated",
        "actor": {"id": f"u-{n}"},
        "details": {"n": str(n)},
    }


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _unreachable() -> str:
    return f"127.0.0.1:{free_port()}"


def test_spool_keeps_emit_order_and_size_across_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1024 * 1024)
    encoded = [encode_event(_event(TENANTS[i % 3], i)) for i in range(20)]
    for seq, e in reversed(list(enumerate(encoded, start=1))):  # appended out of order on purpose
        spool.append(seq, e)
    size = spool.size
    spool.close()

    reopened = Spool(tmp_path, max_bytes=1024 * 1024)
    try:
        assert (reopened.depth, reopened.size, reopened.last_seq) == (20, size, 20)
        assert [e.event_id for _, e in reopened.peek(100)] == [e.event_id for e in encoded]
        assert _sample("auditstream_producer_spool_events") == 20
        reopened.remove([1, 2, 3])
        assert reopened.depth == 17 and _sample("auditstream_producer_spool_events") == 17
    finally:
        reopened.close()


async def test_full_spool_raises_spool_full_and_drops_nothing(tmp_path: Path) -> None:
    full_before = _sample("auditstream_producer_spool_full_total")
    producer = AuditProducer(
        bootstrap=_unreachable(),
        topic="audit.events",
        spool_dir=tmp_path,
        spool_max_bytes=8 * 1024,
        start_timeout=0.3,
        spool_close_timeout=0.2,
    )
    await producer.start()  # a spool lets the producer start without a broker
    accepted: list[uuid.UUID] = []
    with pytest.raises(SpoolFull) as raised:
        for n in range(10_000):
            accepted.append(await producer.emit(_event("acme", n)))
    message = str(raised.value)
    assert "spool" in message and "full" in message and str(tmp_path) in message, message
    assert 0 < len(accepted) < 10_000
    assert _sample("auditstream_producer_spool_events") == len(accepted)
    assert _sample("auditstream_producer_spool_full_total") == full_before + 1
    with pytest.raises(SpoolFull):  # still full: refused again, never dropped silently
        await producer.emit(_event("acme", -1))
    await producer.close()  # nothing delivered, nothing lost: it stays on disk

    left = Spool(tmp_path)
    try:
        assert [e.event_id for _, e in left.peek(len(accepted) + 10)] == accepted
    finally:
        left.close()


async def test_events_left_in_the_spool_are_sent_first_in_tenant_order(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    # 1. The broker is unreachable: everything goes to the spool and stays there at close.
    offline = AuditProducer(
        bootstrap=_unreachable(),
        topic=topics.events,
        spool_dir=tmp_path,
        start_timeout=0.3,
        spool_close_timeout=0.3,
    )
    await offline.start()
    spooled = [await offline.emit(_event(TENANTS[n % 3], n)) for n in range(300)]
    assert _sample("auditstream_producer_spool_events") == 300
    await offline.close()
    assert _sample("auditstream_producer_spool_events") == 300

    # 2. The next producer on the same folder reaches the broker: the spool goes first.
    sent_before = _sample("auditstream_producer_spool_sent_total")
    async with AuditProducer(bootstrap=kafka_bootstrap, topic=topics.events, spool_dir=tmp_path) as online:
        fresh = [await online.emit(_event(TENANTS[n % 3], 300 + n)) for n in range(300)]
    assert _sample("auditstream_producer_spool_events") == 0
    # The 300 left-overs, and the fresh events emitted while they drained (spooled behind them).
    assert _sample("auditstream_producer_spool_sent_total") >= sent_before + 300

    emitted = spooled + fresh
    expected: dict[str, list[str]] = defaultdict(list)
    for n, event_id in enumerate(emitted):
        expected[TENANTS[n % 3]].append(str(event_id))
    records = await consume(kafka_bootstrap, topics.events, len(emitted))
    got: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.key is not None
        got[record.key.decode()].append(orjson.loads(record.value)["event_id"])
    # Same ids, each once, in emit order per tenant (spooled ones before the fresh ones).
    assert dict(got) == dict(expected)
