"""The interpreter's thread switch interval while the processor runs.

The processor's work is split over threads that share the GIL: the event loop (fetch,
acknowledge, and the insert call, during which the engine runs without the GIL) and the
validation thread (``process_batch`` and the encode ahead, pure Python for most of a
batch). A thread that wants the GIL back from one that is computing waits for the switch
interval, CPython's default 5 ms. Every time the event loop gives the GIL up for a short
wait (a socket, a fetch, the engine's answer) it then waits up to 5 ms to get it back,
while the engine, which it should be feeding, idles on the other core.

Measured on the 2-core box (bench/RESULTS.md, stop 29; ``auditstream bench ingest --events
300000`` and ``bench latency --rate 20000 --seconds 20``, alternating): on a backlog, 1 ms
gave 39.0-48.0k events/s (mean 43.4k, 8 rounds) against 32.5-43.9k (mean 39.5k) at 5 ms, and
2 ms 42.0-46.9k against 40.3-43.2k; the naive loop, with no second thread, did not move. But
the produce-to-queryable p99 at 20,000 ev/s was 1.16-1.72 s at 1 ms against 0.91-1.16 s at
5 ms (4 rounds each), and 0.70 / 1.04 s at 2 ms against 0.97 / 0.97 s: a shorter interval
preempts the validation thread more often, so each batch takes longer. The default stays
CPython's 5 ms, where the latency bar is met; a deployment that mostly catches up on a
backlog can lower it.

The interval is process-wide, so it is set when the processor starts and put back when it
stops (a test or a tool running other work in the same process gets its own setting back).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["set_switch_interval"]

log = logging.getLogger(__name__)


def set_switch_interval(milliseconds: float) -> float:
    """Set the thread switch interval to ``milliseconds``; return the previous one, in ms."""
    previous = sys.getswitchinterval() * 1000.0
    sys.setswitchinterval(milliseconds / 1000.0)
    log.info("thread switch interval set", extra={"ms": milliseconds, "previous_ms": previous})
    return previous
