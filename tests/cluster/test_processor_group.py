"""Two processors in one consumer group: one is SIGKILLed, the other takes over its partitions.

Several processors writing one store need a ClickHouse server, which cannot run here, so
each member writes its own chDB folder; what is checked is the consumer-group behaviour on
the real broker. Producing starts once both members hold partitions (so the kill is the
only hand-over). Right after the kill the group's committed offsets are read: they are
where the survivor resumes the dead member's partitions. At the end:

- the union of the two stores holds every produced event;
- every event found in both stores is one the killed member had written at or after the
  committed offset of its partition (written, not yet committed): re-read by the survivor,
  as at-least-once delivery allows and the shared store of a real deployment de-duplicates;
- the survivor stored events of the dead member's partitions (it took them over).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from auditstream.demo.generator import generate_events
from auditstream.events.ids import uuid7
from tests.faults.support import all_committed, metric, until
from tests.fixtures.kafka import new_topics
from tests.fixtures.pipeline import PipelineProcess, running_pipeline

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline]

N_EVENTS = 12_000
EVENTS_PER_SECOND = 400
PARTITIONS = 6
STORED_BEFORE_KILL = 1_500  # by the member that is killed
# Events are keyed by tenant: enough tenants that every partition, so each member, gets some.
TENANTS = [f"tenant-{i:02d}" for i in range(24)]


def events_with_ids(n: int, seed: int) -> list[dict[str, Any]]:
    events = list(generate_events(n, tenants=TENANTS, seed=seed))
    for event in events:
        event["event_id"] = str(uuid7())
    return events


async def _group(bootstrap: str, group: str) -> tuple[int, str, dict[int, int]]:
    """How many members the group has, its state, and its committed offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    _error, _group_id, state, _protocol_type, _protocol, members, *_ = described.groups[0]
    return len(members), state, {tp.partition: m.offset for tp, m in committed.items() if m.offset >= 0}


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    return asyncio.run(_group(bootstrap, group))[2]


def stable_with_two_members(bootstrap: str, group: str) -> bool:
    members, state, _ = asyncio.run(_group(bootstrap, group))
    return members == 2 and state == "Stable"


def stored_rows(pipeline: PipelineProcess) -> list[tuple[str, int, int]]:
    """(event_id, partition, offset) of every distinct stored event, read in a child process.

    A child: chDB allows one engine per process, and this one may already have its own.
    """
    code = (
        "import json, sys\nfrom auditstream.store.client import create_client\n"
        "c = create_client(sys.argv[1])\n"
        "sql = 'SELECT toString(event_id), kafka_partition, kafka_offset FROM ' + sys.argv[2]\n"
        # The test's events only, not the trail of the demo keys each `run` creates (internal).
        "where = \" WHERE ingest_channel != 'internal'\"\n"
        "print(json.dumps(c.query(sql + '.audit_events FINAL' + where).result_rows))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            pipeline.env["AUDITSTREAM_CLICKHOUSE_DSN"],
            pipeline.env["AUDITSTREAM_CLICKHOUSE_DATABASE"],
        ],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=pipeline.data_dir,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(row) for row in json.loads(done.stdout)]


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]], done: threading.Event) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            started = time.monotonic()
            for i, event in enumerate(events):
                await producer.send(topic, orjson.dumps(event), key=event["tenant_id"].encode())
                ahead = (i + 1) / EVENTS_PER_SECOND - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing, not synchronisation
            await producer.flush()
        finally:
            await producer.stop()
            done.set()

    asyncio.run(go())


@pytest.mark.timeout(600)
def test_survivor_takes_over_the_killed_members_partitions(kafka_bootstrap: str, clickhouse_dsn: str) -> None:
    topics = new_topics(kafka_bootstrap, partitions=PARTITIONS)
    group = f"group-{topics.events}"
    events = events_with_ids(N_EVENTS, seed=91)
    with (
        running_pipeline(
            kafka_bootstrap,
            topics,
            clickhouse_dsn,
            wait_for_startup_events=False,
            AUDITSTREAM_CONSUMER_GROUP=group,
        ) as doomed,
        running_pipeline(
            kafka_bootstrap,
            topics,
            clickhouse_dsn,
            wait_for_startup_events=False,
            AUDITSTREAM_CONSUMER_GROUP=group,
        ) as survivor,
    ):
        until(lambda: stable_with_two_members(kafka_bootstrap, group), "both members in the group", 120)
        produced = threading.Event()
        producer = threading.Thread(
            target=produce, args=(kafka_bootstrap, topics.events, events, produced), daemon=True
        )
        started = time.monotonic()
        producer.start()
        stored = "auditstream_processor_stored_total"
        until(lambda: metric(doomed, stored) >= STORED_BEFORE_KILL, "the member to store", 120, doomed.tail)
        until(lambda: metric(survivor, stored) > 0, "the other member to store", 120, survivor.tail)
        doomed.kill()  # SIGKILL: its batch in flight is neither committed nor finished
        killed_after = time.monotonic() - started
        committed_at_kill = committed_offsets(kafka_bootstrap, group)
        until(produced.is_set, "the producer to finish", 180)
        producer.join(timeout=10)
        until(lambda: all_committed(kafka_bootstrap, survivor), "every offset committed", 300, survivor.tail)
        takeover_seconds = time.monotonic() - started - killed_after

        in_doomed = {eid: (p, o) for eid, p, o in stored_rows(doomed)}
        assert survivor.stop() == 0
        in_survivor = {eid: (p, o) for eid, p, o in stored_rows(survivor)}

    everything = {e["event_id"] for e in events}
    union = set(in_doomed) | set(in_survivor)
    both = set(in_doomed) & set(in_survivor)
    doomed_partitions = {p for p, _ in in_doomed.values()}
    survivor_partitions = {p for p, _ in in_survivor.values()}
    not_uncommitted = [eid for eid in both if in_doomed[eid][1] < committed_at_kill.get(in_doomed[eid][0], 0)]
    taken_over = Counter(p for p, o in in_survivor.values() if p in doomed_partitions)
    print(
        f"\nconsumer group: 2 processors, {PARTITIONS} partitions, {N_EVENTS} events; member killed after "
        f"{killed_after:.1f} s with {len(in_doomed)} events in its store "
        f"(partitions {sorted(doomed_partitions)}, "
        f"committed then {dict(sorted(committed_at_kill.items()))}); survivor stored {len(in_survivor)} "
        f"(partitions {sorted(survivor_partitions)}), all committed {takeover_seconds:.1f} s after the kill; "
        f"union {len(union)}, missing {len(everything - union)}, in both stores {len(both)} "
        f"(all written-not-committed: {not not_uncommitted})"
    )
    assert union == everything, f"{len(everything - union)} events in neither store"
    assert not (union - everything)
    assert not not_uncommitted, f"{len(not_uncommitted)} events in both stores below the committed offset"
    assert doomed_partitions and doomed_partitions <= survivor_partitions, "the survivor did not take over"
    assert sum(taken_over.values()) > 0
