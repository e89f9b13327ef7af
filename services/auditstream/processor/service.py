"""The processor's lifecycle: batches from faust's consumer, processed to the end, then acked.

``BatchFetcher`` (fetcher.py) reads batches from faust's consumer and calls
``handle_batch``; it acknowledges the batch only when ``handle_batch`` returns,
and faust commits only acknowledged offsets. So ``handle_batch`` must never
return (or be torn down) with a batch that is not stored: it finishes the batch,
or ends the process without a commit (the batch is then replayed at restart and
de-duplicated by the store).

Batches overlap but writes do not: the fetcher hands over up to ``batches_in_flight``
batches, each is validated on a worker thread (off the event loop, which also serves
the API in embedded mode) as soon as it arrives, and then waits for the batch before it
to be written. So a partition's events reach the store in offset order, one batch at a
time (the feed's gap-free guarantee relies on it), while validating batch N+1 overlaps
with writing batch N — ClickHouse does most of an insert outside the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from faust.types import Message

from auditstream.config import Settings
from auditstream.events.attribution import attributor_for
from auditstream.processor import metrics
from auditstream.processor.batch import (
    Incoming,
    KafkaMessage,
    ProcessedBatch,
    Rejected,
    conflict,
    identity,
    process_batch,
    rows_by_partition,
)
from auditstream.processor.dlq import dead_letter
from auditstream.processor.faust_app import build_faust_app
from auditstream.processor.fetcher import BatchTransport
from auditstream.processor.gc_tuning import tune_gc_for_batches
from auditstream.processor.identity import settle_against_store
from auditstream.processor.lag import record_lag
from auditstream.processor.sink import ClickHouseSink
from auditstream.store.store import Store

log = logging.getLogger(__name__)

# Exit codes when the processor must stop without committing (a supervisor restarts it).
EXIT_UNEXPECTED = 70
EXIT_SHUTDOWN_UNSTORED = 75
# How long a shutdown waits for the batch in flight before giving up on it.
SHUTDOWN_GRACE_SECONDS = 15.0


def _message_of(m: Incoming) -> KafkaMessage:
    """A record as a ``KafkaMessage`` (faust's ``Message`` has its timestamp in seconds)."""
    if isinstance(m, KafkaMessage):
        return m
    timestamp = getattr(m, "timestamp", None)
    return KafkaMessage(
        topic=m.topic,
        partition=m.partition,
        offset=m.offset,
        key=m.key,
        value=m.value,
        timestamp_ms=int(timestamp * 1000) if timestamp else None,
        headers=_headers_of(m),
    )


def _headers_of(m: Incoming) -> tuple[tuple[str, bytes], ...]:
    headers = getattr(m, "headers", None) or ()
    return tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers)


class EarlierBatchNotWritten(RuntimeError):
    """A batch fetched before this one failed; this one must not be written after it."""


class Processor:
    """Consumes ``settings.topic``, writes to ``store``, rejects to ``settings.dlq_topic``."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.sink = ClickHouseSink(
            store,
            initial_backoff=settings.write_retry_initial_seconds,
            max_backoff=settings.write_retry_max_seconds,
        )
        self.batch_max_events = settings.batch_max_events
        self.batch_max_seconds = settings.batch_max_seconds
        self.batches_in_flight = settings.batches_in_flight
        self.attributor = attributor_for(settings)
        # Resolved when the most recently started batch is written (or abandoned).
        self._written: asyncio.Future[None] | None = None
        self.app = build_faust_app(settings)
        transport = BatchTransport(self.app.conf.broker_consumer, self.app)
        transport.batch_handler = self
        self.app.transport = transport
        # Subscribing the topic (acks on) is what makes faust's consumer fetch it and
        # commit the offsets this processor acknowledges.
        self.topic = self.app.topic(settings.topic, key_type=bytes, value_type=bytes, acks=True)
        self.app.topics.add(self.topic)
        self.state = "created"
        self.batches = 0

    # --- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        self.state = "starting"
        await self.app.start()
        if self.settings.gc_tuning:
            tune_gc_for_batches()
        self.state = "running"
        log.info(
            "processor started", extra={"topic": self.settings.topic, "group": self.settings.consumer_group}
        )

    async def stop(self) -> None:
        self.state = "stopping"
        await self.app.stop()
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

    # --- batches ----------------------------------------------------------------
    async def handle_batch(self, messages: Sequence[Message]) -> None:
        """Called by BatchFetcher; the batch is acknowledged when this returns."""
        await self._process_safely(messages)

    async def _process_safely(self, messages: Sequence[Incoming]) -> None:
        task = asyncio.ensure_future(self.process(messages))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=SHUTDOWN_GRACE_SECONDS)
            except BaseException:
                log.critical("shutdown with a batch not stored; exiting without committing it")
                os._exit(EXIT_SHUTDOWN_UNSTORED)
            raise
        except BaseException:
            log.critical(
                "unexpected error while processing a batch; exiting without committing it", exc_info=True
            )
            os._exit(EXIT_UNEXPECTED)

    async def process(self, messages: Sequence[Incoming]) -> None:
        """Process one batch to the end: rejects published, rows stored. Returns only when both are done.

        Validation starts at once; the write waits until every earlier batch is written.
        """
        previous = self._written
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._written = written
        try:
            metrics.CONSUMED.inc(len(messages))
            metrics.BATCH_SIZE.observe(len(messages))
            now = datetime.now(UTC)
            batch = await asyncio.to_thread(
                process_batch,
                messages,
                received_at=now,
                now=now,
                attributor=self.attributor,
                retention_days=self.settings.retention_days,
            )
            rejected = [replace(r, message=_message_of(r.message)) for r in batch.rejected]
            if previous is not None:
                await asyncio.shield(previous)
            await self._store(batch, messages, rejected)
            if rejected:
                await self._publish_dead_letters(rejected)
        except BaseException as exc:
            # The next batch must not write past one that was not written (the feed would
            # show later offsets first): it fails too, and _process_safely ends the process
            # without committing either.
            written.set_exception(EarlierBatchNotWritten(repr(exc)))
            written.exception()  # marked as seen: with no next batch, nothing else reads it
            raise
        written.set_result(None)
        self.batches += 1
        metrics.LAST_BATCH.set(time.time())
        record_lag(self.app.consumer, messages)

    async def _store(
        self,
        batch: ProcessedBatch,
        messages: Sequence[Incoming],
        rejected: list[Rejected],
    ) -> None:
        """Write the batch's rows that are new; copies are dropped, conflicts join ``rejected``.

        First write wins: the identities are looked up only now, after every earlier batch
        is written (writes are serialised), so a batch is settled against all before it.
        """
        stored = await self.sink.stored_identities([identity(row) for row in batch.rows])
        settled = settle_against_store(batch, stored)
        metrics.DUPLICATES.inc(settled.duplicates)
        by_position: dict[tuple[int, int], Incoming] | None = None
        if settled.conflicts:
            by_position = {(m.partition, m.offset): m for m in messages}
            rejected.extend(conflict(_message_of(by_position[p])) for p in settled.conflicts)
        if settled.conflicts:
            metrics.CONFLICTS.inc(len(settled.conflicts))
            log.warning(
                "events conflicting with stored ones sent to the DLQ",
                extra={"conflicts": len(settled.conflicts)},
            )
        for partition, (rows, first, last) in rows_by_partition(settled.rows, settled.positions).items():
            token = f"{self.settings.topic}/{partition}/{first}-{last}"
            poison = await self.sink.write(rows, dedup_token=token)
            metrics.STORED.inc(len(rows) - len(poison))
            if poison:
                by_position = by_position or {(m.partition, m.offset): m for m in messages}
                positions = [p for p in settled.positions if p[0] == partition]
                for row in poison:
                    message = _message_of(by_position[positions[row.index]])
                    error = {
                        "field": "",
                        "message": f"rejected by ClickHouse: {row.error}",
                        "type": "store_rejected",
                    }
                    rejected.append(Rejected(message, [error], f"rejected by ClickHouse: {row.error}"))

    async def _publish_dead_letters(self, rejected: list[Rejected]) -> None:
        now = datetime.now(UTC)
        producer = self.app.producer
        delay = self.settings.write_retry_initial_seconds
        pending = [dead_letter(r, rejected_at=now) for r in rejected]
        while pending:
            try:
                futures = [
                    await producer.send(
                        self.settings.dlq_topic,
                        key=d.key,
                        value=d.value,
                        partition=None,
                        timestamp=None,
                        headers=d.headers,
                    )
                    for d in pending
                ]
                await asyncio.gather(*futures)
            except Exception as exc:  # broker trouble: the batch is not done until the DLQ has it
                log.warning(
                    "dead-letter publish failed; retrying", extra={"error": repr(exc), "retry_in_s": delay}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.write_retry_max_seconds)
                continue
            pending = []
        for r in rejected:
            metrics.REJECTED.labels(reason=r.errors[0]["type"] if r.errors else "invalid").inc()
