"""cProfile of one sealing pass (issue 10): where the sealer's time goes.

    .venv/bin/python bench/tools/seal_profile.py 100000

Generates ROWS stored events of one tenant (``auditstream.bench.datagen``) in a temporary
chDB folder, seals them all with ``Sealer.seal_tenant`` under cProfile and prints the rate and
the top 30 functions by cumulative time.
"""

from __future__ import annotations

import cProfile
import pstats
import shutil
import sys
import tempfile
import time

from auditstream.bench.datagen import Dataset, generate
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Signer
from auditstream.integrity.sealer import Sealer
from auditstream.store.client import create_client
from auditstream.store.store import Store


def main(rows: int) -> None:
    folder = tempfile.mkdtemp(prefix="auditstream-seal-profile-")
    store = Store(f"chdb://{folder}", "bench", retention_days=3650)
    store.open()
    ledger = Ledger(store.dsn, store.database)
    try:
        client = create_client(store.dsn)
        generate(client, "bench", Dataset(rows, single_tenant="bench"))
        client.close()
        sealer = Sealer(store, ledger, Signer.generate("auditstream"), checkpoint_seconds=3600)
        heads = store.feed_watermark("bench")
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        while sealer.seal_tenant("bench", heads, max_pages=1000):
            pass
        profile.disable()
        seconds = time.perf_counter() - started
        print(f"sealed {rows} events in {seconds:.2f} s = {rows / seconds:,.0f} ev/s (under cProfile)")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    finally:
        ledger.close()
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
