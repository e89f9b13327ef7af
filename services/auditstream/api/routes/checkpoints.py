"""Tamper evidence over HTTP: signed checkpoints, the public key, inclusion and consistency proofs.

Every answer can be checked without trusting this server: notes verify with the
public key (C2SP signed-note), proofs with any RFC 9162 implementation. Hashes and
audit paths are base64 (as in checkpoints). Proofs are built from the stored subtree
hashes and at most two 256-leaf tiles (``integrity.stored_tree``: O(log n) reads), and
checked against the signed root before they are served.

The ledger (its own per-thread clients on the store's DSN) is made on first use and
kept on the app, like the store the app was given.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from auditstream.api.deps import ReaderKey, SettingsDep, StoreDep, TenantDep
from auditstream.api.errors import ApiError, BadRequest, NotFound
from auditstream.api.routes.events import json_response
from auditstream.api.schemas import ERROR_RESPONSES
from auditstream.integrity.ledger import CheckpointRow, LeavesMissing, Ledger
from auditstream.integrity.service import origin, public_key, shared_ledger
from auditstream.integrity.stored_tree import StoredTree

__all__ = ["LedgerDep", "router"]

router = APIRouter(prefix="/v1", tags=["integrity"])


async def get_ledger(request: Request, store: StoreDep) -> Ledger:
    return shared_ledger(request.app.state, store)


LedgerDep = Annotated[Ledger, Depends(get_ledger)]


class LogDamaged(ApiError):
    """409: a proof cannot be computed because stored leaves are gone (tampering or a bad restore)."""

    status_code = 409
    code = "log_damaged"


def _damaged(exc: LeavesMissing, tenant: str) -> LogDamaged:
    return LogDamaged(f"{exc}; run 'auditstream verify --tenant {tenant}' to see what changed")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _checkpoint(row: CheckpointRow) -> dict[str, Any]:
    return {
        "tree_size": row.tree_size,
        "root_hash": _b64(row.root_hash),
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        "note": row.note,
    }


def _pick(ledger: Ledger, tenant: str, size: int | None, field: str) -> CheckpointRow:
    if size is None:
        latest = ledger.checkpoints(tenant, limit=1, latest_first=True)
        if not latest:
            raise NotFound("no checkpoint has been signed for this tenant yet")
        return latest[0]
    row = ledger.checkpoint_at(tenant, size)
    if row is None:
        raise BadRequest(f"{field}: no checkpoint with tree size {size}", field=field)
    return row


@router.get("/checkpoints", responses=ERROR_RESPONSES, summary="Signed checkpoints, newest first")
def list_checkpoints(
    key: ReaderKey,
    tenant: TenantDep,
    ledger: LedgerDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> Response:
    rows = ledger.checkpoints(tenant, limit=limit, latest_first=True)
    verifier = public_key(settings)
    return json_response(
        {
            "origin": origin(settings, tenant),
            "key": str(verifier) if verifier else None,
            "latest": _checkpoint(rows[0]) if rows else None,
            "checkpoints": [_checkpoint(r) for r in rows],
        }
    )


@router.get("/checkpoints/key", responses=ERROR_RESPONSES, summary="The public key checkpoints verify with")
def checkpoint_key(key: ReaderKey, tenant: TenantDep, settings: SettingsDep) -> Response:
    verifier = public_key(settings)
    if verifier is None:
        raise NotFound("no checkpoint key exists yet (the sealer creates it on its first start)")
    return json_response(
        {
            "key": str(verifier),
            "name": verifier.name,
            "key_id": verifier.key_id.hex(),
            "algorithm": "ed25519",
            "origin": origin(settings, tenant),
        }
    )


@router.get(
    "/checkpoints/consistency", responses=ERROR_RESPONSES, summary="Proof that one checkpoint extends another"
)
def consistency(
    key: ReaderKey,
    tenant: TenantDep,
    ledger: LedgerDep,
    from_size: Annotated[int, Query(alias="from", ge=0, description="Tree size of the older checkpoint.")],
    to_size: Annotated[
        int | None, Query(alias="to", ge=1, description="Newer checkpoint; default latest.")
    ] = None,
) -> Response:
    new = _pick(ledger, tenant, to_size, "to")
    if from_size > new.tree_size:
        raise BadRequest("from: must not be larger than to", field="from")
    old = _pick(ledger, tenant, from_size, "from") if from_size else None
    tree = StoredTree(ledger, tenant, new.tree_size, new.root_hash)
    try:
        proof = tree.consistency_proof(from_size, old.root_hash) if old else []
    except LeavesMissing as exc:
        raise _damaged(exc, tenant) from None
    return json_response(
        {
            "from": _checkpoint(old) if old else {"tree_size": 0},
            "to": _checkpoint(new),
            "proof": [_b64(h) for h in proof],
        }
    )


@router.get("/events/{event_id}/proof", responses=ERROR_RESPONSES, summary="Inclusion proof of one event")
def event_proof(
    event_id: str,
    key: ReaderKey,
    tenant: TenantDep,
    ledger: LedgerDep,
    store: StoreDep,
    checkpoint: Annotated[
        int | None, Query(ge=1, description="Tree size of the checkpoint; default latest.")
    ] = None,
) -> Response:
    try:
        eid = uuid.UUID(event_id)
    except ValueError:
        raise BadRequest("event_id: not a UUID", field="event_id") from None
    leaf = ledger.leaf_of(tenant, eid)
    if leaf is None:
        if store.get_event(tenant, eid) is None:
            raise NotFound("no such event")
        raise NotFound("the event is stored but not sealed yet; try again after the next checkpoint")
    cp = _pick(ledger, tenant, checkpoint, "checkpoint")
    if leaf.leaf_index >= cp.tree_size:
        raise BadRequest(
            f"checkpoint: the event is leaf {leaf.leaf_index}, not in checkpoint {cp.tree_size};"
            " use a later one",
            field="checkpoint",
        )
    try:
        path = StoredTree(ledger, tenant, cp.tree_size, cp.root_hash).inclusion_proof(
            leaf.leaf_index, leaf.leaf_hash
        )
    except LeavesMissing as exc:
        raise _damaged(exc, tenant) from None
    return json_response(
        {
            "event_id": str(eid),
            "leaf_index": leaf.leaf_index,
            "leaf_hash": _b64(leaf.leaf_hash),
            "leaf_format": leaf.leaf_format,
            "tree_size": cp.tree_size,
            "audit_path": [_b64(h) for h in path],
            "checkpoint": _checkpoint(cp),
        }
    )
