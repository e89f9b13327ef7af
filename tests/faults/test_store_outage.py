"""ClickHouse writes failing for 30 s: nothing committed early, /readyz 503, all stored once after.

The fault is injected at the store seam in the child process (tests.fixtures.faulty_pipeline):
inserts fail while a control file exists. The end of the test also makes a gap on
purpose (rows deleted from the store) and checks that reconcile names it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.faults.support import (
    all_committed,
    committed_and_ends,
    exported_ids,
    metric,
    reconcile,
    run_sql,
    until,
    valid_events,
)
from tests.fixtures.faulty_pipeline import FAULT_FILE_ENV
from tests.fixtures.kafka import new_topics
from tests.fixtures.pipeline import running_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline, pytest.mark.faults]

N_EVENTS = 3_000
OUTAGE_SECONDS = 30.0


async def _send(bootstrap: str, topic: str, events: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, orjson.dumps(e), key=e["tenant_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.timeout(300)
def test_store_outage_commits_nothing_then_stores_everything_once(
    kafka_bootstrap: str, clickhouse_dsn: str, tmp_path
) -> None:
    topics = new_topics(kafka_bootstrap)
    fault = tmp_path / "store-down"
    events = valid_events(N_EVENTS, seed=32)
    with running_pipeline(
        kafka_bootstrap,
        topics,
        clickhouse_dsn,
        module="tests.fixtures.faulty_pipeline",
        **{FAULT_FILE_ENV: str(fault), "AUDITSTREAM_WRITE_RETRY_MAX_SECONDS": "1.0"},
    ) as pipeline:
        fault.touch()
        asyncio.run(_send(kafka_bootstrap, topics.events, events))
        until(
            lambda: httpx.get(f"{pipeline.url}/readyz", timeout=5).status_code == 503,
            "/readyz to report the outage",
            30,
            pipeline.tail,
        )
        outage_started = time.monotonic()
        polls = 0
        while time.monotonic() - outage_started < OUTAGE_SECONDS:
            assert httpx.get(f"{pipeline.url}/readyz", timeout=5).status_code == 503
            committed, _ = committed_and_ends(kafka_bootstrap, pipeline)
            assert sum(committed.values()) == 0, f"committed during the outage: {committed}"
            polls += 1
            time.sleep(0.25)
        retries = metric(pipeline, "auditstream_processor_write_retries_total")
        assert retries >= 10
        assert metric(pipeline, "auditstream_processor_store_available") == 0
        fault.unlink()
        recovered = time.monotonic()
        until(lambda: all_committed(kafka_bootstrap, pipeline), "every offset committed", 60, pipeline.tail)
        until(lambda: httpx.get(f"{pipeline.url}/readyz", timeout=5).status_code == 200, "ready again", 30)
        print(
            f"\nstore outage: {OUTAGE_SECONDS:g}s, {polls} polls all 503 and nothing committed, "
            f"{retries:.0f} write retries; caught up {time.monotonic() - recovered:.1f}s after recovery"
        )
        ids = exported_ids(pipeline)
        assert max(Counter(ids).values()) == 1
        missing = {e["event_id"] for e in events} - set(ids)
        assert pipeline.stop() == 0
        code, report, output = reconcile(pipeline)
        assert not missing, (len(missing), len(ids), output)
        assert code == 0 and report is not None, output
        assert report["rows"]["final_rows"] == N_EVENTS

        # A gap made on purpose: ten stored rows of the fullest partition disappear.
        partition = max(report["partitions"], key=lambda p: p["stored"])["partition"]
        run_sql(
            pipeline,
            f"DELETE FROM {{db}}.audit_events WHERE kafka_partition = {partition}"
            " AND kafka_offset BETWEEN 100 AND 109",
        )
        code, report, output = reconcile(pipeline)
        assert code == 1, output
        assert report is not None
        gaps = {p["partition"]: p["gaps"] for p in report["partitions"] if p["gaps"]}
        assert gaps == {partition: [[100, 109]]}, output
