"""What first write wins costs the write path, measured on the real engine (not a test).

Usage: .venv/bin/python bench/tools/identity_cost.py [--rows 1000000] [--batch 20000] [--runs 5]

Generates ``--rows`` stored events (bench/datagen.py, inside ClickHouse), then measures, per
processor batch of ``--batch`` events:

- the identity lookup (``Store.stored_identities``) for a batch of new ids (the common case)
  and for a batch of which half are stored (replay after a crash);
- the insert of a batch with the identity index's materialized view in place vs. dropped;
- the content hash per event (Python, BLAKE2b over the row's content).

Each figure is the median of ``--runs`` runs; the box is shared, so medians, not minima.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from auditstream.bench.datagen import Dataset, generate
from auditstream.events.ids import uuid7
from auditstream.events.stored import COLUMNS, content_hash
from auditstream.store import Store
from auditstream.store.client import create_client
from tests.store.conftest import build_row


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--ids", choices=["v4", "v7"], default="v4", help="new batch ids: random (worst case) or time-ordered (SDK)"
    )
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="identity-cost-")
    dsn = f"chdb://{folder}"
    store = Store(dsn, "bench_identity", retention_days=3650)
    store.open()
    client = create_client(dsn)
    t0 = time.perf_counter()
    generate(client, "bench_identity", Dataset(rows=args.rows, tenants=50, days=30))
    print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
    stored_keys = [
        (r[0], r[1])
        for r in client.query(
            f"SELECT tenant_id, event_id FROM bench_identity.audit_ids LIMIT {args.batch // 2}"  # noqa: S608
        ).result_rows
    ]
    now = datetime.now(UTC)

    def new_batch() -> list[tuple]:
        return [
            build_row(
                tenant_id=f"tenant-{i % 50:04d}",
                event_id=uuid.uuid4() if args.ids == "v4" else uuid7(),
                occurred_at=now - timedelta(seconds=i % 3600),
                kafka_offset=i,
            )
            for i in range(args.batch)
        ]

    lookups_new, lookups_half, with_mv, without_mv, hashing = [], [], [], [], []
    for _ in range(args.runs):
        rows = new_batch()
        keys = [(r[1], r[0]) for r in rows]
        t = time.perf_counter()
        found = store.stored_identities(keys)
        lookups_new.append(time.perf_counter() - t)
        assert not found
        half = keys[: args.batch // 2] + stored_keys
        t = time.perf_counter()
        found = store.stored_identities(half)
        lookups_half.append(time.perf_counter() - t)
        assert len(found) == len(stored_keys)
        t = time.perf_counter()
        for r in rows:
            content_hash(r)
        hashing.append((time.perf_counter() - t) / len(rows))
        t = time.perf_counter()
        store.insert_rows(rows)
        with_mv.append(time.perf_counter() - t)
    mv_sql = client.query(
        "SELECT create_table_query FROM system.tables WHERE database = 'bench_identity' AND name = 'audit_ids_mv'"
    ).result_rows[0][0]
    client.command("DROP VIEW bench_identity.audit_ids_mv")
    for _ in range(args.runs):
        rows = new_batch()
        t = time.perf_counter()
        store.insert_rows(rows)
        without_mv.append(time.perf_counter() - t)
    client.command(mv_sql)
    n = args.batch
    print(f"stored rows: {args.rows:,}; batch: {n:,} events ({args.ids} ids); median of {args.runs} runs")
    print(f"identity lookup, all new:     {median_ms(lookups_new):8.1f} ms/batch = {median_ms(lookups_new) * 1000 / n:5.2f} µs/event")
    print(f"identity lookup, half stored: {median_ms(lookups_half):8.1f} ms/batch = {median_ms(lookups_half) * 1000 / n:5.2f} µs/event")
    print(f"insert with audit_ids view:   {median_ms(with_mv):8.1f} ms/batch = {median_ms(with_mv) * 1000 / n:5.2f} µs/event")
    print(f"insert without it:            {median_ms(without_mv):8.1f} ms/batch = {median_ms(without_mv) * 1000 / n:5.2f} µs/event")
    print(f"content hash (Python):        {statistics.median(hashing) * 1e6:8.2f} µs/event")
    print(f"columns per row: {len(COLUMNS)}")
    store.close()
    client.close()


if __name__ == "__main__":
    main()
