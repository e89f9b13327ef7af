"""Measurement, not a check: FINAL vs LIMIT 1 BY event_id, and insert throughput.

Skipped unless ``AUDITSTREAM_BENCH=1``; run with ``-s`` to see the figures. It loads
one million rows (50k-row batches, five tenants, one row every 2.5 s over ~29 days),
re-inserts 5% of them without a token so reads must de-duplicate, then times a
100-row page and a count per filter with both strategies.
"""

from __future__ import annotations

import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auditstream.store import EventFilter, Store, build_where
from tests.store.conftest import build_row

pytestmark = [
    pytest.mark.clickhouse,
    pytest.mark.skipif(not os.environ.get("AUDITSTREAM_BENCH"), reason="set AUDITSTREAM_BENCH=1 to measure"),
]

BASE = datetime(2026, 10, 1, tzinfo=UTC)
ACTIONS = [
    "user.login",
    "user.login_failed",
    "config.updated",
    "scan.created",
    "key.created",
    "export.created",
]


def test_measure_final_vs_limit_by(store: Store) -> None:
    rng = random.Random(7)
    total, batch = 1_000_000, 50_000
    timings: list[float] = []
    for b in range(total // batch):
        rows = [
            build_row(
                event_id=uuid.uuid4(),
                tenant_id=f"bench{i % 5}",
                occurred_at=BASE + timedelta(seconds=i * 2.5),
                action=rng.choice(ACTIONS),
                actor_id=f"actor{rng.randrange(2000)}",
                resource_type="scan",
                resource_id=f"r{rng.randrange(100_000)}",
                details={"k": "v"},
                kafka_offset=i,
            )
            for i in range(b * batch, (b + 1) * batch)
        ]
        start = time.perf_counter()
        store.insert_rows(rows, dedup_token=f"bench-{b}")
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    print(f"\ninsert {batch} rows: median {median * 1000:.0f} ms = {batch / median:,.0f} rows/s")

    client = store._client()
    table = f"{store.database}.audit_events"
    client.command(f"INSERT INTO {table} SELECT * FROM {table} WHERE kafka_offset % 20 = 0")

    def ms(sql: str, params: dict) -> float:
        runs = []
        for _ in range(15):
            start = time.perf_counter()
            client.query(sql, parameters=params)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs) * 1000

    day = (BASE + timedelta(days=10), BASE + timedelta(days=11))
    cases = {
        "1 day": EventFilter("bench1", since=day[0], until=day[1]),
        "1 day + actor": EventFilter("bench1", since=day[0], until=day[1], actors=["actor7"]),
        "30 days + action": EventFilter(
            "bench1", since=BASE, until=BASE + timedelta(days=30), actions=["config.updated"]
        ),
        "whole tenant": EventFilter("bench1"),
    }
    order = "ORDER BY occurred_at DESC, event_id DESC"
    for name, f in cases.items():
        where, params = build_where(f)
        final_page = ms(f"SELECT * FROM {table} FINAL WHERE {where} {order} LIMIT 100", params)
        by_page = ms(f"SELECT * FROM {table} WHERE {where} {order} LIMIT 1 BY event_id LIMIT 100", params)
        final_count = ms(f"SELECT count() FROM {table} FINAL WHERE {where}", params)
        uniq_count = ms(f"SELECT uniqExact(event_id) FROM {table} WHERE {where}", params)
        print(
            f"{name:17s} page: FINAL {final_page:6.1f} ms, LIMIT 1 BY {by_page:6.1f} ms | "
            f"count: FINAL {final_count:6.1f} ms, uniqExact {uniq_count:6.1f} ms"
        )
