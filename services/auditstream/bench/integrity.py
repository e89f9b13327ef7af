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
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.page_size)))


if __name__ == "__main__":
    main()
