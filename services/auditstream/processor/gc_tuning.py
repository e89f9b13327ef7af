"""Garbage-collector settings for a process that validates events in batches.

A batch of 5,000 events allocates a few hundred thousand short-lived objects (parsed
models, row tuples, datetimes). With CPython's default thresholds (700, 10, 10) that
triggers hundreds of young collections per batch and, every hundred of them, a full
collection that walks every object the process holds — faust, aiokafka, pydantic's
schemas, FastAPI's routes. Measured on the benchmark box (50,000 demo events, best of
3): validation 38.9 µs/event with the defaults, 12.3 µs after ``gc.freeze()`` plus a
young-generation threshold of 50,000.

So, once start-up is done: freeze what exists (it lives as long as the process and
would only be re-walked) and let the young generation grow before it is collected.
Reference cycles are still collected, a little later.

Tried and not kept (stop 17): a young threshold of 500,000 cut process CPU per event by
~10% (59.9-62.5 -> 53.8-54.6 µs, bench/tools/ingest_cpu.py) but each collection then walks
a larger generation: produce-to-queryable p99 at 13,000 ev/s went from 0.88-1.18 s to
1.57-1.73 s (bench/RESULTS.md). The latency bar is the one this setting must not break.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (20, 20)


def tune_gc_for_batches() -> None:
    """Freeze the objects alive now and raise the collection thresholds (process-wide)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    log.info(
        "garbage collector tuned for batches",
        extra={"frozen_objects": gc.get_freeze_count(), "thresholds": gc.get_threshold()},
    )
