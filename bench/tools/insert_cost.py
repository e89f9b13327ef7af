"""The engine's CPU per event for the events insert under other insert settings (not a test).

Usage: .venv/bin/python bench/tools/insert_cost.py [events_per_batch=20000] [batches=30]
       [variants=base,ooi0,noidx,ngram,both,nongram]   (ROUNDS=n in the environment, default 2)

Each variant: a fresh chDB folder with every migration, the same ``batches`` batches of
validated bench events encoded once (``Store.encode_rows``, as the processor encodes them),
inserted one after another with the processor's settings plus the variant's, then a wait
until no merge runs, then ``OPTIMIZE ... FINAL`` of the three tables an insert writes. The
figures are this process's CPU time (all threads, chDB's merges included) per event from the
first insert to the end of the inserts, of the merges, and of the final merge: what the
insert costs the box, not only the call; then the final merge's share of each table, and the
rows per second of wall time until the merges the engine chose to run are done (inserting one
batch at a time as the processor does; the final merge's work is not in it). One engine per
process: variants run one after another.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from auditstream.bench.ingest import QUIET_LOOKS, merges_settled
from auditstream.bench.messages import encode_messages
from auditstream.processor.batch import KafkaMessage, process_batch
from auditstream.store import Store
from auditstream.store.client import create_client
from auditstream.store.store import FEED_TABLE

# "base" is the engine's defaults (stop 25's inserts); "ngram" is what the store sends now
# (store.py, _ENGINE_INSERT_SETTINGS).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"optimize_on_insert": 1, "exclude_materialize_skip_indexes_on_insert": ""},
    "ooi0": {"optimize_on_insert": 0, "exclude_materialize_skip_indexes_on_insert": ""},
    "noidx": {"optimize_on_insert": 1, "materialize_skip_indexes_on_insert": 0},
    "ngram": {"optimize_on_insert": 0, "exclude_materialize_skip_indexes_on_insert": "idx_search_text"},
    "both": {"optimize_on_insert": 0, "materialize_skip_indexes_on_insert": 0},
    # The store's settings on a table without the n-gram index: what the index costs the merges.
    "nongram": {"optimize_on_insert": 0, "exclude_materialize_skip_indexes_on_insert": "idx_search_text"},
}
# Changes to the migrated schema before the inserts, per variant.
DDL: dict[str, list[str]] = {"nongram": ["ALTER TABLE cost.audit_events DROP INDEX idx_search_text"]}


def run(variant: str, batches: list[list[tuple]]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        dsn = f"chdb://{tmp}/ch"
        store = Store(dsn, "cost")
        store.open()
        client = create_client(dsn)
        for statement in DDL.get(variant, []):
            client.command(statement)
        encoded = [store.encode_rows(rows) for rows in batches]
        started = time.process_time()
        wall = time.monotonic()
        for i, e in enumerate(encoded):
            settings = {
                "async_insert": 0,
                "insert_deduplicate": 1,
                "insert_deduplication_token": f"t/{i}",
                **VARIANTS[variant],
            }
            client.raw_insert(e.table, e.columns, insert_block=e.body, settings=settings, fmt="Native")
        inserted = time.process_time() - started
        merges_settled(client, interval_s=0.1)
        merged = time.process_time() - started
        # The quiet looks that end the wait taken off, this is rows per second of wall time with
        # the merges the engine chose to run done (not the final OPTIMIZE's work).
        merged_wall = time.monotonic() - wall - QUIET_LOOKS * 0.1
        # Every part merged into one per partition, with every index built: both variants end in
        # the same state, so what is left of the difference is work the variant saved, not
        # work it put off to a later merge.
        final: dict[str, float] = {}
        for table in ("audit_events", FEED_TABLE, "audit_ids"):
            before = time.process_time()
            client.command(f"OPTIMIZE TABLE cost.{table} FINAL")
            final[table] = time.process_time() - before
        total = time.process_time() - started
        client.close()
        store.close()
    n = sum(len(b) for b in batches)
    print(
        f"{variant:6s} inserts {inserted / n * 1e6:6.2f} µs/event, with their merges {merged / n * 1e6:6.2f},"
        f" with a final merge of everything {total / n * 1e6:6.2f};"
        f" {n / merged_wall:,.0f} rows/s of wall time, merges caught up",
        flush=True,
    )
    shares = ", ".join(f"{table} {cpu / n * 1e6:.2f}" for table, cpu in final.items())
    print(f"       the final merge per table (µs/event): {shares}", flush=True)


def main(per_batch: int, count: int, variants: list[str]) -> None:
    pairs = encode_messages(per_batch * count, seed=5)
    now = datetime.now(UTC)
    batches = []
    for b in range(count):
        messages = [
            KafkaMessage("t", i % 3, b * per_batch + i, k, v)
            for i, (k, v) in enumerate(pairs[b * per_batch : (b + 1) * per_batch])
        ]
        batches.append([row.values for row in process_batch(messages, received_at=now, now=now).rows])
    for _ in range(int(os.environ.get("ROUNDS", "2"))):
        for variant in variants:
            run(variant, batches)


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 20_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 30,
        (sys.argv[3] if len(sys.argv) > 3 else ",".join(VARIANTS)).split(","),
    )
