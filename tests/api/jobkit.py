"""Helpers shared by the export-job, ingest and security tests (real store, real broker)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient

from auditstream.config import Settings
from auditstream.events.model import AuditEvent
from auditstream.events.stored import enrich
from auditstream.store import Store

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def make_event(
    tenant: str, n: int, *, action: str = "user.login", actor: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "occurred_at": (NOW - timedelta(seconds=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "action": action,
        "actor": {"id": actor or f"user-{n % 50}", "type": "user", "ip": f"10.0.{n % 200}.{n % 250}"},
        "resource": {"type": "scan", "id": f"scan-{n % 7}"},
        "outcome": "failure" if n % 10 == 0 else "success",
    }


def insert_events(store: Store, events: list[dict[str, Any]], chunk: int = 50_000) -> None:
    received = datetime.now(UTC)
    for start in range(0, len(events), chunk):
        rows = [
            enrich(
                AuditEvent.model_validate_json(orjson.dumps(e)),
                topic="audit.events",
                partition=0,
                offset=start + i,
                received_at=received,
            )
            for i, e in enumerate(events[start : start + chunk])
        ]
        store.insert_rows(rows)


def api_settings(data: Path, clickhouse_dsn: str, database: str, bootstrap: str, topic: str) -> Settings:
    return Settings(
        data_dir=data,
        keys_path=data / "keys.sqlite3",
        clickhouse_dsn=clickhouse_dsn,
        clickhouse_database=database,
        kafka_bootstrap=bootstrap,
        topic=topic,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_job(
    client: TestClient, token: str, job_id: str, *, within: float = 180.0, status: str = "completed"
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"/v1/exports/{job_id}", headers=bearer(token))
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] == status:
            return job
        assert job["status"] != "failed", job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not {status} within {within}s: {job}")


def read_topic(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], *, within: float = 30.0
) -> list[dict[str, Any]]:
    """Every JSON record of ``topic`` from the start, until ``done(records)`` or the deadline."""

    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline and not done(out):
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    out.extend(orjson.loads(r.value) for r in records)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def iter_ndjson(body: bytes) -> Iterator[dict[str, Any]]:
    for line in body.splitlines():
        if line:
            yield orjson.loads(line)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its URL."""
    import threading

    import uvicorn

    from tests.fixtures.kafka import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
