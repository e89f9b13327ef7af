"""Alert latency: produce -> webhook received, at a fixed rate (half of ours' maximum by default).

The pipeline is what ``auditstream run`` starts, in this process: the ``Processor`` and the
``AlertService`` (evaluator as a feed follower, outbox, delivery) on one store, with the
default poll interval and page size. Tenant ``bench-00`` has one ``match`` rule on
``user.role_changed`` whose webhook target is a real HTTP server on 127.0.0.1 in its own
process, plus the 100-rule set of ``bench/alerts_cost.py`` (40 threshold, 30 match,
20 distinct, 10 sequence), so the evaluator does the work of a tenant with 100 active rules.

The producer (its own process, like the services that emit events) sends the usual bench
events at the rate; every ``k``-th one is replaced by a ``user.role_changed`` event of
``bench-00`` with a fresh ``event_id`` (the generator never emits that action, so nothing
else fires the rule) and ``occurred_at`` = its send time. It remembers the send time
(``time.monotonic()``, one clock for every process on Linux) of each of those ids; the
receiver notes ``time.monotonic()`` when each POST arrives, with the alert's ``event_ids``.
Latency = receipt - send, per triggering event (first receipt; duplicate deliveries, which
at-least-once allows, are counted separately).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any

import orjson

from auditstream.bench.context import BenchContext, load_note
from auditstream.bench.latency import target_rate
from auditstream.bench.messages import (
    PARTITIONS,
    TENANTS,
    create_topic,
    encode_messages,
    fresh_topic,
    new_producer,
    send_at_rate,
)
from auditstream.bench.results import Metric, percentiles
from auditstream.config import Settings

__all__ = ["TRIGGER_ACTION", "hundred_rules", "run"]

TENANT = TENANTS[0]
TRIGGER_ACTION = "user.role_changed"
TRIGGERS = 1000  # about this many triggering events per run (at least every 10th event)
DRAIN_S = 30.0
HOOK_PATH = "/alerts"
_BENCH_ACTIONS = [f"bench.action{i}" for i in range(50)]


def hundred_rules() -> list[dict[str, Any]]:
    """100 active rules of every kind (none of them fires on the bench events)."""
    rules: list[dict[str, Any]] = []
    for i in range(40):
        rules.append(
            {"name": f"t{i}", "kind": "threshold", "filter": {"action": [_BENCH_ACTIONS[i % 50]]},
             "group_by": "actor.id", "threshold": 50, "window": "5m"}
        )  # fmt: skip
    for i in range(30):
        rules.append({"name": f"m{i}", "kind": "match", "filter": {"action": [f"rare.thing{i}"]}})
    for i in range(20):
        rules.append(
            {"name": f"d{i}", "kind": "distinct", "filter": {"action": [_BENCH_ACTIONS[(i * 3) % 50]]},
             "group_by": "actor.ip", "distinct_field": "actor.id", "threshold": 500, "window": "10m"}
        )  # fmt: skip
    for i in range(10):
        rules.append(
            {"name": f"s{i}", "kind": "sequence", "window": "5m", "group_by": "actor.id",
             "sequence": [{"filter": {"action": ["user.login_failed"]}, "count": 20},
                          {"filter": {"action": ["user.login"]}}]}
        )  # fmt: skip
    return rules


def _receive_hooks(conn: Connection) -> None:
    """Child process: an HTTP server on 127.0.0.1 noting (monotonic receipt, alert id, event ids).

    Its own process, so answering webhooks takes no GIL from the pipeline it measures.
    Says its port, serves until "stop", then sends back what it received.
    """
    import threading

    got: list[tuple[float, str, list[str], str]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            at = time.monotonic()
            try:
                alert = orjson.loads(body)["alert"]
                entry = (at, str(alert["id"]), [str(e) for e in alert["event_ids"]], str(alert["created_at"]))
            except (ValueError, KeyError, TypeError):
                entry = (at, "", [], "")
            with lock:
                got.append(entry)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # socketserver's default listen backlog is 5: with more concurrent deliveries the
        # kernel drops the extra SYNs and the client retries after its 1 s SYN timeout, a
        # delay of the receiver, not of delivery. Web servers listen with 128-511.
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    conn.send(server.server_address[1])
    try:
        conn.poll(3600)  # "stop" (or the parent went away)
    finally:
        server.shutdown()
        server.server_close()
    with lock:
        conn.send(list(got))


def _trigger(event_id: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "tenant_id": TENANT,
            "occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "action": TRIGGER_ACTION,
            "actor": {"id": "bench-admin", "type": "user"},
            "resource": {"type": "user", "id": "u-42"},
            "details": {"role": "admin"},
        }
    )


def _produce_at_rate(
    bootstrap: str, topic: str, total: int, every: int, rate: float, seconds: float, conn: Connection
) -> None:
    """Child process: send ``total`` events at ``rate`` on "go"; every ``every``-th one triggers.

    Sends back {event_id: (send time monotonic, send time wall clock)} of the triggering events.
    """
    from auditstream.events.ids import uuid7

    payloads = [v for _, v in encode_messages(total, seed=13)]
    sent: dict[str, tuple[float, float]] = {}

    async def produce() -> None:
        producer = new_producer(bootstrap)
        await producer.start()
        try:
            conn.send("ready")
            await asyncio.to_thread(conn.recv)  # "go"

            def message(i: int) -> bytes:
                if i % every != every // 2:
                    return payloads[i]
                event_id = str(uuid7())
                sent[event_id] = (time.monotonic(), time.time())
                return _trigger(event_id)

            await send_at_rate(producer, topic, total, rate, seconds, message)
        finally:
            await producer.stop()

    asyncio.run(produce())
    conn.send(sent)


async def _warm_up(ctx: BenchContext, topic: str, database: str) -> None:
    """One event per partition must be stored before the clock starts (group join, not measured)."""
    from auditstream.store.client import create_client

    warm = [v for _, v in await asyncio.to_thread(encode_messages, PARTITIONS, seed=14)]
    producer = new_producer(ctx.bootstrap)
    client = create_client(ctx.chdb_dsn)
    await producer.start()
    try:
        for p in range(PARTITIONS):
            await producer.send_and_wait(topic, value=warm[p], partition=p)
        sql = f"SELECT uniqExact(kafka_partition) FROM {database}.audit_events"  # noqa: S608
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if int(await asyncio.to_thread(client.command, sql)) >= PARTITIONS:
                return
            await asyncio.sleep(0.1)  # a poll of the store, not a wait for an event
        raise TimeoutError("the processor stored no warm-up event within 120 s")
    finally:
        await producer.stop()
        client.close()


async def run(ctx: BenchContext) -> list[Metric]:
    from auditstream.alerts.follower import AlertService
    from auditstream.alerts.model import parse_rule
    from auditstream.alerts.storage import AlertDB
    from auditstream.processor.service import Processor
    from auditstream.store.store import Store

    rate, rate_source = target_rate(ctx)
    seconds = ctx.sizes.latency_seconds
    total = int(rate * seconds)
    every = max(10, total // TRIGGERS)
    topic = fresh_topic("alerts")
    workdir = ctx.workdir / "alerts"
    workdir.mkdir(parents=True, exist_ok=True)  # faust makes only its own folder
    settings = Settings(
        kafka_bootstrap=ctx.bootstrap,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        topic_partitions=PARTITIONS,
        consumer_group=f"bench-alerts-{uuid.uuid4().hex[:8]}",
        data_dir=workdir,
        clickhouse_dsn=ctx.chdb_dsn,
        clickhouse_database="bench_alerts",
        allow_private_targets=True,  # the receiver is on 127.0.0.1
    )
    await create_topic(ctx.bootstrap, topic)
    await create_topic(ctx.bootstrap, settings.dlq_topic)

    spawn = mp.get_context("spawn")
    hooks_conn, hooks_child_conn = spawn.Pipe()
    hooks = spawn.Process(target=_receive_hooks, args=(hooks_child_conn,), name="bench-hooks", daemon=True)
    prod_conn, prod_child_conn = spawn.Pipe()
    producer = spawn.Process(
        target=_produce_at_rate,
        args=(ctx.bootstrap, topic, total, every, rate, seconds, prod_child_conn),
        name="bench-alert-producer",
        daemon=True,
    )

    async def receive(conn: Connection, wait_s: float) -> Any:
        if not await asyncio.to_thread(conn.poll, wait_s):
            raise TimeoutError("a helper process did not answer")
        return conn.recv()

    hooks.start()
    producer.start()
    port = await receive(hooks_conn, 60)
    db = AlertDB(settings.resolved_alerts_path)
    target = {
        "type": "webhook",
        "url": f"http://127.0.0.1:{port}{HOOK_PATH}",
        "secret": "bench-secret-" + "x" * 8,
    }
    lat_rule = {
        "name": "role change",
        "kind": "match",
        "filter": {"action": [TRIGGER_ACTION]},
        "targets": [target],
    }
    # Written before the start and without a feed position: evaluated from the first event.
    for spec in [lat_rule, *hundred_rules()]:
        db.create_rule(TENANT, parse_rule(spec).to_json(), "bench")

    store = Store(ctx.chdb_dsn, settings.clickhouse_database)
    await asyncio.to_thread(store.open)
    processor = Processor(settings, store)
    alerts = AlertService(settings, store, db)
    sent: dict[str, tuple[float, float]] = {}
    received: list[tuple[float, str, list[str], str]] = []
    stored_at: dict[str, float] = {}
    try:
        await processor.start()
        await alerts.start()
        await _warm_up(ctx, topic, settings.clickhouse_database)
        assert await receive(prod_conn, 180) == "ready"
        prod_conn.send("go")
        sent = await receive(prod_conn, seconds + 120)
        # Poll the delivery log until every triggering event's alert was delivered, or a deadline.
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            if (await asyncio.to_thread(db.delivery_counts)).get("delivered", 0) >= len(sent):
                break
            await asyncio.sleep(0.2)
        hooks_conn.send("stop")
        received = await receive(hooks_conn, 30)
        stored_at = await asyncio.to_thread(_received_at, ctx, settings.clickhouse_database)
    finally:
        await alerts.stop()
        await processor.stop()
        await asyncio.to_thread(store.close)
        for child in (producer, hooks):
            await asyncio.to_thread(child.join, 10)
            if child.is_alive():
                child.kill()

    first: dict[str, float] = {}
    fired: dict[str, float] = {}
    posts_for_triggers = 0
    for at, _alert_id, event_ids, created_at in sorted(received):
        for eid in event_ids:
            if eid in sent:
                posts_for_triggers += 1
                first.setdefault(eid, at)
                fired.setdefault(eid, datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp())
    latencies_ms = [(first[e] - sent[e][0]) * 1000 for e in first]
    pct = percentiles(latencies_ms)
    # Where the time goes, per triggering event (wall clock, same machine): sent -> the
    # processor's batch received it (received_at) -> the alert was fired (created_at).
    stages = {
        "sent_to_processed": [(stored_at[e] - sent[e][1]) * 1000 for e in first if e in stored_at],
        "processed_to_fired": [(fired[e] - stored_at[e]) * 1000 for e in first if e in stored_at],
        "fired_to_received": [(first[e] - sent[e][0]) * 1000 - (fired[e] - sent[e][1]) * 1000 for e in first],
    }
    breakdown = {name: {k: round(v) for k, v in percentiles(xs).items()} for name, xs in stages.items()}
    sizes = {"rate_per_s": round(rate, 1), "seconds": seconds, "events": total, "rules": 101}
    extra: dict[str, Any] = {
        "rate_source": rate_source,
        "expected_alerts": len(sent),
        "received_alerts": len(first),
        "missing": len(sent) - len(first),
        "duplicate_posts": posts_for_triggers - len(first),
        "other_posts": len(received) - posts_for_triggers,
        "trigger_every": every,
        "stages_ms": breakdown,
        "alert_poll_seconds": settings.alert_poll_seconds,
        "alert_page_size": settings.alert_page_size,
        **load_note(),
    }
    return [
        Metric("alerts.produce_to_webhook", key + "_ms", pct.get(key), "ms", sizes=sizes, extra=extra)
        for key in ("p50", "p95", "p99", "max")
    ]


def _received_at(ctx: BenchContext, database: str) -> dict[str, float]:
    """event_id -> received_at (epoch seconds) of the stored triggering events."""
    from auditstream.store.client import create_client

    sql = (
        "SELECT toString(event_id), toUnixTimestamp64Milli(received_at)"  # noqa: S608 - fixed identifiers
        f" FROM {database}.audit_events WHERE tenant_id = {{t:String}} AND action = {{a:String}}"
    )
    client = create_client(ctx.chdb_dsn)
    try:
        rows = client.query(sql, parameters={"t": TENANT, "a": TRIGGER_ACTION}).result_rows
    finally:
        client.close()
    return {str(eid): int(ms) / 1000 for eid, ms in rows}
