"""RFC 9162 tree, proofs and verification, checked against pymerkle (an independent implementation)."""

from __future__ import annotations

import pytest
from pymerkle import InmemoryTree
from pymerkle.proof import ConsistencyProof, InclusionProof

from auditstream.integrity.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    TreeLevels,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_inclusion,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

# The RFC 6962 reference inputs (certificate-transparency test data) and their roots.
RFC_INPUTS = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
              bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]  # fmt: skip
RFC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(f"event {i}".encode()) for i in range(n)]


def _pymerkle(n: int) -> InmemoryTree:
    tree = InmemoryTree(algorithm="sha256")  # security on: the 0x00 / 0x01 prefixes of RFC 9162
    for i in range(n):
        tree.append_entry(f"event {i}".encode())
    return tree


def test_hash_prefixes_match_pymerkle() -> None:
    tree = InmemoryTree(algorithm="sha256")
    assert tree.hash_buff(b"x") == leaf_hash(b"x")
    assert tree.hash_empty() == EMPTY_ROOT


def test_reference_roots() -> None:
    leaves = [leaf_hash(d) for d in RFC_INPUTS]
    assert tree_root([]) == EMPTY_ROOT
    for n in range(1, 9):
        assert tree_root(leaves[:n]).hex() == RFC_ROOTS[n - 1]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 100])
def test_roots_and_proofs_agree_with_pymerkle(n: int) -> None:
    leaves = _leaves(n)
    tree = _pymerkle(n)
    frontier = Frontier()
    for size in range(1, n + 1):
        frontier.append(leaves[size - 1])
        root = tree_root(leaves, 0, size)
        assert root == tree.get_root(size) == frontier.root()
        for index in range(size):
            path = inclusion_proof(leaves, index, size)
            theirs = tree.prove_inclusion(index + 1, size)
            assert path == theirs.path[1:]  # pymerkle's path starts with the leaf itself
            verify_inclusion(index, size, leaves[index], path, root)
            # pymerkle verifies our path too.
            InclusionProof("sha256", True, size, index + 1, theirs.rule, [leaves[index], *path]).verify(
                leaves[index], root
            )
        for old in range(1, size + 1):
            proof = consistency_proof(leaves, old, size)
            old_root = tree_root(leaves, 0, old)
            verify_consistency(old, size, old_root, root, proof)
            # pymerkle's consistency paths are its own layout (not RFC 9162's SUBPROOF), so
            # what is compared is that its verifier accepts its proof between our roots.
            theirs = tree.prove_consistency(old, size)
            ConsistencyProof("sha256", True, size, old, theirs.rule, theirs.subset, theirs.path).verify(
                old_root, root
            )


def test_frontier_resumes_from_its_hashes() -> None:
    leaves = _leaves(37)
    f = Frontier()
    f.extend(leaves[:21])
    resumed = Frontier(21, f.hashes)
    resumed.extend(leaves[21:])
    assert resumed.root() == tree_root(leaves)
    with pytest.raises(ValueError):
        Frontier(21, f.hashes[:1])


def test_wrong_proofs_fail() -> None:
    leaves = _leaves(10)
    root = tree_root(leaves)
    path = inclusion_proof(leaves, 3)
    with pytest.raises(ProofError):
        verify_inclusion(4, 10, leaves[3], path, root)  # wrong index
    with pytest.raises(ProofError):
        verify_inclusion(3, 10, leaves[4], path, root)  # wrong leaf
    with pytest.raises(ProofError):
        root_from_inclusion(3, 10, leaves[3], path[:-1])  # too short
    with pytest.raises(ProofError):
        root_from_inclusion(3, 10, leaves[3], [*path, path[0]])  # too long
    with pytest.raises(ProofError):
        verify_inclusion(10, 10, leaves[3], path, root)
    proof = consistency_proof(leaves, 4, 10)
    with pytest.raises(ProofError):
        verify_consistency(4, 10, tree_root(leaves, 0, 5), root, proof)
    with pytest.raises(ProofError):
        verify_consistency(4, 10, tree_root(leaves, 0, 4), tree_root(leaves, 0, 9), proof)
    with pytest.raises(ProofError):
        verify_consistency(4, 10, tree_root(leaves, 0, 4), root, [])
    with pytest.raises(ProofError):
        verify_consistency(5, 5, root, tree_root(leaves, 0, 5), [])


# Proof vectors of the RFC 6962 reference tree (certificate-transparency / Trillian test data).
_H = {
    "a": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "b": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "c": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    "d": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "e": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "f": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "g": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "h": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "i": "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
}


@pytest.mark.parametrize(
    ("index", "size", "path"), [(0, 8, "abc"), (5, 8, "def"), (2, 3, "i"), (1, 5, "hbd"), (0, 2, "a")]
)
def test_reference_inclusion_proofs(index: int, size: int, path: str) -> None:
    leaves = [leaf_hash(d) for d in RFC_INPUTS]
    assert [p.hex() for p in inclusion_proof(leaves, index, size)] == [_H[c] for c in path]


@pytest.mark.parametrize(("old", "new", "path"), [(1, 8, "abc"), (6, 8, "gef"), (2, 5, "bd"), (1, 1, "")])
def test_reference_consistency_proofs(old: int, new: int, path: str) -> None:
    leaves = [leaf_hash(d) for d in RFC_INPUTS]
    proof = consistency_proof(leaves, old, new)
    assert [p.hex() for p in proof] == [_H[c] for c in path]
    verify_consistency(old, new, bytes.fromhex(RFC_ROOTS[old - 1]), bytes.fromhex(RFC_ROOTS[new - 1]), proof)


def test_tree_levels_give_the_same_proofs() -> None:
    for n in range(1, 70):
        leaves = _leaves(n)
        levels = TreeLevels(leaves)
        assert levels.root() == tree_root(leaves)
        assert all(levels.inclusion_proof(i) == inclusion_proof(leaves, i) for i in range(n))
    assert TreeLevels([]).root() == EMPTY_ROOT
