"""The processor's lifecycle: a faust app whose fetcher feeds the chain of steps.

The steps (chain.py) do the work; this module owns what lives as long as the process:
the faust app (consumer group, commits, the DLQ producer), the sink and its status for
``/readyz``, and the failure that ends the processor. A batch that cannot be stored
stops the fetcher (nothing of it or after it is acknowledged, so nothing is committed);
``failed`` is then set and ``run_services`` stops the process with a non-zero exit (a
supervisor restarts it, and the batch is replayed and de-duplicated by the store).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from auditstream.config import Settings
from auditstream.events.attribution import attributor_for
from auditstream.processor import metrics
from auditstream.processor.batch import Incoming, ProcessedBatch, process_batch
from auditstream.processor.chain import build_chain
from auditstream.processor.dlq import DeadLetter
from auditstream.processor.faust_app import build_faust_app
from auditstream.processor.fetcher import BatchFetcher, BatchTransport
from auditstream.processor.gc_tuning import tune_gc_for_batches
from auditstream.processor.lag import record_lag
from auditstream.processor.sink import ClickHouseSink
from auditstream.processor.step import BatchNotStored, EarlierBatchNotWritten
from auditstream.processor.switch_interval import set_switch_interval
from auditstream.retry import Backoff
from auditstream.store.store import Store

__all__ = ["BatchNotStored", "EarlierBatchNotWritten", "Processor", "ProcessorFailed"]

log = logging.getLogger(__name__)

# How long a shutdown (or rebalance) waits for the batches in flight before giving up on them.
SHUTDOWN_GRACE_SECONDS = 15.0


class ProcessorFailed(RuntimeError):
    """The processor stopped because a batch could not be stored (nothing of it is committed)."""


class Processor:
    """Consumes ``settings.topic``, writes to ``store``, rejects to ``settings.dlq_topic``."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.sink = ClickHouseSink(
            store,
            initial_backoff=settings.write_retry_initial_seconds,
            max_backoff=settings.write_retry_max_seconds,
        )
        self.app = build_faust_app(settings)
        backoff = Backoff(settings.write_retry_initial_seconds, settings.write_retry_max_seconds)
        first_step = build_chain(
            # Looked up here, at construction: tests wrap ``service.process_batch`` to watch it.
            process=process_batch,
            attributor=attributor_for(settings),
            retention_days=settings.retention_days,
            batches_in_flight=settings.batches_in_flight,
            sink=self.sink,
            topic=settings.topic,
            send_dead_letter=self._send_dead_letter,
            dead_letter_backoff=backoff,
            acknowledge=self._acknowledge,
            on_committed=self._committed,
            native_fastpath=settings.native_fastpath,
        )
        fetcher = functools.partial(
            BatchFetcher,
            first_step=first_step,
            max_events=settings.batch_max_events,
            max_bytes=settings.batch_max_bytes,
            max_seconds=settings.batch_max_seconds,
            min_seconds=settings.batch_min_seconds,
            grace_seconds=SHUTDOWN_GRACE_SECONDS,
            on_failure=self._failed,
        )
        self.app.transport = BatchTransport(self.app.conf.broker_consumer, self.app, fetcher=fetcher)
        # Subscribing the topic (acks on) is what makes faust's consumer fetch it and
        # commit the offsets this processor acknowledges.
        self.topic = self.app.topic(settings.topic, key_type=bytes, value_type=bytes, acks=True)
        self.app.topics.add(self.topic)
        self.state = "created"
        self.batches = 0
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        self._previous_switch_ms: float | None = None

    # --- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        self.state = "starting"
        if self._previous_switch_ms is None:
            self._previous_switch_ms = set_switch_interval(self.settings.switch_interval_ms)
        await self.app.start()
        if self.settings.gc_tuning:
            tune_gc_for_batches()
        self.state = "running"
        log.info(
            "processor started", extra={"topic": self.settings.topic, "group": self.settings.consumer_group}
        )

    async def stop(self) -> None:
        if self.state != "failed":
            self.state = "stopping"
        try:
            await self.app.stop()
        finally:
            if self._previous_switch_ms is not None:
                set_switch_interval(self._previous_switch_ms)
                self._previous_switch_ms = None
        if self.state != "failed":
            self.state = "stopped"

    def readiness(self) -> dict[str, Any]:
        status = self.sink.status
        return {
            "ready": self.state == "running" and status.store_available,
            "processor": self.state,
            "store_available": status.store_available,
            "consecutive_write_failures": status.consecutive_failures,
            "last_error": status.last_error,
            "last_write_at": status.last_write_at,
            "batches": self.batches,
        }

    # --- what the steps call -------------------------------------------------------
    async def _send_dead_letter(self, letter: DeadLetter) -> Awaitable[object]:
        return await self.app.producer.send(
            self.settings.dlq_topic,
            key=letter.key,
            value=letter.value,
            partition=None,
            timestamp=None,
            headers=letter.headers,
        )

    def _acknowledge(self, messages: Sequence[Incoming]) -> None:
        ack = self.app.consumer.ack
        for message in messages:
            ack(message)  # type: ignore[arg-type]

    def _committed(self, batch: ProcessedBatch) -> None:
        self.batches += 1
        metrics.LAST_BATCH.set(time.time())
        record_lag(self.app.consumer, batch.messages)

    def _failed(self, exc: BaseException) -> None:
        log.critical("processor failed; nothing after the last stored batch is committed", exc_info=exc)
        self.state = "failed"
        self.failure = exc
        self.failed.set()
