"""First write wins, end to end: the issue-9 reproduction, through every way in, and after a restart.

A stored ``scan.created`` is attacked with forgeries under its ``(tenant_id, event_id)``:
through HTTP ingest (the probe that used to replace it), through a plain Kafka producer
with the same and with another ``occurred_at``, and inside one batch. The original must
stay visible everywhere (detail, list, stats, feed, export), each forgery must be in the
DLQ as a conflict, an exact copy must be dropped silently, and another tenant using the
same id must be stored beside it. The API's own trail (``source.service``
``auditstream-*``) cannot be imitated from Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from auditstream.api.keys import KeyStore, Role
from auditstream.processor.dlq import read_dead_letter_headers
from auditstream.producer import AuditProducer
from tests.faults.support import all_committed, metric, reconcile, until
from tests.fixtures.kafka import Topics, new_topics
from tests.fixtures.pipeline import PipelineProcess, running_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline]

CONFLICT = "conflict: event_id already stored with different content"
EVENT_ID = str(uuid.uuid4())
OCCURRED = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


def original(tenant: str = "acme") -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "occurred_at": OCCURRED.isoformat().replace("+00:00", "Z"),
        "tenant_id": tenant,
        "action": "scan.created",
        "actor": {"id": "u-alice", "name": "Alice", "email": "alice@example.com"},
        "resource": {"type": "scan", "id": "scan-1", "name": "Azure Cloud Workload"},
    }


def forgery(**changes: Any) -> dict[str, Any]:
    return {**original(), "action": "user.logout", "actor": {"id": "nobody"}, **changes}


async def _plain(
    bootstrap: str,
    topic: str,
    docs: list[dict[str, Any]],
    *,
    headers: Any = None,
    partition: int | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for doc in docs:
            key = doc["tenant_id"].encode()
            await producer.send_and_wait(
                topic, orjson.dumps(doc), key=key, headers=headers, partition=partition
            )
    finally:
        await producer.stop()


async def _dead_letters(bootstrap: str, topic: str, expected: int, within: float = 60) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[Any] = []
    try:
        # Bounded: a missing record fails the caller's count, it does not hang the test.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(out) < expected:
                    batches = await consumer.getmany(timeout_ms=500)
                    out.extend(m for ms in batches.values() for m in ms)
    finally:
        await consumer.stop()
    return out


class Api:
    def __init__(self, pipeline: PipelineProcess, token: str) -> None:
        self.url = pipeline.url
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers=self.headers, timeout=30)


@pytest.fixture(scope="module")
def attacked(kafka_bootstrap: str, clickhouse_dsn: str) -> Iterator[tuple[PipelineProcess, Topics, dict]]:
    topics = new_topics(kafka_bootstrap)
    with running_pipeline(kafka_bootstrap, topics, clickhouse_dsn) as pipeline:
        keys = KeyStore(pipeline.data_dir / "keys.sqlite3")
        tokens = {
            "reader": keys.create("acme", Role.READER, name="fww reader").token,
            "exporter": keys.create("acme", Role.EXPORTER, name="fww exporter").token,
            "globex": keys.create("globex", Role.READER, name="fww globex").token,
            "ingest": keys.create("acme", _ingest_role(), name="fww ingest"),
        }

        async def emit_originals() -> None:
            async with AuditProducer(bootstrap=kafka_bootstrap, topic=topics.events) as sdk:
                await sdk.emit(original())
                await sdk.emit(original("globex"))  # same event_id, another tenant: its own event

        asyncio.run(emit_originals())
        reader = Api(pipeline, tokens["reader"])
        until(
            lambda: reader.get(f"/v1/events/{EVENT_ID}").status_code == 200,
            "original stored",
            60,
            pipeline.tail,
        )

        # 1. The probe: the same id and occurred_at through HTTP ingest.
        ingest = tokens["ingest"]
        response = httpx.post(
            f"{pipeline.url}/v1/events",
            content=orjson.dumps(forgery()),
            headers={"Authorization": f"Bearer {ingest.token}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        # 2. Through Kafka: same occurred_at, another occurred_at, an exact copy (a retry),
        #    and in one burst (one batch) a new event followed by a forgery of it.
        second = str(uuid.uuid4())
        asyncio.run(
            _plain(
                kafka_bootstrap,
                topics.events,
                [
                    forgery(),
                    forgery(occurred_at=(OCCURRED - timedelta(minutes=5)).isoformat()),
                    original(),
                    {**original(), "event_id": second, "action": "scan.started"},
                    {**original(), "event_id": second, "action": "scan.deleted"},
                ],
            )
        )
        # ... and on every other partition than the tenant's (a producer keying differently).
        for partition in range(topics.partitions):
            asyncio.run(
                _plain(kafka_bootstrap, topics.events, [forgery(reason=f"p{partition}")], partition=partition)
            )
        # 3. The API's own trail cannot be imitated from Kafka, labelled or not.
        trail = {
            **original(),
            "event_id": str(uuid.uuid4()),
            "action": "export.downloaded",
            "source": {"service": "auditstream-api"},
        }
        asyncio.run(_plain(kafka_bootstrap, topics.events, [trail]))
        asyncio.run(
            _plain(
                kafka_bootstrap,
                topics.events,
                [{**trail, "event_id": str(uuid.uuid4())}],
                headers=[
                    ("auditstream.ingest.channel", b"internal"),
                    ("auditstream.ingest.signature", b"00"),
                ],
            )
        )
        until(lambda: all_committed(kafka_bootstrap, pipeline), "everything committed", 60, pipeline.tail)
        yield pipeline, topics, {**tokens, "second": second, "ingest_key_id": ingest.key.key_id}


def _ingest_role() -> Role:
    # HTTP ingest has its own role once roles are split; until then any key of the tenant.
    return getattr(Role, "INGEST", Role.ADMIN)


def test_the_original_stays_visible_everywhere(attacked: tuple[PipelineProcess, Topics, dict]) -> None:
    pipeline, _, tokens = attacked
    reader = Api(pipeline, tokens["reader"])
    detail = reader.get(f"/v1/events/{EVENT_ID}")
    assert detail.status_code == 200
    event = detail.json()
    assert (event["action"], event["actor"]["id"]) == ("scan.created", "u-alice")
    assert event["ingest"]["channel"] == "kafka"

    listed = reader.get("/v1/events", since="-1d", limit=1000).json()["data"]
    mine = [e for e in listed if e["event_id"] == EVENT_ID]
    assert len(mine) == 1 and mine[0]["action"] == "scan.created"
    assert not [e for e in listed if e["actor"]["id"] == "nobody"]

    stats = reader.get("/v1/stats", since="-1d", group_by="action").json()
    counts = {g["key"]: g["count"] for g in stats["data"]}
    assert counts.get("user.logout") is None and counts["scan.created"] == 1

    exporter = Api(pipeline, tokens["exporter"])
    exported = [
        json.loads(line) for line in exporter.get("/v1/export", since="-1d").text.splitlines() if line
    ]
    assert [e["action"] for e in exported if e["event_id"] == EVENT_ID] == ["scan.created"]
    feed = exporter.get("/v1/feed", limit=1000).json()["data"]
    assert [e["action"] for e in feed if e["event_id"] == EVENT_ID] == ["scan.created"]
    # The first of two events under one id in one batch is the one stored.
    assert [e["action"] for e in feed if e["event_id"] == tokens["second"]] == ["scan.started"]


def test_another_tenant_with_the_same_id_is_its_own_event(
    attacked: tuple[PipelineProcess, Topics, dict],
) -> None:
    pipeline, _, tokens = attacked
    globex = Api(pipeline, tokens["globex"]).get(f"/v1/events/{EVENT_ID}")
    assert globex.status_code == 200 and globex.json()["tenant_id"] == "globex"


def test_forgeries_are_conflicts_in_the_dlq_and_counted(
    attacked: tuple[PipelineProcess, Topics, dict], kafka_bootstrap: str
) -> None:
    pipeline, topics, _ = attacked
    letters = asyncio.run(_dead_letters(kafka_bootstrap, topics.dlq, expected=9))
    reasons = [read_dead_letter_headers(m.headers)["auditstream.error.reason"] for m in letters]
    assert reasons.count(CONFLICT) == 4 + 3, reasons  # HTTP, Kafka x2, in-batch, one per partition
    assert sum("source.service: reserved" in r for r in reasons) == 1, reasons
    assert sum("signature" in r or "attribution" in r for r in reasons) == 1, reasons
    assert len(letters) == 9
    partitions = {int(read_dead_letter_headers(m.headers)["auditstream.source.partition"]) for m in letters}
    assert partitions == set(range(topics.partitions))
    forged_values = [orjson.loads(m.value) for m in letters if CONFLICT in str(m.headers)]
    assert {v["action"] for v in forged_values} == {"user.logout", "scan.deleted"}
    assert metric(pipeline, "auditstream_processor_conflicts_total") == 7
    # The exact copy was dropped as a duplicate, not dead-lettered.
    assert metric(pipeline, "auditstream_processor_duplicates_total") >= 1


def test_http_ingest_is_attributed_to_its_key(attacked: tuple[PipelineProcess, Topics, dict]) -> None:
    pipeline, _, tokens = attacked
    new_id = str(uuid.uuid4())
    response = httpx.post(
        f"{pipeline.url}/v1/events",
        content=orjson.dumps({**original(), "event_id": new_id, "action": "scan.finished"}),
        headers={"Authorization": f"Bearer {tokens['ingest'].token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    reader = Api(pipeline, tokens["reader"])
    until(lambda: reader.get(f"/v1/events/{new_id}").status_code == 200, "ingested event", 60, pipeline.tail)
    ingest = reader.get(f"/v1/events/{new_id}").json()["ingest"]
    assert (ingest["channel"], ingest["key_id"]) == ("http", tokens["ingest_key_id"])


def test_first_write_wins_across_a_restart_and_reconcile_accounts_for_everything(
    attacked: tuple[PipelineProcess, Topics, dict], kafka_bootstrap: str
) -> None:
    pipeline, topics, tokens = attacked
    pipeline.stop()
    pipeline.start()
    asyncio.run(_plain(kafka_bootstrap, topics.events, [forgery(), original()]))
    until(lambda: all_committed(kafka_bootstrap, pipeline), "committed after restart", 60, pipeline.tail)
    letters = asyncio.run(_dead_letters(kafka_bootstrap, topics.dlq, expected=10))
    assert sum(CONFLICT in str(m.headers) for m in letters) == 8
    event = Api(pipeline, tokens["reader"]).get(f"/v1/events/{EVENT_ID}").json()
    assert event["action"] == "scan.created"
    pipeline.stop()
    code, report, output = reconcile(pipeline)
    assert code == 0, output
    assert report is not None and report["ok"]
    assert sum(p["duplicates"] for p in report["partitions"]) >= 2, report
    pipeline.start()  # the module fixture stops it


def test_an_event_older_than_the_retention_is_refused_at_ingest(
    attacked: tuple[PipelineProcess, Topics, dict],
) -> None:
    pipeline, _, tokens = attacked
    old = {**original(), "event_id": str(uuid.uuid4()), "occurred_at": "2001-01-01T00:00:00Z"}
    response = httpx.post(
        f"{pipeline.url}/v1/events",
        content=orjson.dumps(old),
        headers={"Authorization": f"Bearer {tokens['ingest'].token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["error"]["errors"]
    assert error["field"] == "occurred_at" and "older than the retention of 365 days" in error["message"]
