"""Shared steps of the fault tests: load, wait for commits, read back through the API, reconcile.

Every wait polls with a deadline; every check is black-box (the API, the consumer
group's committed offsets, the DLQ topic, ``auditstream reconcile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from auditstream.api.keys import KeyStore, Role
from auditstream.demo.generator import generate_events
from auditstream.events.ids import uuid7
from tests.fixtures.pipeline import PipelineProcess

TENANTS = ["acme", "globex", "initech"]


def valid_events(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` valid events with known ids (the check is by event_id)."""
    events = list(generate_events(n, tenants=TENANTS, seed=seed))
    for event in events:
        event["event_id"] = str(uuid7())
    return events


def until(predicate: Callable[[], bool], what: str, timeout: float, tail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{tail()}")


async def _offsets(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        ends = await consumer.end_offsets(tps)
    finally:
        await stop_consumer(consumer)
    return (
        {tp.partition: m.offset for tp, m in committed.items() if tp.topic == topic and m.offset >= 0},
        {tp.partition: o for tp, o in ends.items()},
    )


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    # aiokafka 0.14 re-raises the CancelledError of its own internal task when a consumer
    # without a group stops; the consumer is stopped all the same.
    with contextlib.suppress(asyncio.CancelledError):
        await consumer.stop()


def committed_and_ends(bootstrap: str, pipeline: PipelineProcess) -> tuple[dict[int, int], dict[int, int]]:
    env = pipeline.env
    return asyncio.run(_offsets(bootstrap, env["AUDITSTREAM_CONSUMER_GROUP"], env["AUDITSTREAM_TOPIC"]))


def all_committed(bootstrap: str, pipeline: PipelineProcess) -> bool:
    committed, ends = committed_and_ends(bootstrap, pipeline)
    assert ends, "the input topic has no partitions"
    return all(committed.get(p, 0) >= end for p, end in ends.items())


def metric(pipeline: PipelineProcess, name: str) -> float:
    text = httpx.get(f"{pipeline.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def exported_ids(pipeline: PipelineProcess) -> list[str]:
    """Every event_id the API returns (FINAL reads), duplicates kept so the caller can count them."""
    return [e["event_id"] for e in exported(pipeline)]


def exported(pipeline: PipelineProcess) -> list[dict[str, Any]]:
    keys = KeyStore(pipeline.data_dir / "keys.sqlite3")
    out: list[dict[str, Any]] = []
    for tenant in TENANTS:
        token = keys.create(tenant, Role.EXPORTER, name=f"faults {tenant}").token
        response = httpx.get(
            f"{pipeline.url}/v1/export",
            params={"format": "ndjson", "since": "-30d"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        out.extend(json.loads(line) for line in response.text.splitlines() if line)
    return out


def reconcile(pipeline: PipelineProcess) -> tuple[int, dict[str, Any] | None, str]:
    """``auditstream reconcile --json`` on the pipeline's store (stop the pipeline first: chDB)."""
    done = subprocess.run(
        [sys.executable, "-m", "auditstream.cli.main", "reconcile", "--json"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=pipeline.data_dir,
    )
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else None
    return done.returncode, report, done.stdout + done.stderr


def run_sql(pipeline: PipelineProcess, sql: str) -> None:
    """One statement on the pipeline's store, from a child process (chDB: one engine per process)."""
    code = (
        "import sys\nfrom auditstream.config import Settings\n"
        "from auditstream.store.client import create_client\n"
        "s = Settings()\nc = create_client(s.resolved_clickhouse_dsn)\nc.command(sys.argv[1])\nc.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, sql.replace("{db}", pipeline.env["AUDITSTREAM_CLICKHOUSE_DATABASE"])],
        env=pipeline.env,
        check=True,
        timeout=120,
        cwd=pipeline.data_dir,
    )
