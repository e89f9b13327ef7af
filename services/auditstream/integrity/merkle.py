"""RFC 9162 Merkle tree hashing, proofs and their verification (pure functions).

The tree is the one of RFC 9162 section 2.1 (the same as RFC 6962): a leaf hash is
``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``, the
root of ``n`` leaves splits at ``k``, the largest power of two smaller than ``n``.
Everything here works on leaf *hashes* (32 bytes), never on the leaf data, so the
same code serves the sealer (which hashes events), the API (which reads stored leaf
hashes) and the verifier.

``Frontier`` is the compact form of a growing tree: the roots of its perfect
subtrees, largest first (at most log2 n of them). Appending a leaf merges equal
sizes, so the root of every prefix is available without keeping all leaves in memory.

Proofs without every leaf: every hash a proof holds is the root of a range of leaves
that splits into complete, aligned subtrees (``subtree_parts``). ``inclusion_ranges`` /
``consistency_ranges`` name those ranges, and ``inclusion_proof_from`` /
``consistency_proof_from`` build the same proofs as ``inclusion_proof`` /
``consistency_proof`` from a callback giving the hash of a range, so a stored log can
answer from stored subtree hashes in O(log n) reads (as Go's sumdb/tlog "stored hashes").
"""

from __future__ import annotations

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "ProofError",
    "SubtreeHash",
    "TreeLevels",
    "consistency_proof",
    "consistency_proof_from",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_proof_from",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "root_of_parts",
    "subtree_parts",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

import hashlib
from collections.abc import Callable, Sequence

# MTH(D[start:end]) of the log, for the ranges ``inclusion_ranges``/``consistency_ranges`` name.
SubtreeHash = Callable[[int, int], bytes]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) in RFC 9162 2.1.1


class ProofError(ValueError):
    """A proof does not verify, or its parameters are impossible."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The perfect-subtree roots of a tree of ``size`` leaves, left (largest) to right."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} perfect subtrees")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        """Add one leaf; ``on_node(level, index, hash)`` hears of every subtree it completes.

        The completed subtree at ``level`` (height, leaves are 0) and ``index`` covers the
        leaves ``[index * 2**level, (index + 1) * 2**level)``; each is reported once, when
        its last leaf arrives (what the sealer stores so proofs need no other leaves).
        """
        h = leaf
        size = self.size
        level = 0
        # Each trailing 1 bit of size is a perfect subtree of the same height as h: merge.
        while size & 1:
            h = node_hash(self.hashes.pop(), h)
            size >>= 1
            level += 1
            if on_node is not None:
                on_node(level, ((self.size + 1) >> level) - 1, h)
        self.hashes.append(h)
        self.size += 1

    def extend(
        self, leaves: Sequence[bytes], on_node: Callable[[int, int, bytes], None] | None = None
    ) -> None:
        for leaf in leaves:
            self.append(leaf, on_node)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)


class TreeLevels:
    """Every node of a tree of ``len(leaves)`` leaves, level by level: O(n) to build, O(log n) a proof.

    Level ``l`` holds the roots of the aligned ranges ``[j*2**l, (j+1)*2**l)`` clipped
    to the size; a range with no right half is its left half (promoted), which is
    exactly RFC 9162's split at the largest power of two. For many proofs against one
    tree (an export's trailer) instead of ``inclusion_proof``'s O(n) each.
    """

    __slots__ = ("levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        levels = [list(leaves)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2:
                above.append(below[-1])
            levels.append(above)
        self.levels = levels

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def root(self) -> bytes:
        return self.levels[-1][0] if self.levels[0] else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise ProofError(f"leaf index {index} is not in a tree of size {self.size}")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


def tree_root(leaves: Sequence[bytes], start: int = 0, end: int | None = None) -> bytes:
    """MTH(D[start:end]) over leaf hashes, in O(end - start) hashes and O(log n) memory."""
    end = len(leaves) if end is None else end
    if not 0 <= start <= end <= len(leaves):
        raise ValueError("range out of bounds")
    f = Frontier()
    for i in range(start, end):
        f.append(leaves[i])
    return f.root()


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1, bottom-up."""
    size = len(leaves) if size is None else size
    if not 0 <= index < size <= len(leaves):
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(tree_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(tree_root(leaves, lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int | None = None) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 2.1.4.1."""
    new_size = len(leaves) if new_size is None else new_size
    if not 0 <= old_size <= new_size <= len(leaves):
        raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    path: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                path.append(tree_root(leaves, lo, hi))
            break
        k = _split(n)
        if m <= k:
            path.append(tree_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(tree_root(leaves, lo, lo + k))
            lo += k
            m -= k
            complete = False
    path.reverse()
    return path


def subtree_parts(start: int, end: int) -> list[tuple[int, int]]:
    """The complete aligned subtrees MTH(D[start:end]) is built of, largest (leftmost) first.

    RFC 9162 splits a range at the largest power of two below its length; the left part
    of every split is complete. For the ranges proofs use (``start`` a multiple of a power
    of two at least ``end - start``, as every node of the tree is) each part is an aligned
    subtree ``[j * 2**h, (j + 1) * 2**h)``, so a store of such subtrees can answer it.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    parts = []
    while end - start > 1 and (end - start) & (end - start - 1):
        k = _split(end - start)
        parts.append((start, start + k))
        start += k
    parts.append((start, end))
    return parts


def root_of_parts(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its ``subtree_parts``, in their order."""
    if not hashes:
        raise ValueError("no parts")
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make up PATH(index, D[0:size]), in proof order (bottom-up)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make up PROOF(old_size, D[0:new_size]), in proof order."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                ranges.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


def inclusion_proof_from(subtree_hash: SubtreeHash, index: int, size: int) -> list[bytes]:
    """``inclusion_proof`` of a tree known only through ``subtree_hash(start, end)``."""
    return [subtree_hash(a, b) for a, b in inclusion_ranges(index, size)]


def consistency_proof_from(subtree_hash: SubtreeHash, old_size: int, new_size: int) -> list[bytes]:
    """``consistency_proof`` of a tree known only through ``subtree_hash(start, end)``."""
    return [subtree_hash(a, b) for a, b in consistency_ranges(old_size, new_size)]


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root that ``path`` leads to from ``leaf`` (RFC 9162 2.1.3.2); ProofError if malformed."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless ``path`` proves ``leaf`` at ``index`` in the tree ``(size, root)``."""
    if root_from_inclusion(index, size, leaf, path) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> None:
    """Raise ProofError unless ``path`` proves tree (old) is a prefix of tree (new) (RFC 9162 2.1.4.2)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"size {old_size} is larger than size {new_size}")
    if old_size == new_size:
        if path:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return
    if old_size == 0:
        if path:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not path:
        raise ProofError("consistency proof is empty")
    nodes = list(path)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")
