"""Verification of a tenant's Merkle log: online (against the store) and offline (an export file).

Online (``verify_tenant``) trusts nothing in the database but the signatures:

1. every stored checkpoint must carry a valid signature by the given key, name the
   tenant's origin and chain to the one before it (``prev`` = SHA-256 of that note);
2. the stored leaf hashes must give every signed root (this authenticates the leaves
   table: a leaf changed, removed or added is a root that no longer matches);
3. every stored event is hashed again (canonical JSON of ``row_to_event``) and compared
   with its leaf. A mismatch is a changed event, or a reordered one when putting back
   the Kafka position recorded with the leaf restores the hash; a leaf whose event is
   gone is a missing event, or "expired by retention" when the leaf's ``occurred_at``
   is older than the retention; an event without a leaf inside the sealed range is an
   inserted one.

Offline (``verify_export``) needs only an export, a checkpoint note and the public key.

``Report.exit_code``: 0 verified, 1 tampering found, 2 could not check.
"""

from __future__ import annotations

__all__ = ["TAMPERING", "Finding", "Kind", "Report", "verify_export", "verify_tenant"]

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from auditstream.integrity.canonical import (
    LEAF_FORMATS,
    UnknownLeafFormat,
    check_leaf_format,
    leaf_hash_of_event,
    leaf_hash_of_row,
)
from auditstream.integrity.ledger import CheckpointRow, Ledger
from auditstream.integrity.merkle import Frontier, ProofError, tree_root, verify_inclusion
from auditstream.integrity.note import Checkpoint, NoteError, SignatureError, Verifier, note_hash, open_note

MAX_LISTED = 50  # findings of one kind listed one by one; beyond, a count


class Kind(StrEnum):
    CHANGED = "changed"
    MISSING = "missing"
    INSERTED = "inserted"
    REORDERED = "reordered"
    DUPLICATE = "duplicate"
    LEAVES_CHANGED = "leaves_changed"
    LEAVES_MISSING = "leaves_missing"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    CHAIN_BROKEN = "chain_broken"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    UNSEALED = "unsealed"
    UNCHECKED = "unchecked"


TAMPERING = frozenset(
    {
        Kind.CHANGED,
        Kind.MISSING,
        Kind.INSERTED,
        Kind.REORDERED,
        Kind.DUPLICATE,
        Kind.LEAVES_CHANGED,
        Kind.LEAVES_MISSING,
        Kind.CHECKPOINT_MISMATCH,
        Kind.CHAIN_BROKEN,
        Kind.BAD_SIGNATURE,
    }
)


@dataclass
class Finding:
    kind: Kind
    message: str
    leaf_index: int | None = None
    event_id: str | None = None
    checkpoint_size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None} | {"kind": self.kind.value}


@dataclass
class Report:
    tenant: str | None
    findings: list[Finding] = field(default_factory=list)
    checkpoints: int = 0
    tree_size: int = 0
    events: int = 0
    cannot_check: str | None = None

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def of(self, kind: Kind) -> list[Finding]:
        return [f for f in self.findings if f.kind is kind]

    @property
    def tampered(self) -> bool:
        return any(f.kind in TAMPERING for f in self.findings)

    @property
    def exit_code(self) -> int:
        if self.tampered:
            return 1
        return 2 if self.cannot_check else 0

    def lines(self) -> list[str]:
        out = []
        counts: dict[Kind, int] = {}
        for f in self.findings:
            counts[f.kind] = counts.get(f.kind, 0) + 1
            if counts[f.kind] <= MAX_LISTED:
                tag = "TAMPERED" if f.kind in TAMPERING else "note"
                out.append(f"{tag} {f.kind.value}: {f.message}")
        for kind, n in counts.items():
            if n > MAX_LISTED:
                out.append(f"... and {n - MAX_LISTED} more {kind.value}")
        if self.cannot_check:
            out.append(f"could not check: {self.cannot_check}")
        verdict = (
            "TAMPERING FOUND" if self.tampered else ("NOT VERIFIED" if self.cannot_check else "VERIFIED")
        )
        who = f"tenant {self.tenant}: " if self.tenant else ""
        out.append(
            f"{verdict}: {who}{self.events} events, tree size {self.tree_size},"
            f" {self.checkpoints} checkpoints"
        )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "verified": self.exit_code == 0,
            "tampered": self.tampered,
            "cannot_check": self.cannot_check,
            "checkpoints": self.checkpoints,
            "tree_size": self.tree_size,
            "events": self.events,
            "findings": [f.as_dict() for f in self.findings],
        }


def _ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def check_chain(
    rows: Sequence[CheckpointRow], verifier: Verifier, origin: str, report: Report
) -> list[Checkpoint]:
    """Signature, origin and chain of stored checkpoints; the ones that verify, in order."""
    trusted: list[Checkpoint] = []
    previous: str | None = None
    for row in rows:
        where = f"checkpoint at tree size {row.tree_size} ({row.created_at:%Y-%m-%d %H:%M:%S}Z)"
        try:
            cp = Checkpoint.parse(open_note(row.note, verifier))
        except SignatureError as exc:
            report.add(Finding(Kind.BAD_SIGNATURE, f"{where}: {exc}", checkpoint_size=row.tree_size))
            previous = row.note
            continue
        except NoteError as exc:
            report.add(
                Finding(Kind.BAD_SIGNATURE, f"{where}: malformed note: {exc}", checkpoint_size=row.tree_size)
            )
            previous = row.note
            continue
        if cp.origin != origin:
            report.add(
                Finding(
                    Kind.BAD_SIGNATURE,
                    f"{where}: origin {cp.origin!r}, expected {origin!r}",
                    checkpoint_size=cp.size,
                )
            )
            continue
        if cp.size != row.tree_size or cp.root != row.root_hash:
            report.add(
                Finding(
                    Kind.CHECKPOINT_MISMATCH,
                    f"{where}: the table's size/root columns differ from the signed note",
                    checkpoint_size=cp.size,
                )
            )
        prev = cp.extension("prev")
        expected = None if previous is None else base64.b64encode(note_hash(previous)).decode()
        if prev != expected:
            what = (
                "names no previous checkpoint" if prev is None else "does not name the checkpoint before it"
            )
            if previous is None:
                what = "names a previous checkpoint that is not stored (deleted?)"
            report.add(Finding(Kind.CHAIN_BROKEN, f"{where}: {what}", checkpoint_size=cp.size))
        if trusted and cp.size < trusted[-1].size:
            report.add(
                Finding(
                    Kind.CHAIN_BROKEN,
                    f"{where}: the tree shrank from {trusted[-1].size}",
                    checkpoint_size=cp.size,
                )
            )
        trusted.append(cp)
        previous = row.note
    return trusted


def verify_tenant(
    ledger: Ledger,
    tenant_id: str,
    verifier: Verifier,
    *,
    origin: str,
    retention_days: int,
    now: datetime | None = None,
    table: str = "audit_events",
    since: datetime | None = None,
    copies: Sequence[str] = (),
) -> Report:
    """Recompute the tenant's log from what is stored and check it against every checkpoint.

    ``copies`` are signed notes kept outside the database (the daily WORM files): each
    must be in the ``checkpoints`` table unchanged, and its root must match the stored
    leaves too. That catches a history rewritten and re-signed by someone holding the key.

    ``since`` skips re-hashing the events that the last checkpoint signed before it
    already covered (the expensive part); signatures, the chain, every root and the
    presence of every event are still checked.
    """
    now = now or datetime.now(UTC)
    report = Report(tenant_id)
    rows = ledger.checkpoints(tenant_id)
    report.checkpoints = len(rows)
    if not rows:
        report.cannot_check = f"no checkpoint is stored for tenant {tenant_id}"
        return report
    trusted = check_chain(rows, verifier, origin, report)
    try:
        for cp in trusted:
            _checkpoint_leaf_format(cp)
    except UnknownLeafFormat as exc:
        report.cannot_check = str(exc)
        return report
    rehash_from = 0
    if since is not None:
        signed_before = {r.tree_size for r in rows if r.created_at < since}
        rehash_from = max((cp.size for cp in trusted if cp.size in signed_before), default=0)

    # --- the leaves table against the signed roots --------------------------------
    size, sealed_upto = ledger.tree_position(tenant_id)
    report.tree_size = size
    hashes: list[bytes] = []
    ids: dict[bytes, int] = {}
    positions: list[tuple[int, int]] = []
    leaf_ids: list[str] = []
    occurred: list[datetime] = []
    sealed_times: list[datetime] = []
    frontier = Frontier()
    by_size = {cp.size: cp for cp in trusted}
    stored_notes = {row.note for row in rows}
    for note in copies:
        try:
            kept = Checkpoint.parse(open_note(note, verifier))
        except NoteError as exc:
            report.add(Finding(Kind.BAD_SIGNATURE, f"a kept copy of a checkpoint does not verify: {exc}"))
            continue
        if kept.origin != origin or note in stored_notes:
            continue
        stored = by_size.get(kept.size)
        what = "differs from the one in the database" if stored else "is missing from the database"
        report.add(
            Finding(
                Kind.CHECKPOINT_MISMATCH,
                f"checkpoint at tree size {kept.size} kept outside the database {what}: history rewritten",
                checkpoint_size=kept.size,
            )
        )
        if stored is None or stored.root != kept.root:
            by_size[kept.size] = kept  # the kept root is the one the stored leaves must give
    prev_size = 0
    for leaf in ledger.iter_leaves(tenant_id, 0, size):
        if leaf.leaf_format not in LEAF_FORMATS:
            try:
                check_leaf_format(leaf.leaf_format, f"leaf {leaf.leaf_index}")
            except UnknownLeafFormat as exc:
                report.cannot_check = str(exc)
                return report
        if leaf.leaf_index < len(hashes):
            report.add(
                Finding(Kind.LEAVES_CHANGED, f"a second leaf row at index {leaf.leaf_index}", leaf.leaf_index)
            )
            continue
        if leaf.leaf_index > len(hashes):
            report.add(
                Finding(
                    Kind.LEAVES_MISSING,
                    f"leaf rows {len(hashes)}..{leaf.leaf_index - 1} are gone",
                    leaf_index=len(hashes),
                )
            )
            break
        hashes.append(leaf.leaf_hash)
        key = leaf.event_id.bytes
        if key in ids:
            report.add(
                Finding(
                    Kind.DUPLICATE,
                    f"event {leaf.event_id} is sealed twice (leaves {ids[key]} and {leaf.leaf_index})",
                    leaf.leaf_index,
                    str(leaf.event_id),
                )
            )
        else:
            ids[key] = leaf.leaf_index
        positions.append((leaf.partition, leaf.offset))
        leaf_ids.append(str(leaf.event_id))
        occurred.append(leaf.occurred_at)
        sealed_times.append(leaf.sealed_at)
        frontier.append(leaf.leaf_hash)
        cp = by_size.get(frontier.size)
        if cp is not None:
            if frontier.root() != cp.root:
                report.add(
                    Finding(
                        Kind.CHECKPOINT_MISMATCH,
                        f"checkpoint at tree size {cp.size} no longer matches the stored leaves:"
                        f" a leaf in [{prev_size}, {cp.size}) was changed",
                        checkpoint_size=cp.size,
                    )
                )
            prev_size = cp.size
    for cp in trusted:
        if cp.size > len(hashes):
            report.add(
                Finding(
                    Kind.LEAVES_MISSING,
                    f"checkpoint at tree size {cp.size} covers leaves {len(hashes)}..{cp.size - 1},"
                    " which are no longer stored (events and leaves deleted)",
                    leaf_index=len(hashes),
                    checkpoint_size=cp.size,
                )
            )
            break

    # --- every stored event against its leaf --------------------------------------
    seen = bytearray(len(hashes))
    unsealed = 0
    for row in ledger.iter_events(tenant_id, table):
        report.events += 1
        eid = row["event_id"]
        index = ids.get(eid.bytes)
        partition, offset = int(row["kafka_partition"]), int(row["kafka_offset"])
        if index is None:
            if offset <= sealed_upto.get(partition, -1):
                report.add(
                    Finding(
                        Kind.INSERTED,
                        f"event {eid} (partition {partition} offset {offset}) is stored but was never sealed,"
                        " inside the sealed range: inserted after ingest",
                        event_id=str(eid),
                    )
                )
            else:
                unsealed += 1
            continue
        if seen[index]:
            report.add(
                Finding(Kind.DUPLICATE, f"event {eid} (leaf {index}) is stored twice", index, str(eid))
            )
            continue
        seen[index] = 1
        if index < rehash_from or leaf_hash_of_row(row) == hashes[index]:
            continue
        sealed_at = positions[index]
        if sealed_at != (partition, offset):
            moved = dict(row, kafka_partition=sealed_at[0], kafka_offset=sealed_at[1])
            if leaf_hash_of_row(moved) == hashes[index]:
                report.add(
                    Finding(
                        Kind.REORDERED,
                        f"event {eid} (leaf {index}) was moved in ingest order: sealed at partition"
                        f" {sealed_at[0]} offset {sealed_at[1]},"
                        f" now at partition {partition} offset {offset}",
                        index,
                        str(eid),
                    )
                )
                continue
        hint = ""
        if row["received_at"] > sealed_times[index]:
            # Stored again after it was sealed: a re-delivered batch that replaced the first
            # copy (what first-write-wins prevents), or a forger's insert.
            hint = " (stored again after sealing: its received_at is later than its seal time)"
        report.add(
            Finding(
                Kind.CHANGED,
                f"event {eid} (leaf {index}) was changed after it was sealed{hint}",
                index,
                str(eid),
            )
        )

    horizon = now - timedelta(days=retention_days)
    expired = [i for i in range(len(hashes)) if not seen[i] and occurred[i] < horizon]
    for start, end in _ranges(expired):
        report.add(
            Finding(
                Kind.EXPIRED,
                f"leaves {start}..{end - 1} ({end - start} events, occurred before {horizon:%Y-%m-%d}):"
                " expired by retention; their leaf hashes keep the proofs valid",
                leaf_index=start,
            )
        )
    for i in range(len(hashes)):
        if not seen[i] and occurred[i] >= horizon:
            report.add(
                Finding(Kind.MISSING, f"event {leaf_ids[i]} (leaf {i}) is missing: deleted", i, leaf_ids[i])
            )
    if unsealed:
        report.add(Finding(Kind.UNSEALED, f"{unsealed} newer events are not sealed yet"))
    if rehash_from:
        report.add(Finding(Kind.UNCHECKED, f"events of leaves 0..{rehash_from - 1} not re-hashed (--since)"))
    covered = trusted[-1].size if trusted else 0
    if len(hashes) > covered:
        report.add(
            Finding(Kind.UNSEALED, f"leaves {covered}..{len(hashes) - 1} are not covered by a checkpoint yet")
        )
    if not trusted and not report.tampered:
        report.cannot_check = "no checkpoint verifies with the given key"
    return report


def _checkpoint_leaf_format(cp: Checkpoint) -> int:
    """The leaf format a checkpoint signs (``leaf-format`` line; none: format 1, from before the line)."""
    value = cp.extension("leaf-format")
    return 1 if value is None else check_leaf_format(value, f"checkpoint at tree size {cp.size}")


def _ingest_order(event: Mapping[str, Any]) -> tuple[str, int, int]:
    ingest = event.get("ingest") or {}
    return (str(event.get("received_at", "")), int(ingest.get("partition", 0)), int(ingest.get("offset", 0)))


def verify_export(
    events: Sequence[Mapping[str, Any]],
    note: str,
    verifier: Verifier,
    *,
    proofs: Mapping[str, Mapping[str, Any]] | None = None,
    leaf_format: object = None,
) -> Report:
    """Verify events received in a file against a signed checkpoint.

    With ``proofs`` (event id -> ``{"leaf_index", "audit_path": [base64...]}``), each
    event is checked for inclusion on its own; without, the file must be the whole log
    up to the checkpoint, and its root is recomputed over the events in ingest order:
    ``(received_at, ingest.partition, ingest.offset)``, the order the sealer follows
    (the feed's merge of partitions by received time).
    """
    report = Report(None, events=len(events))
    try:
        cp = Checkpoint.parse(open_note(note, verifier))
    except SignatureError as exc:
        report.add(Finding(Kind.BAD_SIGNATURE, f"checkpoint: {exc}"))
        return report
    except NoteError as exc:
        report.cannot_check = f"checkpoint: {exc}"
        return report
    report.checkpoints, report.tree_size, report.tenant = 1, cp.size, cp.origin
    try:
        _checkpoint_leaf_format(cp)
        if leaf_format is not None:
            check_leaf_format(leaf_format, "the file's proof line")
    except UnknownLeafFormat as exc:
        report.cannot_check = str(exc)
        return report
    if proofs is None:
        if len(events) != cp.size:
            report.cannot_check = (
                f"the file has {len(events)} events, the checkpoint covers {cp.size}: without inclusion"
                " proofs only a full-range file can be checked"
            )
            return report
        ordered = sorted(events, key=_ingest_order)
        if tree_root([leaf_hash_of_event(e) for e in ordered]) != cp.root:
            report.add(
                Finding(
                    Kind.CHANGED,
                    "the events do not give the checkpoint's root: changed, missing or reordered",
                )
            )
        return report
    unproved = 0
    for event in events:
        eid = str(event.get("event_id"))
        proof = proofs.get(eid)
        if proof is None:
            unproved += 1
            continue
        index = int(proof["leaf_index"])
        try:
            path = [base64.b64decode(p) for p in proof["audit_path"]]
            verify_inclusion(index, cp.size, leaf_hash_of_event(event), path, cp.root)
        except (ProofError, ValueError, TypeError) as exc:
            report.add(
                Finding(Kind.CHANGED, f"event {eid} (leaf {index}) does not verify: {exc}", index, eid)
            )
    if unproved:
        report.cannot_check = f"{unproved} events have no inclusion proof (sealed after the checkpoint?)"
    return report
