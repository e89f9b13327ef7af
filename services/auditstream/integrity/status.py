"""One stored event's integrity state, as the viewer shows it: verified, not sealed yet, or failed.

Computed server-side from what is stored, with the same functions as ``verify``: the
leaf is recomputed from the stored row (``canonical.leaf_hash_of_row``), the latest
checkpoint covering its leaf index must carry a valid signature by ``verifier`` for the
tenant's origin (``note.open_note``), and the recomputed leaf must reach that
checkpoint's root through the audit path built from the stored subtree hashes
(``stored_tree.StoredTree``, O(log n) reads; from every leaf when those do not prove
the stored leaf) and ``verify_inclusion``. So an event changed in ClickHouse
after it was sealed fails here even though its leaf row is untouched.

This is a convenience for the analyst reading the log on this server; independent
proof is ``auditstream verify`` with a key obtained elsewhere.
"""

from __future__ import annotations

__all__ = ["EventIntegrity", "event_integrity"]

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from auditstream.integrity.canonical import UnknownLeafFormat, check_leaf_format, leaf_hash_of_row
from auditstream.integrity.ledger import LeavesMissing, Ledger
from auditstream.integrity.merkle import ProofError, verify_inclusion
from auditstream.integrity.note import Checkpoint, NoteError, Verifier, open_note
from auditstream.integrity.stored_tree import StoredTree

State = Literal["verified", "unsealed", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class EventIntegrity:
    state: State
    message: str
    leaf_index: int | None = None
    tree_size: int | None = None  # of the checkpoint checked against

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "message": self.message,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
        }


def event_integrity(
    ledger: Ledger, verifier: Verifier | None, origin: str, tenant_id: str, row: Mapping[str, Any]
) -> EventIntegrity:
    """The integrity state of the stored ``row`` (a ``Store.get_event`` row) of ``tenant_id``."""
    leaf = ledger.leaf_of(tenant_id, row["event_id"])
    if leaf is None:
        return EventIntegrity("unsealed", "not sealed yet")
    latest = ledger.checkpoints(tenant_id, limit=1, latest_first=True)
    if not latest or latest[0].tree_size <= leaf.leaf_index:
        return EventIntegrity("unsealed", "not sealed yet (no checkpoint covers it yet)", leaf.leaf_index)
    cp_row = latest[0]
    size = cp_row.tree_size
    if verifier is None:
        return EventIntegrity("unknown", "cannot check: this server has no checkpoint key", leaf.leaf_index)
    try:
        cp = Checkpoint.parse(open_note(cp_row.note, verifier))
    except NoteError as exc:
        return EventIntegrity("failed", f"checkpoint {size} does not verify: {exc}", leaf.leaf_index, size)
    try:
        check_leaf_format(leaf.leaf_format, f"leaf {leaf.leaf_index}")
        check_leaf_format(cp.extension("leaf-format") or 1, f"checkpoint {size}")
    except UnknownLeafFormat as exc:
        return EventIntegrity("unknown", f"cannot check: {exc}", leaf.leaf_index, size)
    if cp.origin != origin or cp.size != size:
        return EventIntegrity(
            "failed", f"checkpoint {size} is not this tenant's (origin {cp.origin!r})", leaf.leaf_index, size
        )
    try:
        path = StoredTree(ledger, tenant_id, size, cp.root).inclusion_proof(leaf.leaf_index, leaf.leaf_hash)
    except LeavesMissing as exc:
        return EventIntegrity("failed", f"does not match checkpoint {size}: {exc}", leaf.leaf_index, size)
    try:
        verify_inclusion(leaf.leaf_index, size, leaf_hash_of_row(row), path, cp.root)
    except ProofError:
        changed = (
            " (the stored event was changed after it was sealed)"
            if (leaf_hash_of_row(row) != leaf.leaf_hash)
            else " (the stored leaves were changed)"
        )
        return EventIntegrity("failed", f"does not match checkpoint {size}{changed}", leaf.leaf_index, size)
    return EventIntegrity(
        "verified", f"included in checkpoint {size}, verified (leaf {leaf.leaf_index})", leaf.leaf_index, size
    )
