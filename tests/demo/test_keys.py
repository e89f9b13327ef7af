"""DemoKeys: the development keys of ``auditstream run`` are made once and reused (SQLite only)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson

from auditstream.api.keys import KeyStore, Role
from auditstream.demo.keys import DemoKeys


def test_keys_are_created_once_saved_owner_only_and_reused(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = KeyStore(tmp_path / "keys.sqlite3")
        first = DemoKeys(tmp_path / "demo-keys.json", store).ensure("acme")
    finally:
        os.umask(old)
    path = tmp_path / "demo-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {r: k.role for r, k in first.items()} == {Role.READER: "reader", Role.ADMIN: "admin"}
    for role, key in first.items():
        verified = store.verify(key.token)
        assert verified is not None and verified.role is role and verified.tenant_id == "acme"
    again = DemoKeys(path, store).ensure("acme")
    assert {r: k.token for r, k in again.items()} == {r: k.token for r, k in first.items()}
    assert len(store.list_keys()) == 2  # a restart mints nothing


def test_a_revoked_or_lost_key_is_replaced_and_needs_auditing(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    demo = DemoKeys(tmp_path / "demo-keys.json", store)
    first = demo.ensure("acme")
    assert sorted(k.key_id for k in demo.unaudited()) == sorted(k.key_id for k in first.values())
    demo.mark_audited([k.key_id for k in first.values()])
    assert DemoKeys(tmp_path / "demo-keys.json", store).unaudited() == []  # persisted

    store.revoke(first[Role.READER].key_id)
    demo = DemoKeys(tmp_path / "demo-keys.json", store)
    second = demo.ensure("acme")
    assert second[Role.ADMIN].token == first[Role.ADMIN].token
    assert second[Role.READER].key_id != first[Role.READER].key_id
    assert store.verify(second[Role.READER].token) is not None
    assert [k.key_id for k in demo.unaudited()] == [second[Role.READER].key_id]

    # The key store deleted: both keys are made again.
    fresh = KeyStore(tmp_path / "other-keys.sqlite3")
    third = DemoKeys(tmp_path / "demo-keys.json", fresh).ensure("acme")
    assert {k.key_id for k in third.values()}.isdisjoint({k.key_id for k in second.values()})
    doc = orjson.loads((tmp_path / "demo-keys.json").read_bytes())
    assert len(doc["keys"]) == 2


def test_a_damaged_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "demo-keys.json"
    path.write_text("{not json")
    store = KeyStore(tmp_path / "keys.sqlite3")
    keys = DemoKeys(path, store).ensure("acme")
    assert store.verify(keys[Role.READER].token) is not None
    assert orjson.loads(path.read_bytes())["version"] == 1
