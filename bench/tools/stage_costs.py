"""Per-event CPU cost of each processor step, in µs of process CPU time (not a test; best of N).

Usage: .venv/bin/python bench/tools/stage_costs.py [events=20000] [rounds=5]

The box is shared, so end-to-end rates swing with the neighbours' load; the best of
several rounds of each stage alone, in CPU time (all threads of the process, chDB's
included), is the figure that moves only with our code.
Stages: validate (``process_batch``: parse + attribution + enrich + hash), the
first-write-wins lookup (``Store.stored_identities``, chDB), settle, and the insert
(``Store.insert_rows``, clickhouse-connect encode + chDB) of the same rows.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from auditstream.bench.messages import encode_messages
from auditstream.processor.batch import KafkaMessage, identity, process_batch
from auditstream.processor.identity import settle_against_store
from auditstream.store.store import Store


def best(label: str, n: int, rounds: int, run: Callable[[int], object]) -> float:
    times = []
    for r in range(rounds):
        started = time.process_time()
        run(r)
        times.append(time.process_time() - started)
    us = min(times) / n * 1e6
    print(f"{label:34s} {us:7.2f} µs/event  (best of {rounds}; worst {max(times) / n * 1e6:.2f})")
    return us


def main(n: int, rounds: int) -> None:
    pairs = encode_messages(n * rounds)
    batches = [
        [KafkaMessage("t", i % 3, i, k, v) for i, (k, v) in enumerate(pairs[r * n : (r + 1) * n])]
        for r in range(rounds)
    ]
    now = datetime.now(UTC)
    processed = [process_batch(b, received_at=now, now=now) for b in batches]
    total = best(
        "validate (process_batch)", n, rounds, lambda r: process_batch(batches[r], received_at=now, now=now)
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"chdb://{tmp}/ch", "stage")
        store.open()
        keys = [list({identity(row) for row in p.rows}) for p in processed]
        total += best(
            "identity lookup (stored_identities)", n, rounds, lambda r: store.stored_identities(keys[r])
        )
        total += best("settle_against_store", n, rounds, lambda r: settle_against_store(processed[r], {}))
        total += best(
            "insert_rows (encode + chDB)",
            n,
            rounds,
            lambda r: store.insert_rows(processed[r].rows, dedup_token=f"t/{r}"),
        )
        store.close()
    print(f"{'sum (one thread, no overlap)':34s} {total:7.2f} µs/event = {1e6 / total:,.0f} events/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
