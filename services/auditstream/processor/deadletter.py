"""The dead-letter step: a batch's rejects reach the DLQ topic before the batch goes on.

Each reject is published with its original bytes and the reason in headers (dlq.py);
the step waits for every acknowledgement, and waits out a broker that does not take
them (retry.py), because a batch is not done - not committed - until its rejects are
safe. At least once: a retry publishes all of the batch's rejects again, so a reader
de-duplicates on the source position headers (``auditstream.source.partition``/``offset``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from auditstream.processor import metrics
from auditstream.processor.batch import ProcessedBatch, Rejected
from auditstream.processor.dlq import DeadLetter, dead_letter
from auditstream.processor.step import Forward, Step
from auditstream.retry import Backoff, retry

__all__ = ["PublishDeadLetters", "Send"]

log = logging.getLogger(__name__)

# Hands one record to the producer; the awaitable it returns resolves when the broker acks it.
Send = Callable[[DeadLetter], Awaitable[Awaitable[object]]]


class PublishDeadLetters(Forward):
    def __init__(self, next_step: Step[ProcessedBatch], *, send: Send, backoff: Backoff) -> None:
        super().__init__(next_step)
        self.send = send
        self.backoff = backoff

    async def submit(self, item: ProcessedBatch) -> None:
        if item.rejected:
            await self._publish(item.rejected)
        await self.next_step.submit(item)

    async def _publish(self, rejected: list[Rejected]) -> None:
        now = datetime.now(UTC)
        letters = [dead_letter(r, rejected_at=now) for r in rejected]

        async def attempt() -> None:
            acks = [await self.send(letter) for letter in letters]
            await asyncio.gather(*acks)

        def on_retry(exc: BaseException, wait: float) -> None:
            log.warning(
                "dead-letter publish failed; retrying", extra={"error": repr(exc), "retry_in_s": wait}
            )

        # Broker trouble of any kind: the batch is not done until the DLQ has its rejects.
        await retry(attempt, retry_on=Exception, backoff=self.backoff, on_retry=on_retry)
        for r in rejected:
            metrics.REJECTED.labels(reason=r.errors[0]["type"] if r.errors else "invalid").inc()
