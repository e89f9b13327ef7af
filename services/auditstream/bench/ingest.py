"""Ingest throughput: ours against three baselines, all on the same messages in one topic.

The topic is filled once before any clock starts; each consumer reads it from the
beginning with its own consumer group, so each sees the same bytes in the same page
cache state. Rows are counted when queryable (``SELECT count()`` on the target table,
sampled every 0.5 s), and the sustained rate starts at the first row seen, so consumer
group join and partition assignment are not part of it (the total rate is reported too).

- ``ingest.ours``: the ``Processor`` (faust, validate, enrich, dedup tokens) into a fresh store.
- ``ingest.baseline_raw_insert`` (a): aiokafka ``getmany`` -> ``orjson.loads`` -> the same
  columns with no validation or enrichment -> ``client.insert`` -> commit.
- ``ingest.baseline_kafka_engine`` (b): ClickHouse's Kafka table engine with a materialized
  view into the same table, if the engine (chDB) can create one; else recorded unavailable.
- ``ingest.baseline_raw_consume`` (c): aiokafka ``getmany`` and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver.client import Client

from auditstream.bench.context import BenchContext, load_note
from auditstream.bench.messages import create_topic, encode_messages, fill_topic, fresh_topic
from auditstream.bench.progress import Progress, watch
from auditstream.bench.results import Metric, compare
from auditstream.config import Settings
from auditstream.events.stored import COLUMNS
from auditstream.store.client import create_client
from auditstream.store.store import Store

log = logging.getLogger(__name__)

OURS = "ingest.ours"
# Ours again with the Merkle sealer following the store (tamper evidence, integrity/):
# the ingest rate it leaves, and how long after the last row it has sealed everything.
OURS_SEALED = "ingest.ours_with_sealer"


def _counter(client: Client, table: str) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        # No FINAL: the topic holds no duplicates, and a plain count is cheap enough to
        # sample often without slowing the pipeline it watches.
        return int(await asyncio.to_thread(client.command, f"SELECT count() FROM {table}"))  # noqa: S608

    return count


def _throughput_metrics(name: str, p: Progress, ctx: BenchContext, extra: dict[str, Any]) -> list[Metric]:
    sizes = {"events": p.target, "partitions": 3}
    extra = {
        **extra,
        **load_note(),
        "stored": p.last_count,
        "first_row_s": p.first_row_at,
        # The steady state leaves the first batch out (progress.py); what it left out, and
        # the figure with it counted (the measure until stop 32), for comparison with older runs.
        "first_batch_rows": p.first_batch_rows,
        "events_per_s_with_first_batch": p.rate_with_first_batch(),
    }
    if p.last_count < p.target:
        extra["partial"] = f"{p.last_count} of {p.target} within the time limit"
    return [
        Metric(
            name, "events_per_s", p.sustained_rate(), "ev/s", sizes=sizes, extra=extra,
            series=p.series(),
        ),
        Metric(name, "events_per_s_incl_join", p.total_rate(), "ev/s", sizes=sizes),
    ]  # fmt: skip


QUIET_LOOKS = 3  # looks in a row with no merge running that count as settled


def merges_settled(client: Client, *, limit_s: float = 120.0, interval_s: float = 0.2) -> float:
    """Wait (at most ``limit_s``) until no merge runs for ``QUIET_LOOKS`` looks ``interval_s`` apart.

    Returns the seconds waited, the quiet looks included.
    """
    started = time.monotonic()
    quiet = 0
    while quiet < QUIET_LOOKS and time.monotonic() - started < limit_s:
        quiet = quiet + 1 if int(client.command("SELECT count() FROM system.merges")) == 0 else 0
        time.sleep(interval_s)
    return time.monotonic() - started


def _merges_settled(ctx: BenchContext) -> float:
    client = create_client(ctx.chdb_dsn)
    try:
        return merges_settled(client)
    finally:
        client.close()


def _store(ctx: BenchContext, database: str) -> Store:
    store = Store(ctx.chdb_dsn, database)
    store.open()
    return store


async def run_ours(ctx: BenchContext, topic: str, n: int, *, sealer: bool = False) -> list[Metric]:
    from auditstream.integrity.service import start_sealer
    from auditstream.processor.service import Processor

    name = OURS_SEALED if sealer else OURS
    database = "bench_ours_sealed" if sealer else "bench_ours"
    settings = Settings(
        kafka_bootstrap=ctx.bootstrap,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        topic_partitions=3,
        consumer_group=f"bench-ours-{uuid.uuid4().hex[:8]}",
        data_dir=ctx.workdir / ("ours_sealed" if sealer else "ours"),
        clickhouse_dsn=ctx.chdb_dsn,
        clickhouse_database=database,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only its own folder
    await create_topic(ctx.bootstrap, settings.dlq_topic)
    store = await asyncio.to_thread(_store, ctx, database)
    client = create_client(ctx.chdb_dsn)
    processor = Processor(settings, store)
    progress = Progress(n)
    running_sealer = start_sealer(settings, store) if sealer else None
    catch_up_s: float | None = None
    starting = asyncio.create_task(processor.start())
    try:
        # A processor that failed to start ends the wait (its error is raised below).
        stop = lambda: starting.done() and starting.exception() is not None  # noqa: E731
        await watch(
            _counter(client, f"{database}.audit_events"), progress, deadline=ctx.deadline(), stop=stop
        )
        await starting
        if running_sealer is not None:
            stored_at = time.monotonic()
            sealed = _counter(client, f"{database}.merkle_leaves")
            deadline = ctx.deadline()
            while time.monotonic() < deadline:
                if await sealed() >= progress.last_count:
                    catch_up_s = time.monotonic() - stored_at
                    break
                await asyncio.sleep(0.2)  # a poll of the engine, not a wait for an event
    finally:
        if not starting.done():
            starting.cancel()
        if running_sealer is not None:
            await asyncio.to_thread(running_sealer.stop)
        await processor.stop()
        client.close()
        await asyncio.to_thread(store.close)
    extra = {"batch_max_events": settings.batch_max_events, "batch_max_seconds": settings.batch_max_seconds}
    metrics = _throughput_metrics(name, progress, ctx, extra)
    if sealer:
        metrics.append(
            Metric(name, "sealer_catch_up_s", catch_up_s, "s", sizes={"events": n},
                   extra={"note": "from the last row stored until every row had a leaf"})
        )  # fmt: skip
    return metrics


_NO_HASH = bytes(16)  # the naive loop computes nothing; first write wins is ours to pay


def _minimal_row(topic: str, partition: int, offset: int, value: bytes, now: datetime) -> tuple[Any, ...]:
    """The stored columns straight from the JSON: no validation, no enrichment, no redaction."""
    d = orjson.loads(value)
    actor = d["actor"]
    resource = d.get("resource") or {}
    source = d.get("source") or {}
    changes = d.get("changes")
    return (
        uuid.UUID(d["event_id"]), d["tenant_id"], datetime.fromisoformat(d["occurred_at"]), now,
        d["action"], "", "", d.get("outcome", "success"), d.get("reason", ""),
        actor["id"], actor.get("type", "user"), actor.get("name", ""), actor.get("email", ""),
        actor.get("ip", ""), actor.get("user_agent", ""),
        resource.get("type", ""), resource.get("id", ""), resource.get("name", ""),
        source.get("service", ""), source.get("host", ""), source.get("request_id", ""),
        orjson.dumps(changes).decode() if changes else "", d.get("details") or {}, "1",
        topic, partition, offset, _NO_HASH, "kafka", "",
    )  # fmt: skip


def _consumer(ctx: BenchContext, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=ctx.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )


async def _consume_loop(
    ctx: BenchContext,
    topic: str,
    n: int,
    deadline: float,
    handle: Callable[[list[Any]], Awaitable[None]],
    counter: list[int],
) -> None:
    consumer = _consumer(ctx, topic, f"bench-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        while counter[0] < n and time.monotonic() < deadline:
            # The processor's batch size, so the baseline writes blocks as large as ours.
            batches = await consumer.getmany(timeout_ms=500, max_records=Settings().batch_max_events)
            records = [r for rs in batches.values() for r in rs]
            if records:
                await handle(records)
                counter[0] += len(records)
    finally:
        await consumer.stop()


async def run_raw_insert(ctx: BenchContext, topic: str, n: int) -> list[Metric]:
    database = "bench_raw"
    store = await asyncio.to_thread(_store, ctx, database)
    table = f"{database}.audit_events"
    writer, sampler = create_client(ctx.chdb_dsn), create_client(ctx.chdb_dsn)

    async def handle(records: list[Any]) -> None:
        now = datetime.now(UTC)
        rows = [_minimal_row(topic, r.partition, r.offset, r.value, now) for r in records]
        await asyncio.to_thread(
            writer.insert, table, rows, column_names=COLUMNS, settings={"async_insert": 0}
        )

    progress = Progress(n)
    deadline = ctx.deadline()
    task = asyncio.create_task(_consume_loop(ctx, topic, n, deadline, handle, [0]))
    try:
        await watch(_counter(sampler, table), progress, deadline=deadline, stop=task.done)
        if task.done() and task.exception() is None:
            progress.add(await _counter(sampler, table)())
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        writer.close()
        sampler.close()
        await asyncio.to_thread(store.close)
    return _throughput_metrics("ingest.baseline_raw_insert", progress, ctx, {})


async def run_raw_consume(ctx: BenchContext, topic: str, n: int) -> list[Metric]:
    counter = [0]

    async def handle(records: list[Any]) -> None:
        return None

    async def count() -> int:
        return counter[0]

    progress = Progress(n)
    deadline = ctx.deadline()
    task = asyncio.create_task(_consume_loop(ctx, topic, n, deadline, handle, counter))
    try:
        # Finer sampling: this one finishes fast, and a 0.5 s grid would blur its rate.
        await watch(count, progress, deadline=deadline, interval=0.1, stop=task.done)
        progress.add(counter[0])
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    return _throughput_metrics("ingest.baseline_raw_consume", progress, ctx, {})


def kafka_engine_sql(database: str, bootstrap: str, topic: str, group: str) -> list[str]:
    """A Kafka engine table over the topic and a materialized view into ``audit_events``."""
    j = "JSONExtractString"
    columns = {
        "event_id": f"toUUID({j}(raw, 'event_id'))",
        "tenant_id": f"{j}(raw, 'tenant_id')",
        "occurred_at": f"parseDateTime64BestEffort({j}(raw, 'occurred_at'), 3, 'UTC')",
        "received_at": "now64(3, 'UTC')",
        "action": f"{j}(raw, 'action')",
        "category": "''",
        "severity": "''",
        "outcome": f"if(JSONHas(raw, 'outcome'), {j}(raw, 'outcome'), 'success')",
        "reason": f"{j}(raw, 'reason')",
        **{f"actor_{k}": f"{j}(raw, 'actor', '{k}')" for k in ("id", "type", "name", "email", "ip")},
        "actor_user_agent": f"{j}(raw, 'actor', 'user_agent')",
        **{f"resource_{k}": f"{j}(raw, 'resource', '{k}')" for k in ("type", "id", "name")},
        **{f"source_{k}": f"{j}(raw, 'source', '{k}')" for k in ("service", "host", "request_id")},
        "changes": "if(JSONHas(raw, 'changes'), JSONExtractRaw(raw, 'changes'), '')",
        "details": "JSONExtract(raw, 'details', 'Map(String, String)')",
        "schema_version": "'1'",
        "kafka_topic": "_topic",
        "kafka_partition": "_partition",
        "kafka_offset": "_offset",
        "content_hash": "sipHash128(raw)",
        "ingest_channel": "'kafka'",
        "ingest_key_id": "''",
    }
    select = ", ".join(f"{columns[c]} AS {c}" for c in COLUMNS)
    return [
        f"CREATE TABLE {database}.kafka_src (raw String) ENGINE = Kafka SETTINGS"
        f" kafka_broker_list = '{bootstrap}', kafka_topic_list = '{topic}', kafka_group_name = '{group}',"
        " kafka_format = 'JSONAsString', kafka_num_consumers = 1, kafka_max_block_size = 65536",
        f"CREATE MATERIALIZED VIEW {database}.kafka_mv TO {database}.audit_events AS"  # noqa: S608 - fixed identifiers
        f" SELECT {select} FROM {database}.kafka_src",
    ]


async def run_kafka_engine(ctx: BenchContext, topic: str, n: int) -> list[Metric]:
    name = "ingest.baseline_kafka_engine"
    database = "bench_kafka"
    store = await asyncio.to_thread(_store, ctx, database)
    client = create_client(ctx.chdb_dsn)
    progress = Progress(n)
    try:
        try:
            for sql in kafka_engine_sql(database, ctx.bootstrap, topic, f"bench-ch-{uuid.uuid4().hex[:8]}"):
                await asyncio.to_thread(client.command, sql)
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            log.warning("ClickHouse Kafka engine unavailable: %s", error)
            extra = {"error": error, "unavailable": True, **load_note()}
            return [Metric(name, "events_per_s", None, "ev/s", sizes={"events": n}, extra=extra)]
        await watch(_counter(client, f"{database}.audit_events"), progress, deadline=ctx.deadline())
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(client.command, f"DROP TABLE IF EXISTS {database}.kafka_mv")
            await asyncio.to_thread(client.command, f"DROP TABLE IF EXISTS {database}.kafka_src")
        client.close()
        await asyncio.to_thread(store.close)
    return _throughput_metrics(name, progress, ctx, {})


async def run(ctx: BenchContext) -> list[Metric]:
    n = ctx.sizes.ingest_events
    t0 = time.monotonic()
    messages = await asyncio.to_thread(encode_messages, n)
    encode_s = time.monotonic() - t0
    mean_bytes = sum(len(v) for _, v in messages) / max(1, len(messages))
    topic = fresh_topic("ingest")
    await create_topic(ctx.bootstrap, topic)
    fill_s = await fill_topic(ctx.bootstrap, topic, messages)
    del messages
    log.info("topic %s filled with %d messages in %.1fs", topic, n, fill_s)

    metrics: list[Metric] = []
    # Baselines first and ours last would favour ours with a warmer cache; the topic was
    # just written, so it is all in the page cache for everyone anyway. Ours goes first.
    # Each later one waits until the engine has merged what the one before wrote: otherwise
    # it would pay for those merges (~7 µs per event of the run before, bench/RESULTS.md).
    scenarios = [
        lambda: run_ours(ctx, topic, n),
        lambda: run_ours(ctx, topic, n, sealer=True),
        lambda: run_raw_insert(ctx, topic, n),
        lambda: run_kafka_engine(ctx, topic, n),
        lambda: run_raw_consume(ctx, topic, n),
    ]
    for i, scenario in enumerate(scenarios):
        waited = await asyncio.to_thread(_merges_settled, ctx) if i else 0.0
        measured = await scenario()
        for m in measured:
            if m.metric == "events_per_s":
                m.extra["waited_for_merges_s"] = round(waited, 1)
        metrics += measured
    produce_rate = n / fill_s if fill_s > 0 else None
    metrics.append(
        Metric(
            "ingest.producer_fill", "events_per_s", produce_rate, "ev/s",
            sizes={"events": n},
            extra={"encode_s": round(encode_s, 2), "mean_message_bytes": round(mean_bytes)},
        )
    )  # fmt: skip
    baselines = ["ingest.baseline_raw_insert", "ingest.baseline_kafka_engine", "ingest.baseline_raw_consume"]
    compare(metrics, OURS, baselines, "events_per_s")
    compare(metrics, OURS, baselines, "events_per_s_incl_join")
    compare(metrics, OURS_SEALED, [OURS], "events_per_s")  # > 1 would mean the sealer costs nothing
    return metrics
