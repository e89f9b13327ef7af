"""Proofs from a subtree-hash callback (what stored subtree hashes answer) equal the full-tree ones."""

from __future__ import annotations

import random

import pytest
from pymerkle import InmemoryTree

from auditstream.integrity.merkle import (
    Frontier,
    TreeLevels,
    consistency_proof,
    consistency_proof_from,
    consistency_ranges,
    inclusion_proof,
    inclusion_proof_from,
    inclusion_ranges,
    leaf_hash,
    root_of_parts,
    subtree_parts,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from tests.integrity.test_merkle import _H, RFC_INPUTS, RFC_ROOTS


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(f"event {i}".encode()) for i in range(n)]


class PerfectOnly:
    """A callback that only knows complete aligned subtrees, like merkle_subtrees + leaf tiles."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.asked: list[tuple[int, int]] = []

    def perfect(self, start: int, end: int) -> bytes:
        width = end - start
        assert width & (width - 1) == 0 and start % width == 0, (start, end)
        self.asked.append((start, end))
        return tree_root(self.leaves, start, end)

    def __call__(self, start: int, end: int) -> bytes:
        return root_of_parts([self.perfect(a, b) for a, b in subtree_parts(start, end)])


def test_subtree_parts_are_aligned_and_rebuild_the_root() -> None:
    leaves = _leaves(300)
    for start, end in [(0, 300), (256, 300), (0, 1), (288, 299), (128, 256), (4, 7)]:
        parts = subtree_parts(start, end)
        assert parts[0][0] == start and parts[-1][1] == end
        assert all(a == b_prev for (a, _), (_, b_prev) in zip(parts[1:], parts, strict=False))
        assert root_of_parts([tree_root(leaves, a, b) for a, b in parts]) == tree_root(leaves, start, end)
    with pytest.raises(ValueError):
        subtree_parts(5, 5)


def test_all_sizes_to_300_inclusion_and_consistency_are_byte_identical() -> None:
    rng = random.Random(9162)
    leaves = _leaves(300)
    for size in range(1, 301):
        levels = TreeLevels(leaves[:size])
        source = PerfectOnly(leaves)
        indexes = {0, size - 1, *(rng.randrange(size) for _ in range(4))}
        for index in indexes:
            ours = inclusion_proof_from(source, index, size)
            assert ours == levels.inclusion_proof(index)
            assert len(inclusion_ranges(index, size)) == len(ours)
        for index in list(indexes)[:2]:
            assert inclusion_proof_from(source, index, size) == inclusion_proof(leaves, index, size)
        for old in {1, size, rng.randrange(1, size + 1), rng.randrange(1, size + 1)}:
            proof = consistency_proof_from(source, old, size)
            assert proof == consistency_proof(leaves, old, size)
            verify_consistency(old, size, tree_root(leaves, 0, old), levels.root(), proof)
        assert consistency_proof_from(source, 0, size) == []
        # O(log n) subtrees per proof: at most two parts per path element.
        source.asked.clear()
        inclusion_proof_from(source, size // 2, size)
        assert len(source.asked) <= 2 * max(1, size.bit_length())


def test_against_pymerkle_and_the_rfc_vectors() -> None:
    leaves = _leaves(100)
    tree = InmemoryTree(algorithm="sha256")
    for i in range(100):
        tree.append_entry(f"event {i}".encode())
    source = PerfectOnly(leaves)
    for size in (1, 7, 64, 100):
        for index in (0, size // 3, size - 1):
            path = inclusion_proof_from(source, index, size)
            assert path == tree.prove_inclusion(index + 1, size).path[1:]
            verify_inclusion(index, size, leaves[index], path, tree.get_root(size))
    rfc = [leaf_hash(d) for d in RFC_INPUTS]
    rfc_source = PerfectOnly(rfc)
    for index, size, names in [(0, 8, "abc"), (5, 8, "def"), (2, 3, "i"), (1, 5, "hbd"), (0, 2, "a")]:
        assert [p.hex() for p in inclusion_proof_from(rfc_source, index, size)] == [_H[c] for c in names]
    for old, new, names in [(1, 8, "abc"), (6, 8, "gef"), (2, 5, "bd"), (1, 1, "")]:
        proof = consistency_proof_from(rfc_source, old, new)
        assert [p.hex() for p in proof] == [_H[c] for c in names]
        verify_consistency(
            old, new, bytes.fromhex(RFC_ROOTS[old - 1]), bytes.fromhex(RFC_ROOTS[new - 1]), proof
        )


def test_consistency_ranges_of_impossible_sizes() -> None:
    from auditstream.integrity.merkle import ProofError

    with pytest.raises(ProofError):
        consistency_ranges(5, 4)
    with pytest.raises(ProofError):
        inclusion_ranges(4, 4)


def test_frontier_reports_every_completed_subtree_once() -> None:
    leaves = _leaves(300)
    seen: list[tuple[int, int, bytes]] = []
    f = Frontier()
    f.extend(leaves, lambda level, index, h: seen.append((level, index, h)))
    assert f.root() == tree_root(leaves)
    expected = {(lv, j) for lv in range(1, 9) for j in range(300 >> lv)}
    assert [(lv, j) for lv, j, _ in seen] and {(lv, j) for lv, j, _ in seen} == expected
    assert len(seen) == len(expected)
    for level, index, h in seen:
        assert h == tree_root(leaves, index << level, (index + 1) << level)
