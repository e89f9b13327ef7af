"""The in-order step: work overlaps, results go on one at a time in submission order.

Each submitted item is an awaitable (the validate step hands over a batch whose
validation has not finished). The step starts it at once, so batch N+1 is validated
on a worker thread while batch N is written, but submits its result to the next step
only after batch N passed every following step. So a partition's events reach the
store in offset order, one batch at a time (the feed's gap-free guarantee relies on
it), and batches are acknowledged in the order they were fetched.

This is the one place the in-flight order is kept. When a batch fails, every later
one fails with ``EarlierBatchNotWritten`` (writing it would put later offsets first),
and the failure is raised from ``submit``/``poll``/``join`` to the fetch step.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable
from typing import Generic, TypeVar

from auditstream.processor.step import BatchNotStored, EarlierBatchNotWritten, Step

__all__ = ["InOrder"]

T = TypeVar("T")


class InOrder(Generic[T]):
    def __init__(self, next_step: Step[T], *, max_in_flight: int) -> None:
        self.next_step = next_step
        self.max_in_flight = max(1, max_in_flight)
        self._in_flight: deque[asyncio.Future[None]] = deque()

    async def submit(self, item: Awaitable[T]) -> None:
        try:
            self.poll()
            while len(self._in_flight) >= self.max_in_flight:
                # A cancelled fetch (shutdown, rebalance) must not cancel the batch: wait, not await.
                await asyncio.wait([self._in_flight[0]])
                self.poll()
        except BaseException:
            if inspect.iscoroutine(item):
                item.close()  # never started: nothing of this batch ran
            raise
        previous = self._in_flight[-1] if self._in_flight else None
        self._in_flight.append(asyncio.ensure_future(self._run(item, previous)))

    async def _run(self, item: Awaitable[T], previous: asyncio.Future[None] | None) -> None:
        work = asyncio.ensure_future(item)  # starts now, overlapping the batches before it
        try:
            if previous is not None:
                try:
                    await asyncio.shield(previous)
                except BaseException as exc:
                    raise EarlierBatchNotWritten(repr(exc)) from None
            result = await work
        except BaseException:
            work.cancel()
            raise
        await self.next_step.submit(result)

    def poll(self) -> None:
        """Drop finished batches from the head; raise the first failure."""
        while self._in_flight and self._in_flight[0].done():
            done = self._in_flight.popleft()
            if done.cancelled():
                raise BatchNotStored("a batch was cancelled before it was stored")
            exc = done.exception()
            if exc is not None:
                for later in self._in_flight:  # they fail too (EarlierBatchNotWritten)
                    later.add_done_callback(_retrieve)
                self._in_flight.clear()
                raise exc
        self.next_step.poll()

    def in_flight(self) -> int:
        """Batches submitted here and not yet through every following step."""
        return sum(1 for f in self._in_flight if not f.done())

    async def join(self, grace: float | None = None) -> None:
        """Finish every batch in flight; past ``grace`` seconds, give them up (nothing acknowledged)."""
        if self._in_flight:
            _, pending = await asyncio.wait(list(self._in_flight), timeout=grace)
            if pending:
                for f in self._in_flight:
                    f.cancel()
                self._in_flight.clear()
                raise BatchNotStored(f"{len(pending)} batch(es) not stored within {grace} s")
            while self._in_flight:
                self.poll()
        await self.next_step.join(grace)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # seen: the first failure is the one reported
