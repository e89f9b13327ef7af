"""Overlapping batches never write out of order, even when an earlier batch fails.

Pure processor logic: the store is a recorder (nothing here claims to test ClickHouse),
and no broker is contacted (the faust app is built but never started).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import orjson
import pytest

from auditstream.config import Settings
from auditstream.demo.generator import generate_events
from auditstream.events.stored import COLUMNS
from auditstream.processor.batch import KafkaMessage
from auditstream.processor.service import EarlierBatchNotWritten, Processor
from auditstream.store import Store

OFFSET = COLUMNS.index("kafka_offset")


class RecordingStore(Store):
    """Records writes; the first one fails with an error the sink does not retry."""

    def __init__(self) -> None:
        super().__init__("chdb:///nonexistent", "unused")
        self.writes: list[list[int]] = []

    def insert_rows(self, rows: Sequence[tuple], *, dedup_token: str | None = None) -> None:
        self.writes.append([row[OFFSET] for row in rows])
        if len(self.writes) == 1:
            raise RuntimeError("a bug while writing the first batch")

    def stored_identities(self, keys: Sequence[tuple[str, UUID]]) -> dict[tuple[str, UUID], bytes]:
        return {}  # nothing is stored before these batches


def _messages(offsets: range) -> list[KafkaMessage]:
    events = generate_events(len(offsets), tenants=["acme"], seed=1, end=datetime.now(UTC))
    return [
        KafkaMessage("audit.events", 0, offset, b"acme", orjson.dumps(event))
        for offset, event in zip(offsets, events, strict=True)
    ]


async def test_a_batch_after_a_failed_one_is_not_written(tmp_path) -> None:
    store = RecordingStore()
    processor = Processor(Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:9"), store)
    first = asyncio.ensure_future(processor.process(_messages(range(0, 5))))
    second = asyncio.ensure_future(processor.process(_messages(range(5, 10))))
    with pytest.raises(RuntimeError, match="first batch"):
        await asyncio.wait_for(first, timeout=30)
    with pytest.raises(EarlierBatchNotWritten):
        await asyncio.wait_for(second, timeout=30)
    assert store.writes == [[0, 1, 2, 3, 4]]  # the second batch never reached the store
