"""The identity index of migration 0004 (first write wins), on the real engine."""

from __future__ import annotations

import uuid

import pytest

from auditstream.events.stored import COLUMNS
from auditstream.store import Store
from tests.store.conftest import build_row, unique_tenant

pytestmark = pytest.mark.clickhouse

HASH = COLUMNS.index("content_hash")


def test_identities_are_per_tenant_with_their_hashes(store: Store) -> None:
    acme, globex = unique_tenant(), unique_tenant()
    shared = uuid.uuid4()
    a = build_row(tenant_id=acme, event_id=shared, action="scan.created")
    g = build_row(tenant_id=globex, event_id=shared, action="user.login")
    store.insert_rows([a, g])
    other = uuid.uuid4()
    found = store.stored_identities(
        [(acme, shared), (globex, shared), (acme, other), (unique_tenant(), shared)]
    )
    assert found == {(acme, shared): a[HASH], (globex, shared): g[HASH]}
    assert a[HASH] != g[HASH]
    assert store.stored_event_keys([(globex, shared), (globex, other)]) == {(globex, shared)}
    assert store.stored_identities([]) == {}


def test_a_lookup_larger_than_one_chunk(store: Store) -> None:
    tenant = unique_tenant()
    rows = [build_row(tenant_id=tenant, kafka_offset=i) for i in range(12_000)]
    store.insert_rows(rows)
    keys = [(tenant, r[0]) for r in rows[::2]] + [(tenant, uuid.uuid4()) for _ in range(100)]
    found = store.stored_identities(keys)
    assert len(found) == 6_000
    assert all(found[(tenant, r[0])] == r[HASH] for r in rows[::2])


def test_the_index_is_filled_in_the_same_insert(store: Store) -> None:
    tenant = unique_tenant()
    row = build_row(tenant_id=tenant)
    store.insert_rows([row])
    counts = (
        store._client()
        .query(
            f"SELECT count() FROM {store.database}.audit_ids WHERE tenant_id = {{t:String}}",
            parameters={"t": tenant},
        )
        .result_rows[0][0]
    )
    assert counts == 1
