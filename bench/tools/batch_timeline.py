"""A timeline of the processor's batches at full rate (not a test): when each batch was
validated, looked up and inserted, how long each took, and the slow garbage collections.

Usage (a broker must be running)::

    .venv/bin/python bench/tools/batch_timeline.py 127.0.0.1:PORT 500000

Fills a topic, then runs ``ingest.ours`` only, with ``Validate._run``,
``Store.stored_identities`` and ``Store.insert_rows`` wrapped to print
``<start s> <stage> <ms> n=<events>`` (seconds since the processor started). Stop 32 used it
to find the first two batches (~70,000 events each) validated before any row showed.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditstream.processor import validate
from auditstream.store import store

T0 = time.monotonic()


def timed(cls: type, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        result = original(self, *args, **kwargs)
        n = len(args[0]) if args and hasattr(args[0], "__len__") else -1
        print(f"{started - T0:7.2f} {label:9s} {1000 * (time.monotonic() - started):7.1f} ms n={n}", flush=True)
        return result

    setattr(cls, name, wrapper)


_gc_started: list[float] = [0.0]


def on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.monotonic()
    elif info["generation"] >= 1 and time.monotonic() - _gc_started[0] > 0.02:
        took = 1000 * (time.monotonic() - _gc_started[0])
        print(f"{time.monotonic() - T0:7.2f} gc gen{info['generation']}  {took:7.1f} ms", flush=True)


async def main(bootstrap: str, n: int) -> None:
    global T0
    from auditstream.bench.context import BenchContext
    from auditstream.bench.ingest import run_ours
    from auditstream.bench.messages import create_topic, encode_messages, fill_topic, fresh_topic
    from auditstream.bench.sizes import FULL

    timed(validate.Validate, "_run", "validate")
    timed(store.Store, "stored_identities", "lookup")
    timed(store.Store, "insert_rows", "insert")
    with tempfile.TemporaryDirectory(prefix="auditstream-timeline-") as tmp:
        ctx = BenchContext(bootstrap=bootstrap, workdir=Path(tmp), sizes=FULL)
        topic = fresh_topic("timeline")
        await create_topic(bootstrap, topic)
        await fill_topic(bootstrap, topic, encode_messages(n))
        gc.callbacks.append(on_gc)
        T0 = time.monotonic()
        for metric in await run_ours(ctx, topic, n):
            print(metric.scenario, metric.metric, round(metric.value or 0), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
