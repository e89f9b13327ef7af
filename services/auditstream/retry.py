"""One retry loop with exponential backoff, for every call that waits out a transient failure.

Who retries what (the error classes decide, never the loop):

- the processor's sink: ``store.errors.StoreUnavailable`` (``StoreRejected`` is data, not
  a failure to wait out: it propagates and the sink isolates the poison rows);
- the processor's dead-letter step: a broker that does not take the rejects yet;
- the producer SDK: connecting to the broker, and sending the spool after an outage.

``retry`` calls ``attempt`` until it returns. An exception of the ``retry_on`` classes is
reported to ``on_retry(exc, wait)`` and retried after ``wait`` seconds, doubling up to
``Backoff.maximum``; any other exception propagates at once. With ``within`` the loop gives
up after that many seconds and re-raises the last error (the caller turns it into its own).

``backoff_delay`` is the delay computation on its own (pure): the loop here uses it, and so
does alert delivery, whose schedule is persisted per delivery (``alerts/delivery.py``) and so
cannot be this in-process loop; it adds jitter, which the loop does not.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Backoff", "backoff_delay", "retry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between attempts: ``initial``, then doubled (``factor``) up to ``maximum``."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0


def backoff_delay(
    attempt: int, backoff: Backoff, *, jitter: float = 0.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    ``initial * factor**(attempt - 1)``, at most ``maximum``. With ``jitter`` j in [0, 1] the
    delay is multiplied by a random factor in [1 - j, 1): 0.5 is "equal jitter" (at least half
    the delay, so senders recovering from one outage spread out without retrying too soon).
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be within [0, 1]")
    steps = max(0, attempt - 1)
    # Capped before the power can overflow a float on a delivery retried for days.
    delay = backoff.maximum if steps > 1000 else min(backoff.maximum, backoff.initial * backoff.factor**steps)
    if jitter:
        delay *= 1.0 - jitter + jitter * (rng or random).random()
    return delay


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    backoff: Backoff = Backoff(),
    within: float | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """``await attempt()`` until it succeeds; see the module docstring."""
    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    failures = 0
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            if deadline is not None and loop.time() >= deadline:
                raise
            failures += 1
            delay = backoff_delay(failures, backoff)
            wait = delay if deadline is None else min(delay, max(deadline - loop.time(), 0.0))
            if on_retry is not None:
                on_retry(exc, wait)
            await asyncio.sleep(wait)
