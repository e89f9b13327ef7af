"""The write step: first write wins, then the rows go to ClickHouse in one insert.

Runs one batch at a time, after every earlier batch is written (the in-order step
before it), so a batch is settled against all batches before it:

1. look up the batch's identities in the store (``Store.stored_identities``);
2. settle each row in batch order (identity.py): new -> written, exact copy -> dropped,
   other content -> a conflict, dead-lettered (the stored event is never touched);
3. write the rows in one insert, with a deduplication token of each partition's offset
   range; rows ClickHouse refuses as data (isolated by the sink) join the rejects.

Each row carries its source message, so a conflict or a poison row is a reject of that
message as it is.
"""

from __future__ import annotations

import logging

from auditstream.processor import metrics
from auditstream.processor.batch import ProcessedBatch, conflict, dedup_token, identity, store_rejected
from auditstream.processor.identity import settle_against_store
from auditstream.processor.sink import ClickHouseSink
from auditstream.processor.step import Forward, Step

__all__ = ["IdentityCheckAndWrite"]

log = logging.getLogger(__name__)


class IdentityCheckAndWrite(Forward):
    def __init__(self, next_step: Step[ProcessedBatch], *, sink: ClickHouseSink, topic: str) -> None:
        super().__init__(next_step)
        self.sink = sink
        self.topic = topic

    async def submit(self, item: ProcessedBatch) -> None:
        stored = await self.sink.stored_identities([identity(row) for row in item.rows])
        settled = settle_against_store(item, stored)
        metrics.DUPLICATES.inc(settled.duplicates)
        if settled.conflicting:
            item.rejected.extend(conflict(row.message) for row in settled.conflicting)
            metrics.CONFLICTS.inc(len(settled.conflicting))
            log.warning(
                "events conflicting with stored ones sent to the DLQ",
                extra={"conflicts": len(settled.conflicting)},
            )
        # The rows encoded ahead are still the rows to write unless settling dropped some.
        encoded = item.encoded if len(settled.rows) == len(item.rows) else None
        item.rows, item.encoded = settled.rows, None
        if settled.rows:
            token = dedup_token(self.topic, settled.rows)
            poison = await self.sink.write(settled.rows, dedup_token=token, encoded=encoded)
            metrics.STORED.inc(len(settled.rows) - len(poison))
            item.rejected.extend(store_rejected(p.row.message, p.error) for p in poison)
        await self.next_step.submit(item)
