"""The processor's chain of steps (processor/chain.py) for tests: no faust app, no broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from auditstream.processor.batch import Incoming, ProcessedBatch, process_batch
from auditstream.processor.chain import build_chain
from auditstream.processor.dlq import DeadLetter
from auditstream.processor.sink import ClickHouseSink
from auditstream.processor.validate import Validate
from auditstream.retry import Backoff
from auditstream.store import Store

TOPIC = "audit.events"


def chain_into(
    store: Store, *, acked: list[int] | None = None, dead: list[DeadLetter] | None = None
) -> Validate:
    """The chain writing to ``store``; offsets acknowledged go to ``acked``, dead letters to ``dead``.

    Without ``dead``, a dead letter fails the test: nothing is meant to be rejected.
    """

    async def send(letter: DeadLetter) -> asyncio.Future[None]:
        if dead is None:
            raise AssertionError(f"nothing here is rejected: {letter}")
        dead.append(letter)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def acknowledge(messages: Sequence[Incoming]) -> None:
        if acked is not None:
            acked.extend(m.offset for m in messages)

    def committed(batch: ProcessedBatch) -> None:
        return None

    return build_chain(
        process=process_batch,
        attributor=None,
        retention_days=None,
        batches_in_flight=2,
        sink=ClickHouseSink(store, initial_backoff=0.01, max_backoff=0.01),
        topic=TOPIC,
        send_dead_letter=send,
        dead_letter_backoff=Backoff(0.01, 0.01),
        acknowledge=acknowledge,
        on_committed=committed,
    )
