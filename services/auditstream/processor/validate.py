"""The validate step: decode, validate, attribute and enrich a fetched batch, off the event loop.

The work is ``process_batch`` (pure, batch.py) on a worker thread: the event loop also
serves the API in embedded mode, and the next step (in order) lets it overlap with the
write of the batch before. The step hands the next one the batch still being validated.

On the same thread, ``encode`` (the sink's) turns the valid rows into the body of their
insert, so the write step, which batches pass one at a time, does not encode
(store/native.py). ``None`` from it leaves the write step to encode as it inserts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from auditstream.events.attribution import Attributor
from auditstream.processor import metrics
from auditstream.processor.batch import Incoming, ProcessedBatch, Row
from auditstream.processor.step import Forward, Step
from auditstream.store.native import EncodedRows

__all__ = ["Encode", "ProcessBatch", "Validate"]

ProcessBatch = Callable[..., ProcessedBatch]
Encode = Callable[[Sequence[Row]], EncodedRows | None]


class Validate(Forward):
    def __init__(
        self,
        next_step: Step[Awaitable[ProcessedBatch]],
        *,
        process: ProcessBatch,
        attributor: Attributor | None,
        retention_days: int | None,
        encode: Encode | None = None,
        native: bool = True,
    ) -> None:
        super().__init__(next_step)
        self.process = process
        self.encode = encode
        self.options: dict[str, Any] = {
            "attributor": attributor,
            "retention_days": retention_days,
            "native": native,
        }

    async def submit(self, item: Sequence[Incoming]) -> None:
        metrics.CONSUMED.inc(len(item))
        metrics.BATCH_SIZE.observe(len(item))
        await self.next_step.submit(self._validated(item))

    async def _validated(self, messages: Sequence[Incoming]) -> ProcessedBatch:
        return await asyncio.to_thread(self._run, messages)

    def _run(self, messages: Sequence[Incoming]) -> ProcessedBatch:
        now = datetime.now(UTC)
        batch = self.process(messages, received_at=now, now=now, **self.options)
        if self.encode is not None and batch.rows:
            batch.encoded = self.encode(batch.rows)
        return batch
