"""The validate step encodes a batch's rows for their insert; the write step uses that only as is.

On the chain of steps (processor/chain.py) without a faust app or a broker, into the real
engine. The store is the real one, wrapped at its write seam (``insert_rows``) to record
what each write was handed and, in one test, to refuse a row as the engine would.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import orjson
import pytest

from auditstream.demo.generator import generate_events
from auditstream.events.fastpath import NATIVE
from auditstream.events.stored import COLUMNS
from auditstream.processor.batch import KafkaMessage
from auditstream.processor.dlq import DeadLetter
from auditstream.store import EventFilter, Store, StoreRejected
from auditstream.store.native import EncodedRows
from tests.processor._support import chain_into

pytestmark = pytest.mark.clickhouse

OFFSET = COLUMNS.index("kafka_offset")
ACTOR = COLUMNS.index("actor_id")
TENANT = "acme"


class WatchedStore(Store):
    """The real store; records each write and the thread each encoding ran on."""

    refuse_actor: str | None = None

    def __init__(self, dsn: str, database: str) -> None:
        super().__init__(dsn, database, retention_days=3650)
        self.writes: list[tuple[bool, list[int]]] = []  # (handed encoded rows, offsets)
        self.encoded_on: list[str] = []
        self.encoded_how: list[str] = []

    def encode_rows(self, rows: Sequence[tuple]) -> EncodedRows:
        self.encoded_on.append(threading.current_thread().name)
        self.encoded_how.append("encoded")
        return super().encode_rows(rows)

    def adopt_encoded(
        self, rows: Sequence[tuple], body: bytes, columns: Sequence[tuple[str, str]]
    ) -> EncodedRows | None:
        # The native fast path's own body (events/fastpath.py), taken on the same thread.
        self.encoded_on.append(threading.current_thread().name)
        self.encoded_how.append("adopted")
        return super().adopt_encoded(rows, body, columns)

    def insert_rows(self, rows: Sequence[tuple], *, dedup_token: str | None = None) -> None:
        self.writes.append((isinstance(rows, EncodedRows), [row[OFFSET] for row in rows]))
        if self.refuse_actor is not None and any(row[ACTOR] == self.refuse_actor for row in rows):
            raise StoreRejected("Code: 53. TYPE_MISMATCH (refused for the test)")
        super().insert_rows(rows, dedup_token=dedup_token)


@pytest.fixture
def store(clickhouse_dsn: str) -> Iterator[WatchedStore]:
    s = WatchedStore(clickhouse_dsn, f"test_{uuid.uuid4().hex[:12]}")  # a database per test
    s.open()
    try:
        yield s
    finally:
        s.close()


# Each with an id of its own, so a copy at another offset is the same event (a replay).
EVENTS = [
    {**event, "event_id": str(uuid.uuid4())}
    for event in generate_events(30, tenants=[TENANT], seed=7, end=datetime.now(UTC))
]


def _messages(offsets: range, *, events: Sequence[dict] | None = None) -> list[KafkaMessage]:
    chosen = events if events is not None else EVENTS[offsets.start : offsets.stop]
    return [
        KafkaMessage("audit.events", 0, offset, TENANT.encode(), orjson.dumps(event))
        for offset, event in zip(offsets, chosen, strict=True)
    ]


def _stored_offsets(store: Store) -> list[int]:
    return sorted(r["kafka_offset"] for r in store.query_events(EventFilter(tenant_id=TENANT), limit=1000))


async def test_batches_are_encoded_off_the_event_loop_and_inserted_as_encoded(store: WatchedStore) -> None:
    chain = chain_into(store)
    await chain.submit(_messages(range(0, 10)))
    await chain.submit(_messages(range(10, 20)))
    await chain.join(30)
    assert store.writes == [(True, list(range(0, 10))), (True, list(range(10, 20)))]
    assert len(store.encoded_on) == 2
    assert threading.main_thread().name not in store.encoded_on  # the validation thread, not the loop
    # With the native fast path its body is taken as it is; without it clickhouse-connect encodes.
    assert store.encoded_how == (["adopted"] * 2 if NATIVE else ["encoded"] * 2)
    assert _stored_offsets(store) == list(range(20))


async def test_a_batch_the_identity_check_shrinks_is_encoded_again(store: WatchedStore) -> None:
    chain = chain_into(store)
    await chain.submit(_messages(range(0, 5)))
    await chain.join(30)
    # Offsets 5-7 repeat the first batch's first three events exactly (a replay): dropped
    # as copies, so the rows encoded ahead are not the rows to write.
    await chain.submit(_messages(range(5, 10), events=[*EVENTS[0:3], *EVENTS[5:7]]))
    await chain.join(30)
    assert store.writes == [(True, [0, 1, 2, 3, 4]), (False, [8, 9])]
    assert _stored_offsets(store) == [0, 1, 2, 3, 4, 8, 9]


async def test_an_encoded_batch_the_store_refuses_is_written_row_by_row(store: WatchedStore) -> None:
    refused = EVENTS[3]["actor"]["id"]
    store.refuse_actor = refused
    dead: list[DeadLetter] = []
    chain = chain_into(store, dead=dead)
    await chain.submit(_messages(range(0, 10)))
    await chain.join(30)
    assert store.writes[0] == (True, list(range(10)))  # the encoded batch, refused
    assert all(not encoded for encoded, _ in store.writes[1:])  # then the isolating writes
    refused_offsets = {i for i, e in enumerate(EVENTS[:10]) if e["actor"]["id"] == refused}
    assert _stored_offsets(store) == sorted(set(range(10)) - refused_offsets)
    assert sorted(int(dict(d.headers)["auditstream.source.offset"]) for d in dead) == sorted(refused_offsets)
