"""Overlapping batches never write out of order, even when an earlier batch fails.

Pure processor logic on the chain of steps (processor/chain.py), without a faust app
and without a broker: the store is a recorder (nothing here claims to test ClickHouse),
the commit step records what it acknowledges.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import orjson
import pytest

from auditstream.demo.generator import generate_events
from auditstream.events.stored import COLUMNS
from auditstream.processor.batch import KafkaMessage
from auditstream.processor.order import InOrder
from auditstream.store import Store
from tests.processor._support import chain_into

OFFSET = COLUMNS.index("kafka_offset")


class RecordingStore(Store):
    """Records writes; the first one fails with an error the sink does not retry."""

    def __init__(self, *, fail_first: bool) -> None:
        super().__init__("chdb:///nonexistent", "unused")
        self.fail_first = fail_first
        self.writes: list[list[int]] = []

    def insert_rows(self, rows: Sequence[tuple], *, dedup_token: str | None = None) -> None:
        self.writes.append([row[OFFSET] for row in rows])
        if self.fail_first and len(self.writes) == 1:
            raise RuntimeError("a bug while writing the first batch")

    def stored_identities(self, keys: Sequence[tuple[str, UUID]]) -> dict[tuple[str, UUID], bytes]:
        return {}  # nothing is stored before these batches


def _messages(offsets: range) -> list[KafkaMessage]:
    events = generate_events(len(offsets), tenants=["acme"], seed=1, end=datetime.now(UTC))
    return [
        KafkaMessage("audit.events", 0, offset, b"acme", orjson.dumps(event))
        for offset, event in zip(offsets, events, strict=True)
    ]


async def test_a_batch_after_a_failed_one_is_not_written() -> None:
    store = RecordingStore(fail_first=True)
    acked: list[int] = []
    chain = chain_into(store, acked=acked)
    await chain.submit(_messages(range(0, 5)))
    await chain.submit(_messages(range(5, 10)))
    with pytest.raises(RuntimeError, match="first batch"):
        await chain.join(30)
    assert store.writes == [[0, 1, 2, 3, 4]]  # the second batch never reached the store
    assert acked == []  # nothing of either batch may be committed


async def test_the_failure_of_a_batch_is_raised_to_the_fetch_step_and_later_ones_follow_it() -> None:
    store = RecordingStore(fail_first=True)
    chain = chain_into(store, acked=[])
    await chain.submit(_messages(range(0, 5)))
    await chain.submit(_messages(range(5, 10)))
    # The in-order step holds two batches: a third waits for the first, which failed.
    with pytest.raises(RuntimeError, match="first batch"):
        await asyncio.wait_for(chain.submit(_messages(range(10, 15))), timeout=30)
    assert store.writes == [[0, 1, 2, 3, 4]]


async def test_batches_are_written_and_acknowledged_in_fetch_order() -> None:
    store = RecordingStore(fail_first=False)
    acked: list[int] = []
    chain = chain_into(store, acked=acked)
    for start in range(0, 30, 5):
        await chain.submit(_messages(range(start, start + 5)))
    await chain.join(30)
    assert store.writes == [list(range(s, s + 5)) for s in range(0, 30, 5)]
    assert acked == list(range(30))


class _Recorder:
    """A last step that records what reaches it."""

    def __init__(self) -> None:
        self.items: list[str] = []

    async def submit(self, item: str) -> None:
        self.items.append(item)

    def poll(self) -> None:
        return None

    async def join(self, grace: float | None = None) -> None:
        return None

    def in_flight(self) -> int:
        return 0


async def test_a_ready_batch_after_a_failed_one_never_goes_on() -> None:
    recorder = _Recorder()
    in_order: InOrder[str] = InOrder(recorder, max_in_flight=2)
    release = asyncio.Event()

    async def first() -> str:
        await release.wait()
        raise RuntimeError("the first batch failed")

    async def second() -> str:
        return "second"  # ready long before the first: must still not go on

    await in_order.submit(first())
    await in_order.submit(second())
    release.set()
    with pytest.raises(RuntimeError, match="first batch"):
        await in_order.join(30)
    assert recorder.items == []  # neither went on: the second waits for the first, which failed


async def test_in_flight_counts_batches_until_every_following_step_is_done() -> None:
    # The fetch step closes a batch early only when this is 0 (fetcher.py, group commit).
    recorder = _Recorder()
    in_order: InOrder[str] = InOrder(recorder, max_in_flight=2)
    release = asyncio.Event()

    async def held() -> str:
        await release.wait()
        return "held"

    assert in_order.in_flight() == 0
    await in_order.submit(held())
    await in_order.submit(held())
    assert in_order.in_flight() == 2
    release.set()
    await in_order.join(30)
    assert in_order.in_flight() == 0
    assert recorder.items == ["held", "held"]
