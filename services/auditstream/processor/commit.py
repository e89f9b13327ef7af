"""The commit step, always the last: acknowledge a batch that passed every step.

faust's consumer commits, every ``broker_commit_interval``, the offsets of acknowledged
messages; a message is acknowledged here only once its batch is stored and its rejects
are in the DLQ, so a commit never covers an event that is not safe. Batches arrive in
fetch order (the in-order step), so acknowledgements do too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from auditstream.processor.batch import Incoming, ProcessedBatch

__all__ = ["Commit"]


class Commit:
    def __init__(
        self,
        *,
        acknowledge: Callable[[Sequence[Incoming]], None],
        on_committed: Callable[[ProcessedBatch], None],
    ) -> None:
        self.acknowledge = acknowledge
        self.on_committed = on_committed

    async def submit(self, item: ProcessedBatch) -> None:
        self.acknowledge(item.messages)
        self.on_committed(item)

    def poll(self) -> None:
        return None

    async def join(self, grace: float | None = None) -> None:
        return None

    def in_flight(self) -> int:
        return 0  # acknowledging does not wait
