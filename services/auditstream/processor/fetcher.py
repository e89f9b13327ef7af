"""The fetch step: batches from faust's consumer, without the per-message stream machinery.

Faust hands each message through its Fetcher -> Conductor -> Channel -> Stream
chain; on this project's 2-core benchmark box that chain costs about 90 µs per
message (measured: a do-nothing ``take_events`` agent peaks near 9-11k msgs/s,
while faust's own ``Consumer.getmany`` delivers 50k+/s). An audit pipeline works
in batches anyway, so the processor replaces only that chain: ``BatchFetcher``
reads batches straight from faust's consumer and submits each to the first step of the
chain (chain.py) it was built with.

A batch closes at ``max_events``, or at ``max_bytes`` of message values (passed by at most
one fetch: the bound on a batch's memory when events are large), or ``max_seconds`` after
its first message, or, when no earlier batch is still in the chain, once it is
``min_seconds`` old (``batch_ready``): group commit. When the writer is idle, waiting for
a fuller batch only adds latency; when it is busy, the batch grows while it waits, so
under load batches are as large as before and the fixed cost of an insert (~30 ms in
chDB, whatever its size) is paid as rarely.

Everything else stays faust's: the consumer group and partition assignment,
rebalancing (faust stops and restarts this fetcher around a rebalance), flow
control, the DLQ producer, and offset commits of acknowledged messages (the commit
step acknowledges).

When it stops (shutdown, rebalance) the batches already submitted are finished
within ``grace_seconds`` and so acknowledged. When a step raises (a batch cannot be
stored, or the grace is over) the fetcher stops fetching and reports the error to
``on_failure``: nothing of that batch or a later one is acknowledged, so nothing of it
is committed, and the process exits from its top level (runtime.py).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.transport.consumer import Fetcher
from faust.transport.drivers.aiokafka import Transport
from faust.types import AppT, Message
from mode import Service

from auditstream.processor.step import Step

__all__ = ["BatchFetcher", "BatchTransport", "batch_ready", "fetch_batches", "fetch_messages"]

log = logging.getLogger(__name__)

# Shortest wait handed to getmany: 0 would spin the event loop.
_MIN_POLL_SECONDS = 0.01


class BatchFetcher(Fetcher):
    """faust's Fetcher service, submitting batches to ``first_step``."""

    def __init__(
        self,
        app: AppT,
        *,
        first_step: Step[Sequence[Message]],
        max_events: int,
        max_bytes: int,
        max_seconds: float,
        min_seconds: float,
        grace_seconds: float,
        on_failure: Callable[[BaseException], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.first_step = first_step
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.min_seconds = min(min_seconds, max_seconds)
        self.grace_seconds = grace_seconds
        self.on_failure = on_failure

    @Service.task
    async def _fetcher(self) -> None:  # replaces Fetcher._fetcher (same task name)
        step = self.first_step
        try:
            try:
                await self._fetch_into(step)
            finally:
                await step.join(self.grace_seconds)
        except Exception as exc:
            log.critical("a batch cannot be stored; fetching stopped, nothing after it is committed")
            self.on_failure(exc)

    async def _fetch_into(self, step: Step[Sequence[Message]]) -> None:
        consumer = self.app.consumer
        await fetch_batches(
            functools.partial(fetch_messages, consumer),
            step,
            stopping=lambda: self.should_stop,
            max_events=self.max_events,
            max_bytes=self.max_bytes,
            max_seconds=self.max_seconds,
            min_seconds=self.min_seconds,
        )


async def fetch_batches(
    fetch: Callable[[float], Awaitable[list[Message]]],
    step: Step[Sequence[Message]],
    *,
    stopping: Callable[[], bool],
    max_events: int,
    max_seconds: float,
    min_seconds: float,
    max_bytes: int | None = None,
) -> None:
    """Fetch (``fetch(wait_seconds)``) into batches and submit each to ``step`` until ``stopping()``.

    ``max_bytes`` counts the messages' values (``None``: not counted).
    """
    buffer: list[Message] = []
    opened = 0.0
    value_bytes = 0
    while not stopping():
        step.poll()
        if buffer:
            # Wake at least every min_seconds: the chain may fall idle during the wait.
            idle = step.in_flight() == 0
            wait = min(opened + (min_seconds if idle else max_seconds) - time.monotonic(), min_seconds)
        else:
            wait = max_seconds
        fetched = await fetch(max(wait, _MIN_POLL_SECONDS))
        if fetched:
            if not buffer:
                opened = time.monotonic()
                value_bytes = 0
            buffer += fetched
            if max_bytes is not None:
                value_bytes += sum(len(m.value or b"") for m in fetched)
        if buffer and batch_ready(
            len(buffer),
            time.monotonic() - opened,
            idle=step.in_flight() == 0,
            max_events=max_events,
            max_seconds=max_seconds,
            min_seconds=min_seconds,
            value_bytes=value_bytes,
            max_bytes=max_bytes,
        ):
            batch, buffer = buffer, []
            await step.submit(batch)


def batch_ready(
    size: int,
    age: float,
    *,
    idle: bool,
    max_events: int,
    max_seconds: float,
    min_seconds: float,
    value_bytes: int = 0,
    max_bytes: int | None = None,
) -> bool:
    """Whether a batch of ``size`` messages (``value_bytes`` of values), ``age`` seconds old, closes now."""
    full = size >= max_events or (max_bytes is not None and value_bytes >= max_bytes)
    return full or age >= max_seconds or (idle and age >= min_seconds)


async def fetch_messages(consumer: Any, wait_seconds: float) -> list[Message]:
    """One fetch from faust's consumer, as faust's messages, converted a partition at a time.

    What faust's ``Consumer.getmany`` does, without its per-message work: it is an async
    generator that, for every message, re-checks the flow and the consumer generation,
    reads the partition's highwater and hands it to the monitor. Here the flow is checked
    once per fetch and the highwater read once per partition. The conversion has no
    ``await`` (nor had the loop that consumed faust's generator), so neither a rebalance
    nor a flow change can happen in the middle of it, and the generation is not re-read.
    Records of partitions no longer active are dropped, as faust drops them. Messages keep
    their order within a partition (the only order Kafka has). Measured at full rate on
    the 2-core box (``thread_time`` of the event loop around the fetch, 200,000 events,
    bench/RESULTS.md): 5.5-5.9 -> 2.9-3.9 µs per event.

    ``_wait_next_records``, ``_buffered_partitions`` and ``_to_message`` are faust's
    (faust-streaming 0.15's ``Consumer``); the fetcher already replaces faust's fetch task,
    and tests/processor/test_fetcher.py pins these names so an upgrade that moves them
    fails there rather than in production.
    """
    records, active = await consumer._wait_next_records(wait_seconds)
    if records is None or consumer.should_stop or not consumer.flow_active:
        return []
    to_message = consumer._to_message
    buffered = consumer._buffered_partitions
    track_end_offset = consumer.app.monitor.track_tp_end_offset
    out: list[Message] = []
    for tp, partition_records in records.items():
        if active is None or tp in active or tp in buffered:
            track_end_offset(tp, consumer.highwater(tp))
            out += [to_message(tp, record) for record in partition_records]
    return out


class BatchTransport(Transport):
    """The aiokafka transport whose fetcher is ``BatchFetcher`` bound to a chain of steps."""

    def __init__(
        self, url: Any, app: AppT, *, fetcher: functools.partial[BatchFetcher], **kwargs: Any
    ) -> None:
        super().__init__(url, app, **kwargs)
        # faust builds its fetcher as ``transport.Fetcher(app, loop=..., beacon=...)``.
        self.Fetcher = fetcher  # type: ignore[misc]
