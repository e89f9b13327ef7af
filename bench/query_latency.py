"""Query API latency over generated data, and NDJSON export rate vs ClickHouse's own.

    .venv/bin/python bench/query_latency.py --rows 1000000 [--dsn chdb:///tmp/x] [--runs 30]

Rows are generated inside ClickHouse (INSERT ... SELECT FROM numbers()) over 30 days
with skew: 3 tenants (70/20/10 %), Zipf-like actors and actions, 5 % failures, IPv4
and IPv6 addresses, details on a third of rows, and 2 % late arrivals (received long
after occurred_at). Every route runs in-process through the real FastAPI app
(TestClient), so the figures include auth, parsing, SQL and JSON encoding.
Prints p50/p95 per route in ms, then export rows/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.api.keys import KeyStore, Role
from auditstream.config import Settings
from auditstream.store import Store

GENERATE = """
INSERT INTO {db}.audit_events
    (event_id, tenant_id, occurred_at, received_at, action, category, severity, outcome, reason,
     actor_id, actor_type, actor_name, actor_email, actor_ip, actor_user_agent, resource_type,
     resource_id, resource_name, source_service, source_host, source_request_id, changes, details,
     schema_version, kafka_topic, kafka_partition, kafka_offset)
SELECT
    generateUUIDv4(number) AS event_id,
    multiIf(r1 < 70, 'acme', r1 < 90, 'globex', 'initech') AS tenant_id,
    now64(3) - toIntervalMillisecond(intDiv(number * 2592000000, {n}) + 60000) AS occurred_at,
    if(r2 < 2, now64(3) - toIntervalMillisecond(intDiv(number * 2592000000, {n}) - 21600000 * (r2 + 1)),
       occurred_at + toIntervalMillisecond(r3 % 2000)) AS received_at,
    ['user.login','user.logout','scan.created','scan.completed','config.updated','key.created',
     'user.login_failed','export.created','user.password_reset','access.granted'][1 + toUInt32(
        floor(pow(r4 / 1000., 2) * 10))] AS action,
    splitByChar('.', action)[1] AS category,
    if(outcome = 'failure', 'medium', 'info') AS severity,
    if(r5 < 5, 'failure', 'success') AS outcome,
    if(outcome = 'failure', ['password expired', 'mfa required', 'ip blocked'][1 + r5 % 3], '') AS reason,
    concat('user-', toString(toUInt32(floor(pow(r6 / 10000., 3) * 5000)))) AS actor_id,
    'user' AS actor_type,
    concat('User ', actor_id) AS actor_name,
    concat(actor_id, '@example.com') AS actor_email,
    if(r7 < 80, concat('10.', toString(r7), '.', toString(r3 % 256), '.', toString(r6 % 256)),
       concat('2001:db8:', hex(r7), '::', hex(r3))) AS actor_ip,
    'Mozilla/5.0' AS actor_user_agent,
    if(startsWith(action, 'scan'), 'scan', '') AS resource_type,
    if(startsWith(action, 'scan'), concat('scan-', toString(number % 100000)), '') AS resource_id,
    if(startsWith(action, 'scan'), concat('Nightly scan ', toString(number % 1000)), '') AS resource_name,
    'api' AS source_service, 'host-1' AS source_host,
    toString(generateUUIDv4(number + 1)) AS source_request_id,
    '' AS changes,
    if(number % 3 = 0, map('ticket', concat('INC-', toString(number % 50000)), 'note', 'routine'),
       map()) AS details,
    '1' AS schema_version, 'audit.events' AS kafka_topic,
    toUInt16(number % 6) AS kafka_partition, intDiv(number, 6) AS kafka_offset
FROM (
    SELECT number, cityHash64(number) % 100 AS r1, cityHash64(number, 2) % 100 AS r2,
           cityHash64(number, 3) AS r3, cityHash64(number, 4) % 1000 AS r4,
           cityHash64(number, 5) % 100 AS r5, cityHash64(number, 6) % 10000 AS r6,
           cityHash64(number, 7) % 100 AS r7
    FROM numbers({n})
)
"""


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    fn()  # warm up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--dsn", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="auditstream-bench-"))
    dsn = args.dsn or f"chdb://{tmp / 'chdb'}"
    db = "bench"
    store = Store(dsn, db)
    store.open()
    client_ch = store._client()
    if client_ch.command(f"SELECT count() FROM {db}.audit_events") < args.rows:  # noqa: S608
        t0 = time.perf_counter()
        client_ch.command(GENERATE.format(db=db, n=args.rows), settings={"max_insert_threads": 2})
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
    settings = Settings(
        data_dir=tmp, keys_path=tmp / "keys.sqlite3", clickhouse_dsn=dsn, clickhouse_database=db
    )
    token = KeyStore(settings.resolved_keys_path).create("acme", Role.EXPORTER, "bench").token
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, store)) as c:

        def get(path: str, **params: object) -> Callable[[], object]:
            def run() -> object:
                r = c.get(path, params=params, headers=h)
                assert r.status_code == 200, r.text
                return r

            return run

        feed_cursor = c.get("/v1/feed", params={"limit": 1000}, headers=h).json()["next_cursor"]
        cases = {
            "events 1 day, actor": get("/v1/events", since="-24h", actor="user-3"),
            "events 1 day, action": get("/v1/events", since="-24h", action="config.updated"),
            "events 1 day, ip cidr": get("/v1/events", since="-24h", ip="10.42.0.0/16"),
            "events 7 days, no filter": get("/v1/events"),
            "events 7 days, q free text (rare)": get("/v1/events", q="inc-4242"),
            "events 30 days, q free text (common)": get("/v1/events", since="-30d", q="nightly scan 7"),
            "events 1 day, page 2 (cursor)": None,
            "stats by action 7 days": get("/v1/stats", group_by="action"),
            "stats by actor 30 days top 10": get("/v1/stats", group_by="actor", since="-30d", limit=10),
            "stats by hour 7 days": get("/v1/stats", group_by="time", bucket="hour"),
            "feed first page (1000)": get("/v1/feed", limit=1000),
            "feed next page (1000)": get("/v1/feed", limit=1000, cursor=feed_cursor),
            "feed first page (10000)": get("/v1/feed", limit=10000),
        }
        cur = c.get("/v1/events", params={"since": "-24h"}, headers=h).json()["next_cursor"]
        cases["events 1 day, page 2 (cursor)"] = get("/v1/events", since="-24h", cursor=cur)
        print(f"\n{'route':42} {'p50 ms':>8} {'p95 ms':>8}")
        for name, fn in cases.items():
            assert fn is not None
            p50, p95 = timed(fn, args.runs)
            print(f"{name:42} {p50:8.1f} {p95:8.1f}")

        # Export: NDJSON through the API vs ClickHouse's own JSONEachRow of the same rows.
        n = c.get("/v1/stats", params={"since": "-30d", "group_by": "outcome"}, headers=h).json()["total"]
        t0 = time.perf_counter()
        size = 0
        with c.stream("GET", "/v1/export", params={"since": "-30d"}, headers=h) as r:
            for chunk in r.iter_bytes():
                size += len(chunk)
        api_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = 0
        stream = client_ch.raw_stream(
            f"SELECT * FROM {db}.audit_events FINAL WHERE tenant_id = 'acme' "  # noqa: S608
            "AND occurred_at >= now64(3) - INTERVAL 30 DAY ORDER BY occurred_at DESC, event_id DESC "
            "FORMAT JSONEachRow"
        )
        for block in stream:
            raw += len(block)
        ch_s = time.perf_counter() - t0
        print(
            f"\nexport {n:,} rows: API NDJSON {n / api_s:,.0f} rows/s ({size / 1e6:.0f} MB);"
            f" ClickHouse SELECT * FORMAT JSONEachRow {n / ch_s:,.0f} rows/s ({raw / 1e6:.0f} MB);"
            f" ratio {ch_s / api_s:.0%}"
        )
    store.close()


if __name__ == "__main__":
    main()
