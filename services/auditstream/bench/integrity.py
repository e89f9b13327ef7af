"""Benchmark of the tamper-evidence path: sealer throughput and ``verify`` time.

    python -m auditstream.bench.integrity --rows 1000000

Generates ``rows`` stored events of one tenant inside ClickHouse (``datagen``, no
Python per row), then measures on the same engine (chDB in a temporary folder):

* sealing: the sealer following the feed from position 0 (feed page read, canonical
  JSON, SHA-256, leaf insert) in events/s — the rate above which it would fall behind
  ingest (its lag then grows; below it the lag is one poll plus one page);
* checkpoint: signing one checkpoint;
* verify: ``verify_tenant`` recomputing every leaf from audit_events and every root.

Prints one JSON line. Timings are wall clock on a shared machine: a figure, not a test.

    python -m auditstream.bench.integrity --proof --rows 1000000

Proof latency on one sealed log (checkpoints at about half and at ``rows``): one
inclusion and one consistency proof computed from every stored leaf (``leaf_hashes`` +
``merkle.inclusion_proof``, the path before stored subtree hashes) and from the stored
subtree hashes (``stored_tree.StoredTree``, what the API, the badge and exports use), the
median over random leaves; the leaf lookup by event id every proof request also makes; and
the one-off backfill of the subtree hashes when a sealer starts on a log without them.

    python -m auditstream.bench.integrity --ab --bootstrap HOST:PORT --events 60000 --repeat 2

A/B of the sealer's cost to ingest, in one process and one session: the ingest bench's
``run_ours`` on one pre-filled topic, alternating without the sealer, with it never
yielding (``AUDITSTREAM_SEALER_DUTY=1``, the behaviour before it paced itself) and with
the default duty; for each, ingest events/s, the sealer's lag (events stored but not
sealed, and ``auditstream_sealer_lag_seconds``) the moment the last event was stored,
its highest lag seconds during the run, the time it then took to catch up, the sealer
thread's CPU time over the ingest wall time (``sealer_cpu_share``: what it took from the
processor sharing its process), and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

from auditstream.bench.datagen import Dataset, generate
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Signer
from auditstream.integrity.sealer import Sealer
from auditstream.integrity.verify import verify_tenant
from auditstream.store.client import create_client
from auditstream.store.store import Store

TENANT = "bench"


def run(rows: int, page_size: int = 5000) -> dict[str, float | int | str]:
    folder = tempfile.mkdtemp(prefix="auditstream-bench-integrity-")
    store = Store(f"chdb://{folder}", "bench", retention_days=3650)
    store.open()
    ledger = Ledger(store.dsn, store.database)
    try:
        t0 = time.perf_counter()
        client = create_client(store.dsn)
        generate(client, "bench", Dataset(rows, single_tenant=TENANT))
        client.close()
        generated = time.perf_counter() - t0
        signer = Signer.generate("auditstream")
        sealer = Sealer(store, ledger, signer, checkpoint_seconds=3600, page_size=page_size)
        t0 = time.perf_counter()
        heads = store.feed_watermark(TENANT)
        while sealer.seal_tenant(TENANT, heads, max_pages=1000):
            pass
        sealing = time.perf_counter() - t0
        t0 = time.perf_counter()
        sealer.checkpoint(TENANT, force=True)
        signing = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = verify_tenant(
            ledger, TENANT, signer.verifier, origin=sealer.origin(TENANT), retention_days=3650
        )
        verifying = time.perf_counter() - t0
        return {
            "rows": rows,
            "generate_s": round(generated, 2),
            "seal_s": round(sealing, 2),
            "seal_events_per_s": round(rows / sealing),
            "checkpoint_s": round(signing, 4),
            "verify_s": round(verifying, 2),
            "verify_events_per_s": round(rows / verifying),
            "verified": report.exit_code == 0,
            "tree_size": report.tree_size,
        }
    finally:
        ledger.close()
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def _median_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[len(ordered) // 2] * 1000, 2)


def proofs(rows: int, page_size: int = 5000, samples: int = 25, full_samples: int = 3) -> dict[str, Any]:
    import random

    from auditstream.integrity.merkle import consistency_proof, inclusion_proof
    from auditstream.integrity.stored_tree import StoredTree

    folder = tempfile.mkdtemp(prefix="auditstream-bench-proof-")
    store = Store(f"chdb://{folder}", "bench", retention_days=3650)
    store.open()
    ledger = Ledger(store.dsn, store.database)
    load = [os.getloadavg()[0]]
    try:
        client = create_client(store.dsn)
        generate(client, "bench", Dataset(rows, single_tenant=TENANT))
        client.close()
        sealer = Sealer(
            store, ledger, Signer.generate("auditstream"), checkpoint_seconds=3600, page_size=page_size
        )
        heads = store.feed_watermark(TENANT)
        t0 = time.perf_counter()
        sealer.seal_tenant(TENANT, heads, max_pages=max(1, rows // 2 // page_size))
        sealer.checkpoint(TENANT, force=True)
        while sealer.seal_tenant(TENANT, heads, max_pages=1000):
            pass
        sealer.checkpoint(TENANT, force=True)
        sealing = time.perf_counter() - t0
        old, new = ledger.checkpoints(TENANT)
        size = new.tree_size
        rng = random.Random(10)
        leaves = [next(ledger.iter_leaves(TENANT, i, i + 1)) for i in rng.sample(range(size), samples)]
        out: dict[str, Any] = {
            "rows": rows,
            "tree_size": size,
            "old_size": old.tree_size,
            "seal_s": round(sealing, 2),
        }
        times: dict[str, list[float]] = {
            k: [] for k in ("leaf_of", "stored_inc", "stored_cons", "full_inc", "full_cons")
        }
        for n, leaf in enumerate(leaves):
            t0 = time.perf_counter()
            found = ledger.leaf_of(TENANT, leaf.event_id)
            times["leaf_of"].append(time.perf_counter() - t0)
            assert found is not None
            t0 = time.perf_counter()
            path = StoredTree(ledger, TENANT, size, new.root_hash).inclusion_proof(
                found.leaf_index, found.leaf_hash
            )
            times["stored_inc"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cons = StoredTree(ledger, TENANT, size, new.root_hash).consistency_proof(
                old.tree_size, old.root_hash
            )
            times["stored_cons"].append(time.perf_counter() - t0)
            if n < full_samples:
                t0 = time.perf_counter()
                full = inclusion_proof(ledger.leaf_hashes(TENANT, size), found.leaf_index, size)
                times["full_inc"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                full_cons = consistency_proof(ledger.leaf_hashes(TENANT, size), old.tree_size, size)
                times["full_cons"].append(time.perf_counter() - t0)
                if (full, full_cons) != (path, cons):
                    raise AssertionError("stored-subtree proofs differ from the full-tree ones")
        for key, values in times.items():
            out[f"{key}_ms_median"] = _median_ms(values)
            out[f"{key}_n"] = len(values)
        # A log sealed before 0008: no subtree rows. A starting sealer writes them from the leaves.
        client = create_client(store.dsn)
        client.command(f"TRUNCATE TABLE {store.database}.merkle_subtrees")
        client.close()
        t0 = time.perf_counter()
        fresh = Sealer(store, ledger, sealer.signer, checkpoint_seconds=3600, page_size=page_size)
        fresh.tree_size(TENANT)
        out["backfill_s"] = round(time.perf_counter() - t0, 2)
        out["backfill_complete"] = ledger.subtrees_complete(TENANT, size)
        load.append(os.getloadavg()[0])
        out["loadavg_1m"] = [round(x, 2) for x in load]
        return out
    finally:
        ledger.close()
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def _ab_round(ctx: Any, topic: str, events: int, duty: float | None) -> dict[str, Any]:
    import asyncio
    import threading

    from prometheus_client import REGISTRY

    from auditstream.bench.ingest import run_ours

    client = create_client(ctx.chdb_dsn)
    for database in ("bench_ours", "bench_ours_sealed"):
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    if duty is not None:
        os.environ["AUDITSTREAM_SEALER_DUTY"] = str(duty)
    peak = [0.0]
    at_end: dict[str, Any] = {}
    cpu = "auditstream_sealer_cpu_seconds_total"
    started: list[float] = []
    done = threading.Event()

    def sample() -> None:  # the lag while ingest runs, 5 times a second
        stored_before = -1
        while not done.wait(0.2):
            lag = REGISTRY.get_sample_value("auditstream_sealer_lag_seconds") or 0.0
            peak[0] = max(peak[0], lag)
            try:
                stored = int(
                    client.query("SELECT count() FROM bench_ours_sealed.audit_events").result_rows[0][0]
                )
                sealed = int(
                    client.query("SELECT count() FROM bench_ours_sealed.merkle_leaves").result_rows[0][0]
                )
            except Exception:
                continue
            if stored > 0 and not started:
                started.extend((time.monotonic(), REGISTRY.get_sample_value(cpu) or 0.0))
            if stored >= events and stored_before < events and started:
                wall = time.monotonic() - started[0]
                share = ((REGISTRY.get_sample_value(cpu) or 0.0) - started[1]) / wall
                at_end.update(
                    unsealed_events=stored - sealed, lag_s=round(lag, 2), sealer_cpu_share=round(share, 3)
                )
            stored_before = stored

    sampler = threading.Thread(target=sample, daemon=True) if duty is not None else None
    if sampler is not None:
        sampler.start()
    load = os.getloadavg()[0]
    try:
        metrics = asyncio.run(run_ours(ctx, topic, events, sealer=duty is not None))
    finally:
        done.set()
        if sampler is not None:
            sampler.join(5)
        client.close()
    out: dict[str, Any] = {"sealer_duty": duty, "loadavg_1m_before": round(load, 2)}
    for m in metrics:
        out[m.metric] = m.value
    if duty is not None:
        out.update(at_end, peak_lag_s=round(peak[0], 2))
    return out


def ab(bootstrap: str, events: int, repeat: int) -> list[dict[str, Any]]:
    import asyncio
    from pathlib import Path

    from auditstream.bench.context import BenchContext
    from auditstream.bench.messages import create_topic, encode_messages, fill_topic, fresh_topic
    from auditstream.bench.sizes import FULL

    workdir = Path(tempfile.mkdtemp(prefix="auditstream-bench-ab-"))
    ctx = BenchContext(bootstrap, workdir, FULL)
    topic = fresh_topic("ab")

    async def fill() -> None:
        await create_topic(bootstrap, topic)
        await fill_topic(bootstrap, topic, encode_messages(events))

    asyncio.run(fill())
    results = []
    try:
        for i in range(repeat):
            order: list[float | None] = [None, 1.0, 0.1]
            for duty in order if i % 2 == 0 else list(reversed(order)):
                result = _ab_round(ctx, topic, events, duty)
                print(json.dumps(result), flush=True)
                results.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=5000)
    parser.add_argument("--proof", action="store_true", help="Proof latency: stored subtrees vs every leaf.")
    parser.add_argument("--ab", action="store_true", help="A/B of ingest without and with the sealer.")
    parser.add_argument("--bootstrap", help="--ab: Kafka bootstrap.")
    parser.add_argument("--events", type=int, default=60_000, help="--ab: messages in the topic.")
    parser.add_argument("--repeat", type=int, default=2, help="--ab: rounds of (none, duty 1, duty 0.1).")
    args = parser.parse_args()
    if args.ab:
        if not args.bootstrap:
            parser.error("--ab needs --bootstrap")
        ab(args.bootstrap, args.events, args.repeat)
        return
    if args.proof:
        print(json.dumps(proofs(args.rows, args.page_size)))
        return
    load = os.getloadavg()[0]
    print(json.dumps({**run(args.rows, args.page_size), "loadavg_1m_before": round(load, 2)}))


if __name__ == "__main__":
    main()
