"""Fixtures for store tests: an opened Store on the session's engine, one database per module.

Rows are built directly as tuples in ``COLUMNS`` order so these tests depend only on the
stored column contract, not on the event model or enrichment.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from auditstream.events.stored import COLUMNS, content_hash
from auditstream.store import Store

RowFactory = Callable[..., tuple]


def build_row(**values: Any) -> tuple:
    """A row tuple in COLUMNS order; unspecified columns get neutral defaults."""
    now = datetime.now(UTC)
    defaults: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "tenant_id": "acme",
        "occurred_at": now,
        "received_at": now,
        "action": "user.login",
        "category": "authentication",
        "severity": "info",
        "outcome": "success",
        "reason": "",
        "actor_id": "alice",
        "actor_type": "user",
        "actor_name": "",
        "actor_email": "",
        "actor_ip": "",
        "actor_user_agent": "",
        "resource_type": "",
        "resource_id": "",
        "resource_name": "",
        "source_service": "",
        "source_host": "",
        "source_request_id": "",
        "changes": "",
        "details": {},
        "schema_version": "1",
        "kafka_topic": "audit.events",
        "kafka_partition": 0,
        "kafka_offset": 0,
        "content_hash": b"",
        "ingest_channel": "kafka",
        "ingest_key_id": "",
    }
    unknown = set(values) - set(defaults)
    assert not unknown, f"unknown columns {unknown}"
    defaults.update(values)
    row = tuple(defaults[name] for name in COLUMNS)
    if "content_hash" in values:
        return row
    # What the processor stores: the hash of the row's content (same content, same hash).
    at = COLUMNS.index("content_hash")
    return (*row[:at], content_hash(row), *row[at + 1 :])


@pytest.fixture
def make_row() -> RowFactory:
    return build_row


@pytest.fixture(scope="module")
def store(clickhouse_dsn: str, clickhouse_database: str) -> Iterator[Store]:
    s = Store(clickhouse_dsn, clickhouse_database, retention_days=3650)
    s.open()
    try:
        yield s
    finally:
        s.close()


def unique_tenant() -> str:
    """A tenant id no other test uses, so tests sharing a module database stay independent."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tenant() -> str:
    return unique_tenant()


# Values a column cannot take (a type or range error): every write path must refuse each one.
BAD_VALUES: list[dict[str, Any]] = [
    {"event_id": "not-a-uuid"},
    {"kafka_partition": 70000},
    {"kafka_offset": -1},
    {"occurred_at": "yesterday"},
    {"details": "not a map"},
]


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The garbage collector off: a reference kept by a cycle then shows in the reference counts."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
