"""An insert lets go of its rows when it returns (store/client.py ``insert_releasing``).

clickhouse-connect's insert context is in a reference cycle, so whatever it still references
when the insert returns lives until the collector gets to that cycle: the processor's batches
did, and an older-generation collection then walked them all. Here the collector is off, so a
reference the context kept shows in the reference counts.
"""

from __future__ import annotations

import sys
import uuid

import pytest

from auditstream.store import Store
from tests.store.conftest import build_row, unique_tenant

pytestmark = pytest.mark.clickhouse


def test_an_insert_keeps_no_reference_to_the_rows(store: Store, no_collector: None) -> None:
    rows = [build_row(tenant_id=unique_tenant(), kafka_offset=i) for i in range(3)]
    before = sys.getrefcount(rows), [sys.getrefcount(r) for r in rows]
    store.insert_rows(rows)
    assert (sys.getrefcount(rows), [sys.getrefcount(r) for r in rows]) == before


def test_an_identity_lookup_keeps_no_reference_to_the_ids(store: Store, no_collector: None) -> None:
    keys = [(unique_tenant(), uuid.uuid4()) for _ in range(3)]
    before = [sys.getrefcount(event_id) for _, event_id in keys]
    assert store.stored_identities(keys) == {}
    assert [sys.getrefcount(event_id) for _, event_id in keys] == before
