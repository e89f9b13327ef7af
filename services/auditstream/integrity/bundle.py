"""The proof trailer of an export: what lets a recipient verify the file alone.

``/v1/export?format=ndjson&include_proof=true`` ends with one more line,
``{"auditstream_proof": {...}}``: the newest signed checkpoint (its note), the
verifier key the server uses (to compare with one obtained elsewhere, never to trust
alone), and for every exported event that the checkpoint covers its leaf index and
audit path (``StoredTree.inclusion_proofs``: shared reads of stored subtree hashes, or
every leaf once when the export proves more than one leaf in 256).
``auditstream verify --export FILE --key KEY`` reads it; events sealed
after the checkpoint have no proof and are reported as not checked.
"""

from __future__ import annotations

__all__ = ["TRAILER_KEY", "proof_trailer"]

import base64

import orjson

from auditstream.integrity.canonical import LEAF_FORMAT
from auditstream.integrity.ledger import LeavesMissing, Ledger
from auditstream.integrity.stored_tree import StoredTree
from auditstream.store.filters import EventFilter, build_where

TRAILER_KEY = "auditstream_proof"


def proof_trailer(ledger: Ledger, f: EventFilter, *, key: str | None) -> bytes:
    """The trailer line (with its newline) for the events of ``f``."""
    latest = ledger.checkpoints(f.tenant_id, limit=1, latest_first=True)
    body: dict[str, object] = {
        "checkpoint": None,
        "tree_size": 0,
        "key": key,
        "leaf_format": LEAF_FORMAT,
        "leaves": [],
    }
    if latest:
        cp = latest[0]
        where, params = build_where(f)
        matching = ledger.leaves_matching(f.tenant_id, cp.tree_size, where, params)
        try:
            tree = StoredTree(ledger, f.tenant_id, cp.tree_size, cp.root_hash)
            paths = tree.inclusion_proofs([index for index, _ in matching])
        except LeavesMissing as exc:
            # The events are already sent: say why there are no proofs rather than cut the file.
            body.update(checkpoint=cp.note, tree_size=cp.tree_size, error=f"log damaged: {exc}")
            return orjson.dumps({TRAILER_KEY: body}) + b"\n"
        body.update(
            checkpoint=cp.note,
            tree_size=cp.tree_size,
            leaves=[
                {
                    "event_id": str(event_id),
                    "leaf_index": index,
                    "audit_path": [base64.b64encode(h).decode() for h in paths[index]],
                }
                for index, event_id in matching
            ],
        )
    return orjson.dumps({TRAILER_KEY: body}) + b"\n"
