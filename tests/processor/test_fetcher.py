"""The fetch step's bulk conversion (``fetch_messages``), as pure logic.

The real consumer is exercised end to end by test_processor_on_kafka.py and the fault
tests; here a stand-in with faust's consumer surface checks what the conversion keeps
and drops, and faust's own ``Consumer`` is checked for the names it relies on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from auditstream.processor.fetcher import batch_ready, fetch_batches, fetch_messages


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int


@dataclass
class _Monitor:
    end_offsets: dict[TP, int] = field(default_factory=dict)

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        self.end_offsets[tp] = offset


@dataclass
class _App:
    monitor: _Monitor = field(default_factory=_Monitor)


@dataclass
class _Consumer:
    """faust's consumer surface that ``fetch_messages`` reads."""

    records: dict[TP, list[_Record]] | None
    active: set[TP] | None
    should_stop: bool = False
    flow_active: bool = True
    _buffered_partitions: set[TP] = field(default_factory=set)
    app: _App = field(default_factory=_App)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109 - faust's signature
        return self.records, self.active

    def _to_message(self, tp: TP, record: _Record) -> tuple[TP, int]:
        return tp, record.offset

    def highwater(self, tp: TP) -> int:
        return 100 + tp.partition


T0, T1, T2 = TP("audit", 0), TP("audit", 1), TP("audit", 2)


def _records() -> dict[TP, list[_Record]]:
    return {tp: [_Record("audit", tp.partition, o) for o in (5, 6, 7)] for tp in (T0, T1, T2)}


def _fetch(consumer: _Consumer) -> list[Any]:
    return asyncio.run(fetch_messages(consumer, 0.1))


def test_every_record_of_active_partitions_in_partition_order() -> None:
    consumer = _Consumer(_records(), active={T0, T2})
    consumer._buffered_partitions = {T1}  # buffered counts as active, as in faust's getmany
    out = _fetch(consumer)
    assert out == [(tp, o) for tp in (T0, T1, T2) for o in (5, 6, 7)]
    assert consumer.app.monitor.end_offsets == {T0: 100, T1: 101, T2: 102}


def test_records_of_inactive_partitions_are_dropped() -> None:
    consumer = _Consumer(_records(), active={T1})
    assert _fetch(consumer) == [(T1, 5), (T1, 6), (T1, 7)]
    assert set(consumer.app.monitor.end_offsets) == {T1}


def test_client_only_consumer_has_no_active_set() -> None:
    assert len(_fetch(_Consumer(_records(), active=None))) == 9


def test_nothing_when_stopping_paused_or_empty() -> None:
    assert _fetch(_Consumer(_records(), active=None, should_stop=True)) == []
    assert _fetch(_Consumer(_records(), active=None, flow_active=False)) == []
    assert _fetch(_Consumer(None, active=None)) == []
    assert _fetch(_Consumer({}, active=set())) == []


def test_faust_consumer_has_the_names_the_fetch_step_uses() -> None:
    # A faust upgrade that renames these must fail here, not in production.
    for name in ("_wait_next_records", "_to_message", "highwater", "getmany"):
        assert callable(getattr(AIOKafkaConsumer, name, None)), name
    assert issubclass(AIOKafkaConsumer, Consumer)
    # Set in Consumer.__init__ (not a class attribute): read from faust's source.
    import inspect

    assert "self._buffered_partitions" in inspect.getsource(Consumer.__init__)


# --- closing batches (group commit) ----------------------------------------------------


@pytest.mark.parametrize(
    ("size", "age", "idle", "ready"),
    [
        (100, 0.0, False, True),  # full
        (1, 0.5, False, True),  # old enough
        (1, 0.2, False, False),  # the chain is busy: the batch grows while it waits
        (1, 0.2, True, True),  # the chain is idle: waiting would only add latency
        (1, 0.05, True, False),  # ... but not younger than the floor
    ],
)
def test_batch_ready(size: int, age: float, idle: bool, ready: bool) -> None:
    kwargs = {"max_events": 100, "max_seconds": 0.5, "min_seconds": 0.1}
    assert batch_ready(size, age, idle=idle, **kwargs) is ready


@pytest.mark.parametrize(("value_bytes", "ready"), [(999, False), (1000, True), (5000, True)])
def test_batch_ready_on_bytes(value_bytes: int, ready: bool) -> None:
    kwargs = {"max_events": 100, "max_seconds": 0.5, "min_seconds": 0.1, "max_bytes": 1000}
    assert batch_ready(3, 0.0, idle=False, value_bytes=value_bytes, **kwargs) is ready


def test_a_batch_closes_at_max_bytes_of_values_counted_from_its_first_message() -> None:
    @dataclass
    class _Message:
        value: bytes | None

    step = _Step(busy=1)  # busy: only size or bytes close a batch within the long window
    fetches = [[_Message(b"x" * 300), _Message(None)], [_Message(b"y" * 400)], [_Message(b"z" * 400)]]
    fetches += [[_Message(b"w" * 100)] for _ in range(10)]

    async def fetch(wait: float) -> list[_Message]:
        await asyncio.sleep(0)
        return fetches.pop(0) if fetches else []

    async def run() -> None:
        await asyncio.wait_for(
            fetch_batches(
                fetch,  # type: ignore[arg-type]
                step,  # type: ignore[arg-type]
                stopping=lambda: len(step.batches) == 2,
                max_events=10_000,
                max_seconds=30.0,
                min_seconds=0.05,
                max_bytes=1000,
            ),
            timeout=60,
        )

    asyncio.run(run())
    sizes = [[len(m.value or b"") for m in batch] for _, batch in step.batches]
    # 300 + 0 + 400 < 1000; the next 400 passes it (by at most one fetch). The count starts
    # again with the next batch, which closes at exactly 1000.
    assert sizes == [[300, 0, 400, 400], [100] * 10]


class _Step:
    """A first step whose chain reports ``busy`` batches in flight; records what it gets."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.batches: list[tuple[float, list[int]]] = []

    async def submit(self, item: list[int]) -> None:
        self.batches.append((time.monotonic(), item))

    def poll(self) -> None:
        return None

    async def join(self, grace: float | None = None) -> None:
        return None

    def in_flight(self) -> int:
        return self.busy


def _run_fetch(step: _Step, *, max_seconds: float, min_seconds: float) -> float:
    """One message per fetch, every 10 ms, until the first batch; returns the first message's time."""
    first: list[float] = []

    async def fetch(wait: float) -> list[int]:
        await asyncio.sleep(0.01)
        first.append(first[0] if first else time.monotonic())
        return [len(first)]

    async def run() -> None:
        await asyncio.wait_for(
            fetch_batches(
                fetch,  # type: ignore[arg-type]
                step,  # type: ignore[arg-type]
                stopping=lambda: bool(step.batches),
                max_events=10_000,
                max_seconds=max_seconds,
                min_seconds=min_seconds,
            ),
            timeout=60,
        )

    asyncio.run(run())
    return first[0]


def test_an_idle_chain_gets_the_batch_at_the_floor_not_at_the_window() -> None:
    step = _Step(busy=0)
    opened = _run_fetch(step, max_seconds=30.0, min_seconds=0.05)
    [(submitted, batch)] = step.batches
    assert 0.05 <= submitted - opened < 30.0
    assert batch == list(range(1, len(batch) + 1))  # every fetched message, in order


def test_a_busy_chain_gets_the_batch_when_the_window_closes() -> None:
    step = _Step(busy=1)
    opened = _run_fetch(step, max_seconds=0.3, min_seconds=0.05)
    [(submitted, batch)] = step.batches
    assert submitted - opened >= 0.3
    assert len(batch) > 1
