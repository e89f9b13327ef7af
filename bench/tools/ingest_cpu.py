"""Ingest rate and process CPU per event, ours against the naive loop, alternating (not a test).

Usage (a broker must be running)::

    .venv/bin/python bench/tools/ingest_cpu.py 127.0.0.1:PORT [events=100000]

On the shared 2-core box end-to-end rates swing with the neighbours' load; CPU time per
event (all threads of this process, chDB's included, and its ended children) moves only
with our code, and the
ratio ours / naive loop within one run cancels most of the load. One engine per process
(chDB), so one round per run: alternate runs with ``PYTHONPATH=<other worktree>/services``
for the other side of an A/B.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
from pathlib import Path


def _cpu() -> float:
    # This process and its ended children: the validation worker (processor/worker.py) is a
    # child, and it has ended (been waited for) when the processor has stopped.
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def _measure(run) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    cpu = _cpu()
    metrics = await run()
    cpu = _cpu() - cpu
    rate = next(m.value for m in metrics if m.metric == "events_per_s")
    return rate or 0.0, cpu


async def _main(bootstrap: str, n: int) -> None:
    from auditstream.bench.context import BenchContext
    from auditstream.bench.ingest import run_ours, run_raw_insert
    from auditstream.bench.messages import create_topic, encode_messages, fill_topic, fresh_topic
    from auditstream.bench.sizes import FULL

    with tempfile.TemporaryDirectory(prefix="auditstream-ingest-cpu-") as tmp:
        ctx = BenchContext(bootstrap=bootstrap, workdir=Path(tmp), sizes=FULL)
        topic = fresh_topic("cpu")
        await create_topic(bootstrap, topic)
        await fill_topic(bootstrap, topic, encode_messages(n))
        load = os.getloadavg()[0]
        ours, ours_cpu = await _measure(lambda: run_ours(ctx, topic, n))
        naive, naive_cpu = await _measure(lambda: run_raw_insert(ctx, topic, n))
        print(
            f"load {load:.2f}->{os.getloadavg()[0]:.2f}  ours {ours:,.0f} ev/s "
            f"{ours_cpu / n * 1e6:.1f} µs CPU/event | naive {naive:,.0f} ev/s "
            f"{naive_cpu / n * 1e6:.1f} µs CPU/event | ratio {ours / naive:.2f}x "
            f"(CPU ratio {ours_cpu / naive_cpu:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000))
