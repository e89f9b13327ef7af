"""The processor's chain of steps, wired in one place.

    fetch -> validate -> in order -> identity check + write -> dead letters -> commit

Each step is built with the one after it (step.py), so this function reads from the
last step to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from auditstream.events.attribution import Attributor
from auditstream.processor.batch import Incoming, ProcessedBatch
from auditstream.processor.commit import Commit
from auditstream.processor.deadletter import PublishDeadLetters, Send
from auditstream.processor.order import InOrder
from auditstream.processor.sink import ClickHouseSink
from auditstream.processor.validate import ProcessBatch, Validate
from auditstream.processor.write import IdentityCheckAndWrite
from auditstream.retry import Backoff

__all__ = ["build_chain"]


def build_chain(
    *,
    process: ProcessBatch,
    attributor: Attributor | None,
    retention_days: int | None,
    batches_in_flight: int,
    sink: ClickHouseSink,
    topic: str,
    send_dead_letter: Send,
    dead_letter_backoff: Backoff,
    acknowledge: Callable[[Sequence[Incoming]], None],
    on_committed: Callable[[ProcessedBatch], None],
    native_fastpath: bool = True,
) -> Validate:
    """The first step after fetch; what the fetch step submits each batch to."""
    commit = Commit(acknowledge=acknowledge, on_committed=on_committed)
    dead_letters = PublishDeadLetters(commit, send=send_dead_letter, backoff=dead_letter_backoff)
    write = IdentityCheckAndWrite(dead_letters, sink=sink, topic=topic)
    in_order: InOrder[ProcessedBatch] = InOrder(write, max_in_flight=batches_in_flight)
    return Validate(
        in_order,
        process=process,
        attributor=attributor,
        retention_days=retention_days,
        encode=sink.encode,
        adopt=sink.adopt,
        native=native_fastpath,
    )
