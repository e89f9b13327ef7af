"""End to end on the real broker and ClickHouse engine: SDK and plain Kafka producers ->
faust processor -> ClickHouse -> query API, with malformed input going to the DLQ.

One pipeline is loaded once for the module (10,000 messages for three tenants, 5%
malformed in different ways); each test then checks one promise through the API.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from auditstream.api.keys import KeyStore, Role
from auditstream.demo.generator import generate_events
from auditstream.demo.malformed import malformed_messages
from auditstream.events.ids import uuid7
from auditstream.processor.dlq import read_dead_letter_headers
from auditstream.producer import AuditProducer
from tests.fixtures.kafka import Topics, new_topics
from tests.fixtures.pipeline import PipelineProcess, running_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline]

TENANTS = ["acme", "globex", "initech"]
N_MESSAGES = 10_000
N_MALFORMED = N_MESSAGES * 5 // 100
N_VALID = N_MESSAGES - N_MALFORMED
STORED_WITHIN_SECONDS = 240.0
RESULTS = Path(__file__).resolve().parents[2] / ".cache" / "e2e-throughput.json"


@dataclass
class Loaded:
    pipeline: PipelineProcess
    topics: Topics
    events: list[dict[str, Any]]
    malformed: list[tuple[bytes, str]]
    readers: dict[str, str]
    exporters: dict[str, str]
    seconds: float

    def by_tenant(self, tenant: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["tenant_id"] == tenant]


async def _produce(
    bootstrap: str, topic: str, events: list[dict[str, Any]], malformed: list[tuple[bytes, str]]
) -> None:
    """70% of the valid events through the SDK, the rest and the malformed ones through a plain producer."""
    split = len(events) * 7 // 10
    async with AuditProducer(bootstrap=bootstrap, topic=topic) as sdk:
        for event in events[:split]:
            await sdk.emit(event)
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2 * 1024 * 1024)
    await plain.start()
    try:
        rest = events[split:]
        step = max(1, len(rest) // max(1, len(malformed)))
        futures = []
        for i, event in enumerate(rest):
            futures.append(await plain.send(topic, orjson.dumps(event), key=event["tenant_id"].encode()))
            if i % step == 0 and i // step < len(malformed):
                j = i // step
                futures.append(await plain.send(topic, malformed[j][0], key=f"malformed-{j}".encode()))
        for j in range(len(rest) // step + 1, len(malformed)):
            futures.append(await plain.send(topic, malformed[j][0], key=f"malformed-{j}".encode()))
        await asyncio.gather(*futures)
    finally:
        await plain.stop()


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def loaded(kafka_bootstrap: str, clickhouse_dsn: str) -> Iterator[Loaded]:
    topics = new_topics(kafka_bootstrap)
    with running_pipeline(kafka_bootstrap, topics, clickhouse_dsn) as pipeline:
        events = list(generate_events(N_VALID, tenants=TENANTS, seed=2026))
        for event in events:
            event["event_id"] = str(uuid7())  # known ids for every valid event, whichever way it is sent
        malformed = malformed_messages(N_MALFORMED, seed=2026)
        # Stored before the test's events: the key.created events of the demo keys (stored by now).
        startup = _metric(
            httpx.get(f"{pipeline.url}/metrics", timeout=5).text, "auditstream_processor_stored_total"
        )
        started = time.monotonic()
        asyncio.run(_produce(kafka_bootstrap, topics.events, events, malformed))
        deadline = started + STORED_WITHIN_SECONDS
        stored = rejected = 0.0
        while time.monotonic() < deadline:
            text = httpx.get(f"{pipeline.url}/metrics", timeout=5).text
            stored = _metric(text, "auditstream_processor_stored_total") - startup
            rejected = _metric(text, "auditstream_processor_rejected_total")
            if stored >= N_VALID and rejected >= N_MALFORMED:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        assert stored == N_VALID and rejected == N_MALFORMED, (stored, rejected, pipeline.tail())
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "messages": N_MESSAGES,
                    "seconds": round(seconds, 3),
                    "per_second": round(N_MESSAGES / seconds),
                }
            )
        )
        print(
            f"\nend to end: {N_MESSAGES} messages produced and stored/rejected in {seconds:.2f}s "
            f"({N_MESSAGES / seconds:,.0f}/s)"
        )
        # Keys are made while the server runs: one with the CLI, as an operator would.
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "auditstream.cli.main",
                "keys",
                "create",
                "--tenant",
                "acme",
                "--role",
                "reader",
                # The key.created audit event would be one more acme event than the data set.
                "--no-audit",
            ],
            env=pipeline.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        keys = KeyStore(pipeline.data_dir / "keys.sqlite3")
        readers = {t: keys.create(t, Role.READER, name=f"e2e {t}").token for t in TENANTS}
        readers["acme"] = created.stdout.strip()
        exporters = {t: keys.create(t, Role.EXPORTER, name=f"e2e export {t}").token for t in TENANTS}
        yield Loaded(pipeline, topics, events, malformed, readers, exporters, seconds)


# --- helpers -------------------------------------------------------------------
WINDOW = {"since": "-30d"}


def _get(loaded: Loaded, tenant: str, path: str, **params: Any) -> httpx.Response:
    keys = loaded.exporters if path.startswith("/v1/export") else loaded.readers
    # The detail route takes no time window: an undeclared parameter is a 400 (issue 9).
    window = {} if path.startswith("/v1/events/") else WINDOW
    return httpx.get(
        f"{loaded.pipeline.url}{path}",
        params={**window, **params},
        headers={"Authorization": f"Bearer {keys[tenant]}"},
        timeout=30,
    )


def _page_all(loaded: Loaded, tenant: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):  # bounded: 1000 pages of 1000 is far more than the data set
        query = {**params, "limit": 1000}
        if cursor:
            query["cursor"] = cursor
        response = _get(loaded, tenant, "/v1/events", **query)
        assert response.status_code == 200, response.text
        body = response.json()
        out.extend(body["data"])
        cursor = body["next_cursor"]
        if not cursor:
            return out
    raise AssertionError("pagination did not end")


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["event_id"]) for e in events]


# --- the promises --------------------------------------------------------------
def test_every_event_stored_once_per_tenant_and_pages_visit_each_once(loaded: Loaded) -> None:
    for tenant in TENANTS:
        paged = _ids(_page_all(loaded, tenant))
        assert len(paged) == len(set(paged)), "a page repeated an event"
        assert set(paged) == set(_ids(loaded.by_tenant(tenant)))


def test_each_filter_returns_exactly_the_matching_events(loaded: Loaded) -> None:
    tenant = "acme"
    events = loaded.by_tenant(tenant)
    actor = Counter(e["actor"]["id"] for e in events).most_common(1)[0][0]
    resource = next(e["resource"] for e in events if e.get("resource", {}).get("id"))
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"actor": actor}, lambda e: e["actor"]["id"] == actor),
        ({"action": "user.login_failed"}, lambda e: e["action"] == "user.login_failed"),
        ({"action": "scan.*"}, lambda e: e["action"].startswith("scan.")),
        ({"action": ["key.created", "key.revoked"]}, lambda e: e["action"] in ("key.created", "key.revoked")),
        (
            {"resource_type": resource["type"]},
            lambda e: e.get("resource", {}).get("type") == resource["type"],
        ),
        ({"resource_id": resource["id"]}, lambda e: e.get("resource", {}).get("id") == resource["id"]),
        ({"outcome": "failure"}, lambda e: e.get("outcome", "success") == "failure"),
        (
            {"action": "user.*", "outcome": "success"},
            lambda e: e["action"].startswith("user.") and e.get("outcome", "success") == "success",
        ),
    ]
    for params, matches in cases:
        expected = {e["event_id"] for e in events if matches(e)}
        assert expected, f"the data set has no event for {params}"
        got = _ids(_page_all(loaded, tenant, **params))
        assert len(got) == len(set(got))
        assert set(got) == expected, params


def test_time_range_filter(loaded: Loaded) -> None:
    tenant = "globex"
    events = loaded.by_tenant(tenant)
    times = sorted(_parse_ms(e["occurred_at"]) for e in events)
    since, until = times[len(times) // 4], times[len(times) // 2]
    expected = {e["event_id"] for e in events if since <= _parse_ms(e["occurred_at"]) < until}
    got = _ids(_page_all(loaded, tenant, since=_rfc3339(since), until=_rfc3339(until)))
    assert set(got) == expected


def test_ndjson_export_equals_the_paged_result(loaded: Loaded) -> None:
    tenant = "initech"
    params = {"action": "user.*"}
    paged = _ids(_page_all(loaded, tenant, **params))
    response = _get(loaded, tenant, "/v1/export", format="ndjson", **params)
    assert response.status_code == 200, response.text
    exported = [json.loads(line) for line in response.text.splitlines() if line]
    assert _ids(exported) == paged
    assert len(exported) > 100


def test_a_tenant_key_never_sees_another_tenant(loaded: Loaded) -> None:
    acme_ids = set(_ids(loaded.by_tenant("acme")))
    seen = _page_all(loaded, "globex")
    assert {e["tenant_id"] for e in seen} == {"globex"}
    assert not acme_ids & set(_ids(seen))
    some_acme = next(iter(acme_ids))
    assert _get(loaded, "globex", f"/v1/events/{some_acme}").status_code == 404
    assert _get(loaded, "acme", f"/v1/events/{some_acme}").status_code == 200
    export = _get(loaded, "globex", "/v1/export", format="ndjson")
    assert export.status_code == 200, export.text
    assert not acme_ids & {json.loads(line)["event_id"] for line in export.text.splitlines() if line}


def test_every_malformed_message_is_in_the_dlq_with_a_reason_naming_the_field(loaded: Loaded) -> None:
    records = asyncio.run(
        _consume_all(
            loaded.pipeline.env["AUDITSTREAM_KAFKA_BOOTSTRAP"], loaded.topics.dlq, len(loaded.malformed)
        )
    )
    # One record per malformed message (by key: the DLQ is at least once, a retry after a
    # send error republishes a batch's rejects) and none for a valid one.
    expected = {f"malformed-{i}".encode() for i in range(len(loaded.malformed))}
    assert {key for key, _, _ in records} == expected
    for key, value, headers in records:
        index = int(key.decode().removeprefix("malformed-"))
        original, field = loaded.malformed[index]
        assert value == original[: len(value)]  # the original bytes (cut only above the broker's limit)
        meta = read_dead_letter_headers(headers)
        assert meta["auditstream.source.topic"] == loaded.topics.events
        errors = json.loads(meta["auditstream.error.errors"])
        assert any(err["field"] == field for err in errors), (field, errors)
        if field:
            assert re.search(re.escape(field), meta["auditstream.error.reason"]), meta


async def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes, list]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[tuple[bytes, bytes, list]] = []
    try:
        deadline = time.monotonic() + 60
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out.extend((r.key, r.value, list(r.headers)) for r in records)
        # one more short poll: nothing beyond the expected count may be there
        for records in (await consumer.getmany(timeout_ms=500)).values():
            out.extend((r.key, r.value, list(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return out


def _parse_ms(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_throughput_is_reported(loaded: Loaded) -> None:
    assert loaded.seconds > 0
    assert json.loads(RESULTS.read_text())["messages"] == N_MESSAGES
    assert timedelta(seconds=loaded.seconds) < timedelta(seconds=STORED_WITHIN_SECONDS)


# --- the SIEM feed and live mode through the real broker and processor ----------------
LATE_TENANT = "umbrella"  # its own tenant: the counts above stay exact


def _feed_until(loaded: Loaded, key: str, cursor: str | None, want: int) -> tuple[list[str], str]:
    """Follow next_cursor until ``want`` events came (bounded), return their ids and the cursor."""
    ids: list[str] = []
    deadline = time.monotonic() + 60
    while len(ids) < want and time.monotonic() < deadline:
        params: dict[str, Any] = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        response = httpx.get(
            f"{loaded.pipeline.url}/v1/feed",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        # The feed's own trail (feed.read, one per cursor session) is in the tenant's log too.
        ids.extend(e["event_id"] for e in body["data"] if e["action"] != "feed.read")
        cursor = body["next_cursor"]
        if not body["data"]:
            time.sleep(0.1)  # caught up: poll again (the processor is still writing)
    return ids, cursor or ""


def test_feed_delivers_late_events_exactly_once(loaded: Loaded) -> None:
    key = KeyStore(loaded.pipeline.data_dir / "keys.sqlite3").create(LATE_TENANT, Role.EXPORTER).token
    now = datetime.now(UTC)
    first = list(
        generate_events(120, tenants=[LATE_TENANT], seed=11, start=now - timedelta(hours=1), end=now)
    )
    # Arrive later but happened earlier: hours and days before the events already fetched.
    late = list(
        generate_events(
            80, tenants=[LATE_TENANT], seed=12, start=now - timedelta(days=3), end=now - timedelta(hours=5)
        )
    )
    for event in first + late:
        event["event_id"] = str(uuid7())
    bootstrap = loaded.pipeline.env["AUDITSTREAM_KAFKA_BOOTSTRAP"]

    asyncio.run(_produce(bootstrap, loaded.topics.events, first, []))
    got_first, cursor = _feed_until(loaded, key, None, len(first))
    asyncio.run(_produce(bootstrap, loaded.topics.events, late, []))
    got_late, _ = _feed_until(loaded, key, cursor, len(late))

    assert sorted(got_first) == sorted(e["event_id"] for e in first)
    assert sorted(got_late) == sorted(e["event_id"] for e in late)


def test_live_mode_receives_an_event_produced_after_it_connects(loaded: Loaded) -> None:
    key = KeyStore(loaded.pipeline.data_dir / "keys.sqlite3").create(LATE_TENANT, Role.READER).token
    event = next(generate_events(1, tenants=[LATE_TENANT], seed=13))
    event["event_id"] = str(uuid7())
    bootstrap = loaded.pipeline.env["AUDITSTREAM_KAFKA_BOOTSTRAP"]
    received: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{loaded.pipeline.url}/v1/live",
        params={"max_seconds": 30},
        headers={"Authorization": f"Bearer {key}"},
        timeout=40,
    ) as response:
        assert response.status_code == 200
        asyncio.run(_produce(bootstrap, loaded.topics.events, [event], []))  # after the stream opened
        for line in response.iter_lines():
            if line.startswith("data:"):
                received.append(json.loads(line.removeprefix("data:").strip()))
                if any(e.get("event_id") == event["event_id"] for e in received):
                    break
    assert event["event_id"] in {e.get("event_id") for e in received}
