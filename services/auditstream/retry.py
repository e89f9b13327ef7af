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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Backoff", "retry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between attempts: ``initial``, then doubled (``factor``) up to ``maximum``."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0


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
    delay = backoff.initial
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            if deadline is not None and loop.time() >= deadline:
                raise
            wait = delay if deadline is None else min(delay, max(deadline - loop.time(), 0.0))
            if on_retry is not None:
                on_retry(exc, wait)
            await asyncio.sleep(wait)
            delay = min(delay * backoff.factor, backoff.maximum)
