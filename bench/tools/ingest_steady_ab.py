"""Ours against the naive loop on one freshly filled topic, in the steady state (not a test).

Usage (a broker must be running; settings from the environment, one configuration per run)::

    AUDITSTREAM_BATCH_MAX_EVENTS=10000 AUDITSTREAM_BATCHES_IN_FLIGHT=4 \\
        .venv/bin/python bench/tools/ingest_steady_ab.py 127.0.0.1:PORT 500000

Prints one line: the configuration, ours and the naive loop in the steady state
(``Progress.sustained_rate``), each with the figure counting the first batch and that batch's
rows, and the ratio. Alternate configurations over rounds: the box is shared.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path


async def main(bootstrap: str, n: int) -> None:
    from auditstream.bench import ingest
    from auditstream.bench.context import BenchContext
    from auditstream.bench.messages import create_topic, encode_messages, fill_topic, fresh_topic
    from auditstream.bench.sizes import FULL
    from auditstream.store.client import create_client

    with tempfile.TemporaryDirectory(prefix="auditstream-ab-") as tmp:
        ctx = BenchContext(bootstrap=bootstrap, workdir=Path(tmp), sizes=FULL)
        topic = fresh_topic("ab")
        await create_topic(bootstrap, topic)
        await fill_topic(bootstrap, topic, encode_messages(n))
        figures: dict[str, tuple[float, float, int]] = {}
        for name, run in (("ours", ingest.run_ours), ("naive", ingest.run_raw_insert)):
            if figures:  # the naive loop must not pay for the merges of ours
                client = create_client(ctx.chdb_dsn)
                try:
                    await asyncio.to_thread(ingest.merges_settled, client)
                finally:
                    client.close()
            for m in await run(ctx, topic, n):
                if m.metric == "events_per_s":
                    figures[name] = (m.value, m.extra["events_per_s_with_first_batch"], m.extra["first_batch_rows"])
        config = {k: v for k, v in os.environ.items() if k.startswith("AUDITSTREAM_") and "TEST" not in k}
        parts = [f"{name} {v:,.0f} (with first batch {w:,.0f}, first {f})" for name, (v, w, f) in figures.items()]
        print(config, *parts, f"ratio {figures['ours'][0] / figures['naive'][0]:.2f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
