"""Produce-to-queryable latency at a fixed rate (half of ours' measured maximum by default).

The producer (a separate process, like the services that emit events) sends to explicit
partitions round-robin and remembers, per partition, the send time of each message in
order. The processor writes each partition's rows in offset order and a batch becomes
visible as one insert, so when a poll sees ``c`` rows in partition ``p``, the first ``c``
messages sent to ``p`` are visible: each newly visible one gets ``visible - sent``
(``time.monotonic()`` is one clock for all processes on Linux). The poll (every ~50 ms)
is a per-partition ``count()``: cheap enough not to slow the pipeline it measures, and
exact without reading event ids back.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

from auditstream.bench.context import BenchContext, load_note
from auditstream.bench.messages import (
    PARTITIONS,
    create_topic,
    encode_messages,
    fresh_topic,
    new_producer,
    send_at_rate,
)
from auditstream.bench.results import Metric, percentiles
from auditstream.config import Settings
from auditstream.store.client import create_client
from auditstream.store.store import Store

POLL_INTERVAL_S = 0.05
# After the load stops, how long the last events may take before they count as missing.
DRAIN_S = 30.0
DEFAULT_RATE = 5_000.0


def target_rate(ctx: BenchContext) -> tuple[float, str]:
    """The configured rate, else half of ours' sustained rate measured earlier in this run."""
    if ctx.sizes.latency_rate > 0:
        return ctx.sizes.latency_rate, "configured"
    for m in ctx.previous:
        if m["scenario"] == "ingest.ours" and m["metric"] == "events_per_s" and m["value"]:
            return m["value"] / 2, "half of ingest.ours"
    return DEFAULT_RATE, "default (no ingest.ours figure in this run)"


def _produce_at_rate(
    bootstrap: str, topic: str, total: int, rate: float, seconds: float, conn: Connection
) -> None:
    """Child process: encode ``total`` events, say ready, then send them at ``rate`` on "go".

    Sends back, per partition, the send time (``time.monotonic()``, the same clock in
    every process on Linux) of each message in order.
    """
    payloads = [v for _, v in encode_messages(total, seed=11)]
    sent: list[list[float]] = [[] for _ in range(PARTITIONS)]

    async def produce() -> None:
        producer = new_producer(bootstrap)
        await producer.start()
        try:
            conn.send("ready")
            await asyncio.to_thread(conn.recv)  # "go"

            def message(i: int) -> bytes:
                sent[i % PARTITIONS].append(time.monotonic())
                return payloads[i]

            await send_at_rate(producer, topic, total, rate, seconds, message)
        finally:
            await producer.stop()

    asyncio.run(produce())
    conn.send(sent)


async def run(ctx: BenchContext) -> list[Metric]:
    from auditstream.processor.service import Processor

    rate, rate_source = target_rate(ctx)
    seconds = ctx.sizes.latency_seconds
    total = int(rate * seconds)
    # PARTITIONS messages warm the pipeline up; each event has its own event_id (a repeat
    # would be collapsed by the ReplacingMergeTree and look like a lost event).
    warmup = [v for _, v in await asyncio.to_thread(encode_messages, PARTITIONS, seed=12)]
    topic = fresh_topic("latency")
    database = "bench_latency"
    settings = Settings(
        kafka_bootstrap=ctx.bootstrap,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        topic_partitions=PARTITIONS,
        consumer_group=f"bench-lat-{uuid.uuid4().hex[:8]}",
        data_dir=ctx.workdir / "latency",
        clickhouse_dsn=ctx.chdb_dsn,
        clickhouse_database=database,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only its own folder
    await create_topic(ctx.bootstrap, topic)
    await create_topic(ctx.bootstrap, settings.dlq_topic)
    store = Store(ctx.chdb_dsn, database)
    await asyncio.to_thread(store.open)
    client = create_client(ctx.chdb_dsn)
    processor = Processor(settings, store)
    # The load comes from another process, as it does from real services: a producer in
    # this process would take the GIL from the processor it measures.
    spawn = mp.get_context("spawn")
    parent_conn, child_conn = spawn.Pipe()
    child = spawn.Process(
        target=_produce_at_rate,
        args=(ctx.bootstrap, topic, total, rate, seconds, child_conn),
        name="auditstream-bench-producer",
        daemon=True,
    )
    expected = [len(range(p, total, PARTITIONS)) for p in range(PARTITIONS)]
    polls: list[tuple[float, list[int]]] = []  # (monotonic time, rows per partition beyond base)

    async def counts() -> list[int]:
        sql = f"SELECT kafka_partition, count() FROM {database}.audit_events GROUP BY kafka_partition"  # noqa: S608
        result = await asyncio.to_thread(client.query, sql)
        out = [0] * PARTITIONS
        for partition, n in result.result_rows:
            out[int(partition)] = int(n)
        return out

    async def receive(wait_s: float) -> Any:
        if not await asyncio.to_thread(parent_conn.poll, wait_s):
            raise TimeoutError("the producer process did not answer")
        return parent_conn.recv()

    child.start()
    warm_producer = new_producer(ctx.bootstrap)
    await warm_producer.start()
    await processor.start()
    sent: list[list[float]] = [[] for _ in range(PARTITIONS)]
    try:
        # Wait for the group to own the partitions before the clock starts: a first
        # message per partition must come back (not measured).
        warm_deadline = time.monotonic() + 60
        for p in range(PARTITIONS):
            await warm_producer.send_and_wait(topic, value=warmup[p], partition=p)
        while time.monotonic() < warm_deadline and min(await counts()) < 1:  # noqa: ASYNC110 - polling the store
            await asyncio.sleep(0.1)
        base = await counts()
        assert await receive(120) == "ready"
        parent_conn.send("go")
        deadline = time.monotonic() + seconds + 5 + DRAIN_S
        while time.monotonic() < deadline:
            now_counts = await counts()
            polls.append((time.monotonic(), [now_counts[p] - base[p] for p in range(PARTITIONS)]))
            if all(polls[-1][1][p] >= expected[p] for p in range(PARTITIONS)):
                break
            await asyncio.sleep(POLL_INTERVAL_S)
        sent = await receive(60)
    finally:
        await warm_producer.stop()
        await processor.stop()
        client.close()
        await asyncio.to_thread(store.close)
        await asyncio.to_thread(child.join, 10)
        if child.is_alive():
            child.kill()

    # Each poll makes the next rows of each partition visible (writes are in offset order).
    latencies_ms: list[float] = []
    seen = [0] * PARTITIONS
    for visible_at, visible_counts in polls:
        for p in range(PARTITIONS):
            visible = min(visible_counts[p], len(sent[p]))
            latencies_ms.extend((visible_at - sent[p][k]) * 1000 for k in range(seen[p], visible))
            seen[p] = max(seen[p], visible)

    pct = percentiles(latencies_ms)
    sizes = {"rate_per_s": round(rate, 1), "seconds": seconds, "events": total}
    extra: dict[str, Any] = {
        "rate_source": rate_source,
        "visible": len(latencies_ms),
        "missing": total - len(latencies_ms),
        "poll_interval_ms": POLL_INTERVAL_S * 1000,
        **load_note(),
    }
    metrics = [
        Metric("latency.produce_to_queryable", key + "_ms", pct.get(key), "ms", sizes=sizes, extra=extra)
        for key in ("p50", "p95", "p99", "max")
    ]
    return metrics
