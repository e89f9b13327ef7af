"""From outside: a running pipeline absorbs events produced by a Kafka client that is not ours.

``auditstream run`` (processor + API, as ``make run`` starts it) runs in a child process;
Kafka's own ``ProducerPerformance`` (``kafka-producer-perf-test``, from the broker jars in
``.cache/kafka/libs``) sends ``OUTSIDE_EVENTS`` valid events as fast as it can (``acks=all``,
null keys, its default partitioner). The events carry no ``event_id``: the processor
derives one from each record's position, so every record is a distinct event even though
the tool repeats payload lines. ``/v1/stats`` is polled every 50 ms with a reader key.

Figures: ``visible_after_last_ack_ms`` (the bar: <= 2,000 ms) from the moment the tool
prints its total - which it does after the last acknowledgement, so the figure is an
upper bound by at most that print's delay - to the poll that sees all events;
``events_per_s`` = events / (all visible - tool started); the tool's own send rate.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from auditstream.bench.apiproc import create_key, free_port
from auditstream.bench.context import BenchContext, load_note
from auditstream.bench.messages import create_topic, fresh_topic
from auditstream.bench.results import Metric

OUTSIDE_EVENTS = 100_000
TENANT = "outside"
SCENARIO = "outside.kafka_producer_perf_test"
KAFKA_LIBS = Path(__file__).resolve().parents[3] / ".cache" / "kafka" / "libs"
_TOTAL = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec .* 99th")


def _payloads(path: Path, lines: int = 1000) -> None:
    now = datetime.now(UTC)
    actions = ("user.login", "scan.created", "config.updated", "user.logout")
    with path.open("wb") as f:
        for i in range(lines):
            event = {
                "occurred_at": (now - timedelta(minutes=30, seconds=i)).isoformat(timespec="milliseconds"),
                "tenant_id": TENANT,
                "action": actions[i % len(actions)],
                "actor": {"id": f"u-{i % 97}", "type": "user", "ip": f"10.0.{i % 250}.{i % 200 + 1}"},
                "resource": {"type": "scan", "id": f"scan-{i}"},
            }
            f.write(orjson.dumps(event) + b"\n")


def _unavailable(error: str) -> list[Metric]:
    return [Metric(SCENARIO, "visible_after_last_ack_ms", None, "ms", extra={"error": error})]


async def run(ctx: BenchContext) -> list[Metric]:
    n = OUTSIDE_EVENTS if not ctx.quick else 2_000
    java = shutil.which("java")
    if java is None or not any(KAFKA_LIBS.glob("kafka-tools-[0-9]*.jar")):
        return _unavailable("java or kafka-tools jar missing (make setup fetches it)")
    work = ctx.workdir / "outside"
    work.mkdir(parents=True, exist_ok=True)
    topic = fresh_topic("outside")
    await create_topic(ctx.bootstrap, topic)
    await create_topic(ctx.bootstrap, f"{topic}.dlq")
    payloads = work / "payloads.ndjson"
    _payloads(payloads)
    keys = work / "keys.sqlite3"
    token = create_key(keys, TENANT, "reader")
    port = free_port()
    env = {
        **os.environ,
        "AUDITSTREAM_KAFKA_BOOTSTRAP": ctx.bootstrap,
        "AUDITSTREAM_TOPIC": topic,
        "AUDITSTREAM_DLQ_TOPIC": f"{topic}.dlq",
        "AUDITSTREAM_CONSUMER_GROUP": f"bench-outside-{uuid.uuid4().hex[:8]}",
        "AUDITSTREAM_DATA_DIR": str(work / "data"),
        "AUDITSTREAM_KEYS_PATH": str(keys),
        "AUDITSTREAM_LOG_LEVEL": "WARNING",
    }
    log = (work / "pipeline.log").open("ab")
    pipeline = subprocess.Popen(  # noqa: ASYNC220 - start-up only, before any clock starts
        [sys.executable, "-m", "auditstream.cli.main", "run", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            await _until_ready(http, pipeline, ctx.deadline(120))
            metrics = await _measure(ctx, http, token, java, topic, payloads, n)
    finally:
        pipeline.send_signal(signal.SIGTERM)
        try:
            pipeline.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pipeline.kill()
            pipeline.wait(timeout=10)
        log.close()
    return metrics


async def _until_ready(http: httpx.AsyncClient, pipeline: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if pipeline.poll() is not None:
            raise RuntimeError(f"pipeline exited with {pipeline.returncode}")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("pipeline not ready")


async def _visible(http: httpx.AsyncClient, token: str) -> int:
    response = await http.get(
        "/v1/stats", params={"group_by": "outcome"}, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    return int(response.json()["total"])


async def _measure(
    ctx: BenchContext, http: httpx.AsyncClient, token: str, java: str, topic: str, payloads: Path, n: int
) -> list[Metric]:
    started = time.monotonic()
    tool = await asyncio.create_subprocess_exec(
        java, "-cp", f"{KAFKA_LIBS}/*", "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(n), "--throughput", "-1",
        "--payload-file", str(payloads),
        "--producer-props", f"bootstrap.servers={ctx.bootstrap}", "acks=all",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    acked_at: float | None = None
    tool_rate: float | None = None
    assert tool.stdout is not None
    async for raw in tool.stdout:
        match = _TOTAL.match(raw.decode(errors="replace").strip())
        if match:
            acked_at = time.monotonic()  # printed after the last acknowledgement
            tool_rate = float(match.group(2))
    code = await tool.wait()
    if acked_at is None or code != 0:
        return _unavailable(f"ProducerPerformance exited with {code} without its total")
    seen_at_ack = await _visible(http, token)
    visible, deadline = seen_at_ack, acked_at + 60.0
    while visible < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        visible = await _visible(http, token)
    done = time.monotonic()
    sizes = {"events": n}
    extra = {**load_note(), "visible": visible, "visible_when_acked": seen_at_ack, "bar_ms": 2000}
    if visible < n:
        extra["partial"] = f"{visible} of {n} visible 60 s after the last ack"
    return [
        Metric(
            SCENARIO, "visible_after_last_ack_ms", (done - acked_at) * 1000, "ms", sizes=sizes, extra=extra
        ),
        Metric(SCENARIO, "events_per_s", n / (done - started), "ev/s", sizes=sizes),
        Metric(SCENARIO, "producer_events_per_s", tool_rate, "ev/s", sizes=sizes),
    ]
