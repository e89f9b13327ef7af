"""``auditstream dlq list | show | replay`` on the real broker, through a real pipeline.

Malformed messages go to the DLQ through the processor (``auditstream run`` child
process); the commands find them with their reasons; a replay with a fixed payload
is stored and queryable, keeps the id of the original position, is audited
(``dlq.replayed``), and replaying it twice stores it once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from typer.testing import CliRunner

from auditstream.cli.main import app
from auditstream.events.ids import position_event_id
from auditstream.events.validation import parse_event
from tests.fixtures.kafka import Topics, free_port
from tests.fixtures.pipeline import DEMO_TENANT, PipelineProcess, running_pipeline

pytestmark = [pytest.mark.pipeline, pytest.mark.kafka, pytest.mark.clickhouse]

TENANT = DEMO_TENANT  # the pipeline's demo keys (admin) belong to it
RAW_CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) != "\n"]


@pytest.fixture(scope="module")
def topics(kafka_bootstrap: str) -> Topics:
    from tests.fixtures.kafka import new_topics

    return new_topics(kafka_bootstrap)


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str) -> Iterator[PipelineProcess]:
    with running_pipeline(kafka_bootstrap, topics, clickhouse_dsn) as process:
        yield process


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, topics: Topics, pipeline: PipelineProcess) -> dict[str, str]:
    # The operator's CLI runs on the installation it replays into: same data folder, so the
    # dlq.replayed record is signed with the secret the processor holds (events/attribution.py).
    return {
        "AUDITSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AUDITSTREAM_TOPIC": topics.events,
        "AUDITSTREAM_DLQ_TOPIC": topics.dlq,
        "AUDITSTREAM_DATA_DIR": str(pipeline.data_dir),
    }


def dlq(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, ["dlq", *args], env=env)


def admin_token(process: PipelineProcess) -> str:
    deadline = time.monotonic() + 120
    path = process.data_dir / "demo-keys.json"
    while time.monotonic() < deadline:
        if path.exists():
            for key in orjson.loads(path.read_bytes())["keys"]:
                if key["role"] == "admin" and key["tenant_id"] == TENANT:
                    return str(key["token"])
        time.sleep(0.2)
    raise AssertionError("no demo keys")


def api_get(process: PipelineProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{process.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {admin_token(process)}"},
        timeout=10,
    )


def events(process: PipelineProcess, **params: Any) -> list[dict[str, Any]]:
    # A day back: the events' times are fixed when the module is imported (OCCURRED).
    r = api_get(process, "/v1/events", since="-24h", limit=1000, **params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def poll(what: str, check: Any, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {within}s")


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, key=TENANT.encode(), value=value)
        finally:
            await producer.stop()

    asyncio.run(run())


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        finally:
            await consumer.stop()
        return {tp.partition: off for tp, off in ends.items()}

    return asyncio.run(run())


def listed(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    r = dlq(env, "list", "--json", *args)
    assert r.exit_code == 0, r.output
    return [orjson.loads(line) for line in r.stdout.splitlines() if line]


OCCURRED = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(timespec="milliseconds")
MARK = uuid.uuid4().hex[:8]
ACTION = f"scan.replay_{MARK}"
BROKEN = {  # no event_id, no actor.id, a hostile note
    "occurred_at": OCCURRED,
    "tenant_id": TENANT,
    "action": ACTION,
    "actor": {"name": "mallory"},
    "details": {"note": "\x1b[2J\x1b]0;owned\x07"},
}


@pytest.fixture(scope="module")
def dead(
    pipeline: PipelineProcess, kafka_bootstrap: str, topics: Topics, env: dict[str, str]
) -> dict[str, Any]:
    """Two malformed messages through the real processor; their DLQ records, by kind."""
    produce(kafka_bootstrap, topics.events, [orjson.dumps(BROKEN), b"not json \x1b[31m\x07"])

    def both() -> list[dict[str, Any]] | None:
        found = listed(env)
        return found if len(found) >= 2 else None

    records = poll("both records in the DLQ", both)
    by_kind = {"broken" if "actor.id" in r["reason"] else "garbage": r for r in records}
    assert set(by_kind) == {"broken", "garbage"}, records
    return by_kind


def test_list_finds_records_with_reason_source_and_tenant(
    dead: dict[str, Any], env: dict[str, str], topics: Topics
) -> None:
    broken = dead["broken"]
    assert broken["tenant_id"] == TENANT and broken["source"]["topic"] == topics.events
    assert any(e["field"] == "actor.id" for e in broken["errors"])
    assert [r["position"] for r in listed(env, "--reason", "ACTOR.ID")] == [broken["position"]]
    assert len(listed(env, "--limit", "1")) == 1
    assert listed(env, "--since", (datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    assert len(listed(env, "--since", "-1h")) == 2
    r = dlq(env, "list")
    assert r.exit_code == 0 and broken["position"] in r.stdout and "actor.id" in r.stdout
    assert not any(c in r.stdout for c in RAW_CONTROLS)


def test_show_prints_errors_and_payload_escaped(dead: dict[str, Any], env: dict[str, str]) -> None:
    for kind, needle in (("broken", "\\u001b[2J"), ("garbage", "not json \\u001b[31m\\u0007")):
        r = dlq(env, "show", dead[kind]["position"])
        assert r.exit_code == 0, r.output
        assert needle in r.stdout and not any(c in r.stdout for c in RAW_CONTROLS), r.stdout
    r = dlq(env, "show", dead["broken"]["position"], "--json")
    doc = orjson.loads(r.stdout)
    assert orjson.loads(doc["payload"]) == BROKEN and doc["reason"] == dead["broken"]["reason"]


def test_usage_errors_exit_2(dead: dict[str, Any], env: dict[str, str], tmp_path: Path) -> None:
    assert dlq(env, "show", "not-a-position").exit_code == 2
    assert dlq(env, "list", "--since", "yesterday").exit_code == 2
    fixed = tmp_path / "e.json"
    fixed.write_bytes(b"{}")
    r = dlq(env, "replay", dead["broken"]["position"], dead["garbage"]["position"], "--edit", str(fixed))
    assert r.exit_code == 2 and "ONE record" in r.stderr
    r = dlq(env, "show", "0:999999")
    assert r.exit_code == 1 and "no record" in r.stderr


def test_broker_unavailable_exits_2(env: dict[str, str]) -> None:
    started = time.monotonic()
    r = dlq({**env, "AUDITSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}, "list")
    assert r.exit_code == 2 and "unavailable" in r.stderr, r.output
    assert time.monotonic() - started < 60


def test_replay_refuses_invalid_records_and_sends_nothing(
    dead: dict[str, Any], env: dict[str, str], kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    before = end_offsets(kafka_bootstrap, topics.events, topics.partitions)
    r = dlq(env, "replay", dead["broken"]["position"])
    assert r.exit_code == 1 and "actor.id" in r.stderr, r.output
    still_bad = tmp_path / "bad.json"
    still_bad.write_bytes(orjson.dumps({**BROKEN, "actor": {"id": "u-1"}, "outcome": "maybe"}))
    r = dlq(env, "replay", dead["broken"]["position"], "--edit", str(still_bad))
    assert r.exit_code == 1 and "outcome" in r.stderr, r.output
    # One good and one bad: all or nothing.
    r = dlq(env, "replay", dead["broken"]["position"], dead["garbage"]["position"])
    assert r.exit_code == 1
    assert end_offsets(kafka_bootstrap, topics.events, topics.partitions) == before


def test_replay_with_a_fix_is_stored_once_with_its_original_id_and_audited(
    dead: dict[str, Any], env: dict[str, str], pipeline: PipelineProcess, tmp_path: Path
) -> None:
    broken = dead["broken"]
    fixed = {**BROKEN, "actor": {"id": "u-mallory", "name": "mallory"}}
    path = tmp_path / "fixed.json"
    path.write_bytes(orjson.dumps(fixed, option=orjson.OPT_INDENT_2))
    src = broken["source"]
    expected_id = str(
        position_event_id(
            parse_event(orjson.dumps(fixed)).occurred_at, src["topic"], src["partition"], src["offset"]
        )
    )

    r = dlq(env, "replay", broken["position"], "--edit", str(path))
    assert r.exit_code == 0, r.output
    assert expected_id in r.stdout

    def stored_event() -> httpx.Response | None:
        got = api_get(pipeline, f"/v1/events/{expected_id}")
        return got if got.status_code == 200 else None

    stored = poll("replayed event stored", stored_event)
    assert stored.json()["actor"]["id"] == "u-mallory"
    audits = poll("dlq.replayed stored", lambda: events(pipeline, action="dlq.replayed"))
    assert len(audits) == 1
    audit = audits[0]
    assert audit["source"]["service"] == "auditstream-cli" and audit["tenant_id"] == TENANT
    assert audit["details"]["event_id"] == expected_id
    assert audit["details"]["dlq_offset"] == str(broken["offset"]) and audit["details"]["edited"] == "true"

    # Again: a second audit event, but the event itself stays stored once.
    r = dlq(env, "replay", broken["position"], "--edit", str(path))
    assert r.exit_code == 0, r.output
    # Same tenant key, same partition: the copy was processed before the second audit event.
    poll("second dlq.replayed stored", lambda: len(events(pipeline, action="dlq.replayed")) == 2)
    assert [e["event_id"] for e in events(pipeline, action=ACTION)] == [expected_id]
