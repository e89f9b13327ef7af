"""Profile the processor at full rate (not a test): fill a topic, then run ``ingest.ours`` only.

Usage (a broker must be running)::

    .venv/bin/python bench/tools/profile_processor.py 127.0.0.1:PORT 300000 &
    # when it prints "PROFILE <pid>", attach: py-spy record --pid <pid> --format raw -o out.txt
    .venv/bin/python bench/tools/profile_processor.py --summary out.txt   # where the time goes
    .venv/bin/python bench/tools/profile_top.py out.txt                   # top self/inclusive frames

The fill happens before the "PROFILE" line, so a profile attached then sees the processor.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import tempfile
from pathlib import Path

# Frames whose inclusive share of the samples is reported (substring of "function (file)").
FRAMES = {
    "validate (process_batch)": "process_batch (",
    "  native_rows (native fast path: rows and body)": "native_rows (",
    "  decode_many (native fast path until stop 32)": "decode_many (",
    "  decode_fast (msgspec fast path)": "decode_fast (",
    "  parse_event (pydantic + checks)": "parse_event (",
    "  enrich (row build + hash)": "enrich (",
    "    content hash": "_hash (",
    "  attribution": "_attribution (",
    "identity lookup": "stored_identities (",
    "settle": "settle_against_store (",
    "insert_rows (all)": "insert_rows (",
    "  clickhouse-connect encode": "_write_native",
    "encode ahead (clickhouse-connect, validate thread)": "encode_rows (",
    "adopt the native body": "adopt_encoded (",
    "  chdb query": "query (chdb",
    "faust/aiokafka fetch (faust's getmany)": "getmany (",
    "fetch step (fetch_messages)": "fetch_messages (",
    "ack": "_acknowledge (",
    "idle (epoll)": "select (selectors",
}


async def _run(bootstrap: str, n: int) -> None:
    from auditstream.bench.context import BenchContext
    from auditstream.bench.ingest import run_ours
    from auditstream.bench.messages import create_topic, encode_messages, fill_topic, fresh_topic
    from auditstream.bench.sizes import FULL

    with tempfile.TemporaryDirectory(prefix="auditstream-profile-") as tmp:
        ctx = BenchContext(bootstrap=bootstrap, workdir=Path(tmp), sizes=FULL)
        topic = fresh_topic("profile")
        await create_topic(bootstrap, topic)
        await fill_topic(bootstrap, topic, encode_messages(n))
        print(f"PROFILE {os.getpid()}", flush=True)
        await asyncio.sleep(1.0)
        for metric in await run_ours(ctx, topic, n):
            print(metric.scenario, metric.metric, round(metric.value or 0), flush=True)


def summary(path: str) -> None:
    """Inclusive share of the samples per frame of interest, from py-spy's raw format."""
    total = 0
    by_thread: collections.Counter[str] = collections.Counter()
    hits: collections.Counter[str] = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        by_thread[stack.split(";", 1)[0]] += samples
        for label, needle in FRAMES.items():
            if needle in stack:
                hits[label] += samples
    print(f"samples: {total}")
    for label in FRAMES:
        print(f"{label:40s} {100 * hits[label] / max(total, 1):5.1f} %")


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        summary(sys.argv[2])
    else:
        asyncio.run(_run(sys.argv[1], int(sys.argv[2])))
