"""Proofs from the stored log in O(log n) reads: subtree hashes (0008) plus at most two tiles of leaves.

A proof's hashes are roots of ranges that split into complete aligned subtrees
(``merkle.subtree_parts``). Parts of height ``SUBTREE_MIN_LEVEL`` and up are read from
``merkle_subtrees`` in one lookup; lower parts lie in the 256-leaf tile of the proved leaf
or at the tree's right edge and are recomputed from those leaves. A part whose stored
hash is missing (a log sealed before 0008 and not yet backfilled by the sealer, or a
pass that crashed between its two inserts) is recomputed from its own leaves.

Every proof is checked against the signed root before it is returned. If it does not
lead there (a stored leaf or subtree hash was changed), the answer is the one computed
from every stored leaf, as before this module existed (``merkle.inclusion_proof``), so
a damaged log gives the same answers it always did, only slower.
"""

from __future__ import annotations

__all__ = ["StoredTree"]

from collections.abc import Iterable, Sequence

from auditstream.integrity.ledger import SUBTREE_MIN_LEVEL, Ledger
from auditstream.integrity.merkle import (
    ProofError,
    TreeLevels,
    consistency_proof,
    consistency_ranges,
    inclusion_ranges,
    root_from_inclusion,
    root_of_parts,
    subtree_parts,
    tree_root,
    verify_consistency,
)


def _level(start: int, end: int) -> int:
    return (end - start).bit_length() - 1


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class StoredTree:
    """The tree of one checkpoint (``size``, signed ``root``) of a tenant, as stored."""

    def __init__(self, ledger: Ledger, tenant_id: str, size: int, root: bytes) -> None:
        self.ledger = ledger
        self.tenant_id = tenant_id
        self.size = size
        self.root = root
        self._parts: dict[tuple[int, int], bytes] = {}  # (start, end) of a complete subtree -> hash
        self._leaves: dict[int, bytes] = {}
        self._full: TreeLevels | None = None  # every leaf, once a proof had to fall back

    # --- reads -----------------------------------------------------------------------

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Read what the roots of ``ranges`` need: one subtree lookup, then the leaves missing."""
        wanted = {p for a, b in ranges for p in subtree_parts(a, b) if p not in self._parts}
        stored = [p for p in wanted if _level(*p) >= SUBTREE_MIN_LEVEL]
        keys = [(_level(a, b), a >> _level(a, b)) for a, b in stored]
        found = self.ledger.subtree_hashes(self.tenant_id, keys) if keys else {}
        for (a, b), key in zip(stored, keys, strict=True):
            if key in found:
                self._parts[(a, b)] = found[key]
        from_leaves = [p for p in wanted if p not in self._parts]
        self._read_leaves(from_leaves)
        for a, b in from_leaves:
            self._parts[(a, b)] = tree_root([self._leaves[i] for i in range(a, b)])

    def _read_leaves(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Read the leaves of ``ranges`` not read yet, one query per run of missing indexes."""
        missing = []
        for a, b in _merge(ranges):
            run = None
            for i in range(a, b):
                if i in self._leaves:
                    if run is not None:
                        missing.append((run, i))
                        run = None
                elif run is None:
                    run = i
            if run is not None:
                missing.append((run, b))
        for a, b in missing:
            for i, h in enumerate(self.ledger.leaf_hash_range(self.tenant_id, a, b), start=a):
                self._leaves[i] = h

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range a proof of this tree uses."""
        parts = subtree_parts(start, end)
        if any(p not in self._parts for p in parts):
            self.prefetch([(start, end)])
        return root_of_parts([self._parts[p] for p in parts])

    def leaf(self, index: int) -> bytes:
        if index not in self._leaves:
            self._read_leaves([(index, index + 1)])
        return self._leaves[index]

    def _all_leaves(self) -> TreeLevels:
        if self._full is None:
            self._full = TreeLevels(self.ledger.leaf_hashes(self.tenant_id, self.size))
        return self._full

    # --- proofs ------------------------------------------------------------------------

    def inclusion_proof(self, index: int, leaf: bytes | None = None) -> list[bytes]:
        """PATH(index, tree): from stored hashes if it proves ``leaf`` (default: the stored one)."""
        ranges = inclusion_ranges(index, self.size)
        self.prefetch(ranges)
        path = [self.subtree_hash(a, b) for a, b in ranges]
        leaf = self.leaf(index) if leaf is None else leaf
        if root_from_inclusion(index, self.size, leaf, path) == self.root:
            return path
        return self._all_leaves().inclusion_proof(index)

    def inclusion_proofs(self, indexes: Sequence[int]) -> dict[int, list[bytes]]:
        """Many proofs against this tree (an export's trailer) with shared reads.

        Past one proved leaf per 256 the shared reads would cover most leaves anyway, so
        every leaf is read once instead (``TreeLevels``, as before).
        """
        if len(indexes) << SUBTREE_MIN_LEVEL >= self.size:
            levels = self._all_leaves()
            return {i: levels.inclusion_proof(i) for i in indexes}
        wanted = [r for i in indexes for r in inclusion_ranges(i, self.size)]
        self.prefetch(wanted)
        self._read_leaves((i, i + 1) for i in indexes)
        return {i: self.inclusion_proof(i) for i in indexes}

    def consistency_proof(self, old_size: int, old_root: bytes) -> list[bytes]:
        """PROOF(old_size, tree): from stored hashes if it proves ``old_root`` to this root."""
        ranges = consistency_ranges(old_size, self.size)
        if not ranges:
            return []  # from the empty tree or to the same size: nothing to read
        self.prefetch(ranges)
        proof = [self.subtree_hash(a, b) for a, b in ranges]
        try:
            verify_consistency(old_size, self.size, old_root, self.root, proof)
            return proof
        except ProofError:
            return consistency_proof(self.ledger.leaf_hashes(self.tenant_id, self.size), old_size, self.size)
