"""The validate step: decode, validate, attribute and enrich a fetched batch, off the event loop.

The work is ``process_batch`` (pure, batch.py) on a worker thread: the event loop also
serves the API in embedded mode, and the next step (in order) lets it overlap with the
write of the batch before. The step hands the next one the batch still being validated.

On the same thread, ``encode`` (the sink's) turns the valid rows into the body of their
insert, so the write step, which batches pass one at a time, does not encode
(store/native.py). ``None`` from it leaves the write step to encode as it inserts. When the
native fast path wrote that body itself, outside the GIL (``ProcessedBatch.native_body``),
``adopt`` (the sink's) takes it instead, if the table's columns are the ones it was written
for; otherwise the rows are encoded as before.
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

__all__ = ["Adopt", "Encode", "ProcessBatch", "Validate"]

ProcessBatch = Callable[..., ProcessedBatch]
Encode = Callable[[Sequence[Row]], EncodedRows | None]
Adopt = Callable[[Sequence[Row], bytes], EncodedRows | None]


class Validate(Forward):
    def __init__(
        self,
        next_step: Step[Awaitable[ProcessedBatch]],
        *,
        process: ProcessBatch,
        attributor: Attributor | None,
        retention_days: int | None,
        encode: Encode | None = None,
        adopt: Adopt | None = None,
        native: bool = True,
    ) -> None:
        super().__init__(next_step)
        self.process = process
        self.encode = encode
        self.adopt = adopt
        self.options: dict[str, Any] = {
            "attributor": attributor,
            "retention_days": retention_days,
            "native": native,
            "native_body": native and adopt is not None,
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
        body, batch.native_body = batch.native_body, None
        if body is not None and self.adopt is not None and batch.rows:
            batch.encoded = self.adopt(batch.rows, body)
        if batch.encoded is None and self.encode is not None and batch.rows:
            batch.encoded = self.encode(batch.rows)
        return batch
