"""The step protocol: the processor is a chain of steps, each handed the next one.

Modelled on getsentry/arroyo's processing strategies, on asyncio: a step receives work
with ``submit``, does its part and submits the result to the step it was built with.
The chain (wired in one place, ``chain.py``)::

    fetch (fetcher.py) -> validate (validate.py) -> in order (order.py)
      -> identity check + write (write.py) -> dead letters (deadletter.py) -> commit (commit.py)

- ``submit`` may wait (back-pressure: the in-order step holds at most N batches) and
  raises the error of earlier work that failed, so a failure reaches the fetch step,
  which stops fetching.
- ``poll`` raises such an error without new work (the fetch step calls it between fetches).
- ``join`` finishes everything submitted, within ``grace`` seconds (shutdown, rebalance).
- ``in_flight`` counts the items submitted and not yet through the chain: the fetch step
  closes a batch early when nothing is in flight (fetcher.py, group commit).

Errors travel as exceptions: a step handles what it can (the sink retries
``StoreUnavailable`` and isolates ``StoreRejected`` rows; the dead-letter step waits out
the broker) and lets everything else propagate. Nothing is acknowledged for a batch that
did not pass every step, and the commit step is always the last one.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["BatchNotStored", "EarlierBatchNotWritten", "Forward", "Step"]

T_contra = TypeVar("T_contra", contravariant=True)


class Step(Protocol[T_contra]):
    async def submit(self, item: T_contra) -> None: ...

    def poll(self) -> None: ...

    async def join(self, grace: float | None = None) -> None: ...

    def in_flight(self) -> int: ...


class EarlierBatchNotWritten(RuntimeError):
    """A batch fetched before this one failed; this one must not be written after it."""


class BatchNotStored(RuntimeError):
    """A batch could not be stored (an error, or a shutdown that could not wait for it).

    Nothing of it is acknowledged, so nothing is committed: it is read again at restart.
    """


class Forward:
    """Base of the steps that work one item at a time: ``poll``/``join`` go to the next step."""

    def __init__(self, next_step: Step) -> None:  # type: ignore[type-arg]
        self.next_step = next_step

    def poll(self) -> None:
        self.next_step.poll()

    async def join(self, grace: float | None = None) -> None:
        await self.next_step.join(grace)

    def in_flight(self) -> int:
        return self.next_step.in_flight()
