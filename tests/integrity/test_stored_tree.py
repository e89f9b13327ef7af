"""Proofs from stored subtree hashes (0008) on the real store: same answers, few reads, backfill, crashes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from auditstream.integrity.ledger import SUBTREE_MIN_LEVEL, Ledger
from auditstream.integrity.merkle import consistency_proof, inclusion_proof, tree_root
from auditstream.integrity.sealer import Sealer
from auditstream.integrity.stored_tree import StoredTree
from auditstream.store import Store
from tests.integrity.conftest import seal, seed, sql

pytestmark = pytest.mark.clickhouse

SIZE = 700  # levels 8 (two subtrees) and 9 (one) are stored; the rest comes from leaves


class CountingLedger(Ledger):
    """The real ledger, counting the leaves it reads (and failing subtree writes on request)."""

    def __init__(self, dsn: str, database: str) -> None:
        super().__init__(dsn, database)
        self.leaves_read = 0
        self.full_reads = 0
        self.fail_subtree_writes = 0

    def leaf_hash_range(self, tenant_id: str, start: int, end: int) -> list[bytes]:
        self.leaves_read += end - start
        return super().leaf_hash_range(tenant_id, start, end)

    def leaf_hashes(self, tenant_id: str, size: int) -> list[bytes]:
        self.full_reads += 1
        return super().leaf_hashes(tenant_id, size)

    def append_subtrees(self, tenant_id: str, nodes: Sequence[tuple[int, int, bytes]], token: str) -> None:
        if self.fail_subtree_writes and nodes:
            self.fail_subtree_writes -= 1
            raise ConnectionError("injected: the subtree insert did not reach ClickHouse")
        super().append_subtrees(tenant_id, nodes, token)


@pytest.fixture
def counting(store: Store) -> CountingLedger:
    ledger = CountingLedger(store.dsn, store.database)
    yield ledger
    ledger.close()


def _sealer(store: Store, ledger: Ledger, signer, tmp_path: Path) -> Sealer:
    return Sealer(
        store, ledger, signer, checkpoint_seconds=3600, checkpoint_dir=tmp_path / "cp", page_size=300
    )


def _stored(ledger: Ledger, tenant: str) -> dict[tuple[int, int], bytes]:
    keys = [(lv, j) for lv in range(SUBTREE_MIN_LEVEL, 12) for j in range(8)]
    return ledger.subtree_hashes(tenant, keys)


def _expected(leaves: list[bytes], size: int) -> dict[tuple[int, int], bytes]:
    return {
        (lv, j): tree_root(leaves, j << lv, (j + 1) << lv)
        for lv in range(SUBTREE_MIN_LEVEL, size.bit_length())
        for j in range(size >> lv)
    }


def _two_checkpoints(sealer: Sealer, tenant: str) -> None:
    seed(sealer.store, tenant, 300)
    seal(sealer, tenant)
    seed(sealer.store, tenant, SIZE - 300, first_offset=300)
    seal(sealer, tenant)


def test_sealer_stores_every_complete_subtree_and_proofs_match(
    store: Store, counting: CountingLedger, signer, tenant: str, tmp_path: Path
) -> None:
    sealer = _sealer(store, counting, signer, tmp_path)
    _two_checkpoints(sealer, tenant)
    leaves = counting.leaf_hashes(tenant, SIZE)
    assert _stored(counting, tenant) == _expected(leaves, SIZE)
    assert counting.subtrees_complete(tenant, SIZE)
    old, new = counting.checkpoints(tenant)
    assert (old.tree_size, new.tree_size) == (300, SIZE)

    counting.leaves_read = counting.full_reads = 0
    tree = StoredTree(counting, tenant, SIZE, new.root_hash)
    for index in (0, 1, 255, 256, 511, 512, 600, 699):
        assert tree.inclusion_proof(index, leaves[index]) == inclusion_proof(leaves, index, SIZE)
    # No proof read every leaf: the tiles [0, 256), [256, 512) and the right edge [512, 700).
    assert counting.full_reads == 0 and counting.leaves_read <= 256 + 256 + 188
    counting.leaves_read = 0
    one = StoredTree(counting, tenant, SIZE, new.root_hash)
    assert one.inclusion_proof(3) == inclusion_proof(leaves, 3, SIZE)
    assert counting.leaves_read <= 256 + (SIZE - 512)  # its tile and the right edge
    assert one.consistency_proof(300, old.root_hash) == consistency_proof(leaves, 300, SIZE)
    assert one.consistency_proof(SIZE, new.root_hash) == []
    early = StoredTree(counting, tenant, 300, old.root_hash)
    assert early.inclusion_proof(299) == inclusion_proof(leaves, 299, 300)
    many = StoredTree(counting, tenant, SIZE, new.root_hash).inclusion_proofs([2, 400])
    assert many == {i: inclusion_proof(leaves, i, SIZE) for i in (2, 400)}
    assert counting.full_reads == 0


def test_a_crash_between_leaves_and_subtrees_is_repaired_before_the_checkpoint(
    store: Store, counting: CountingLedger, signer, tenant: str, tmp_path: Path
) -> None:
    sealer = _sealer(store, counting, signer, tmp_path)
    seed(store, tenant, SIZE)
    counting.fail_subtree_writes = 1
    with pytest.raises(ConnectionError):
        while sealer.seal_tenant(tenant, store.feed_watermark(tenant)):
            pass
    assert counting.tree_position(tenant)[0] > 0  # the leaves of the failed pass are stored
    # The next round reloads from ClickHouse, writes what is missing, then signs.
    seal(sealer, tenant)
    [cp] = counting.checkpoints(tenant)
    assert cp.tree_size == SIZE
    leaves = counting.leaf_hashes(tenant, SIZE)
    assert _stored(counting, tenant) == _expected(leaves, SIZE)
    assert counting.tree_position(tenant)[0] == SIZE  # exactly once: no leaf twice


def test_log_sealed_before_0008_is_backfilled_and_proves_meanwhile(
    store: Store, counting: CountingLedger, signer, tenant: str, tmp_path: Path, insider
) -> None:
    sealer = _sealer(store, counting, signer, tmp_path)
    _two_checkpoints(sealer, tenant)
    leaves = counting.leaf_hashes(tenant, SIZE)
    # What an installation that sealed before 0008 has: leaves and checkpoints, no subtrees.
    sql(insider, f"DELETE FROM {store.database}.merkle_subtrees WHERE tenant_id = {{t:String}}", t=tenant)
    assert _stored(counting, tenant) == {} and not counting.subtrees_complete(tenant, SIZE)
    new = counting.checkpoints(tenant, limit=1, latest_first=True)[0]
    tree = StoredTree(counting, tenant, SIZE, new.root_hash)
    assert tree.inclusion_proof(5) == inclusion_proof(leaves, 5, SIZE)  # from the leaves meanwhile
    # A (re)started sealer writes every subtree once from the stored leaves.
    restarted = _sealer(store, counting, signer, tmp_path)
    assert restarted.tree_size(tenant) == SIZE
    assert _stored(counting, tenant) == _expected(leaves, SIZE)
    # Lost again and reloaded at the same size: written again, not dropped as a retried insert.
    sql(insider, f"DELETE FROM {store.database}.merkle_subtrees WHERE tenant_id = {{t:String}}", t=tenant)
    assert _sealer(store, counting, signer, tmp_path).tree_size(tenant) == SIZE
    assert _stored(counting, tenant) == _expected(leaves, SIZE)
    seed(store, tenant, 100, first_offset=SIZE)
    seal(restarted, tenant)
    assert counting.tree_position(tenant)[0] == SIZE + 100


def test_a_wrong_stored_subtree_cannot_change_a_proof(
    store: Store, counting: CountingLedger, signer, tenant: str, tmp_path: Path, insider
) -> None:
    sealer = _sealer(store, counting, signer, tmp_path)
    _two_checkpoints(sealer, tenant)
    leaves = counting.leaf_hashes(tenant, SIZE)
    new = counting.checkpoints(tenant, limit=1, latest_first=True)[0]
    db = store.database
    # A second, different value for (9, 0) (disagreeing rows are ignored), then (8, 1) rewritten.
    insider.insert(
        f"{db}.merkle_subtrees",
        [(tenant, 9, 0, b"\x01" * 32)],
        column_names=["tenant_id", "level", "node_index", "hash"],
    )
    sql(
        insider,
        f"ALTER TABLE {db}.merkle_subtrees UPDATE hash = unhex(repeat('ab', 32))"
        " WHERE tenant_id = {t:String} AND level = 8 AND node_index = 1",
        t=tenant,
    )
    counting.full_reads = 0
    tree = StoredTree(counting, tenant, SIZE, new.root_hash)
    for index in (0, 300, 650):
        assert tree.inclusion_proof(index) == inclusion_proof(leaves, index, SIZE)
    assert counting.full_reads >= 1  # the wrong hash was caught by the root check
    old = counting.checkpoint_at(tenant, 300)
    assert old is not None
    assert StoredTree(counting, tenant, SIZE, new.root_hash).consistency_proof(
        300, old.root_hash
    ) == consistency_proof(leaves, 300, SIZE)
