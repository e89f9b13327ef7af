"""Insider tampering directly in ClickHouse, bypassing the API: verify must catch and name each one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auditstream.events.stored import COLUMNS
from auditstream.integrity.canonical import leaf_hash_of_row
from auditstream.integrity.merkle import (
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from auditstream.integrity.note import Checkpoint, Signer, open_note, sign_note, split_notes
from auditstream.integrity.sealer import Sealer, checkpoint_file
from auditstream.integrity.verify import Kind, verify_tenant
from auditstream.store.store import FEED_TABLE
from tests.integrity.conftest import check, seal, seed, sql
from tests.store.conftest import build_row

pytestmark = pytest.mark.clickhouse


def _sealed_log(sealer: Sealer, tenant: str) -> list[tuple]:
    """15 events sealed under two checkpoints (sizes 10 and 15)."""
    rows = seed(sealer.store, tenant, 10)
    seal(sealer, tenant)
    rows += seed(sealer.store, tenant, 5, first_offset=10)
    seal(sealer, tenant)
    return rows


def test_untouched_log_verifies(sealer: Sealer, tenant: str) -> None:
    _sealed_log(sealer, tenant)
    report = check(sealer, tenant)
    assert report.exit_code == 0, report.lines()
    assert (report.tree_size, report.checkpoints, report.events) == (15, 2, 15)
    # The WORM copy holds the same two notes, verifiable with the public key.
    day_file = checkpoint_file(sealer.checkpoint_dir, tenant, datetime.now(UTC))
    notes = split_notes(day_file.read_text())
    sizes = [Checkpoint.parse(open_note(n, sealer.signer.verifier)).size for n in notes]
    assert sizes == [10, 15]


def test_changed_field_is_named(sealer: Sealer, tenant: str, insider) -> None:
    rows = _sealed_log(sealer, tenant)
    victim = rows[4][0]
    sql(
        insider,
        f"ALTER TABLE {sealer.store.database}.audit_events UPDATE actor_id = 'mallory'"
        " WHERE tenant_id = {t:String} AND event_id = {id:UUID}",
        t=tenant,
        id=victim,
    )
    report = check(sealer, tenant)
    assert report.exit_code == 1
    [finding] = report.of(Kind.CHANGED)
    assert finding.event_id == str(victim) and finding.leaf_index == 4
    assert [f.kind for f in report.findings if f.kind is not Kind.UNSEALED] == [Kind.CHANGED]


def test_deleted_event_is_named(sealer: Sealer, tenant: str, insider) -> None:
    rows = _sealed_log(sealer, tenant)
    victim = rows[7][0]
    sql(
        insider,
        f"ALTER TABLE {sealer.store.database}.audit_events DELETE"
        " WHERE tenant_id = {t:String} AND event_id = {id:UUID}",
        t=tenant,
        id=victim,
    )
    report = check(sealer, tenant)
    assert report.exit_code == 1
    [finding] = report.of(Kind.MISSING)
    assert (finding.event_id, finding.leaf_index) == (str(victim), 7)


def test_truncating_the_newest_events_after_a_checkpoint(sealer: Sealer, tenant: str, insider) -> None:
    rows = _sealed_log(sealer, tenant)
    db = sealer.store.database
    sql(
        insider,
        f"ALTER TABLE {db}.audit_events DELETE WHERE tenant_id = {{t:String}} AND kafka_offset >= 12",
        t=tenant,
    )
    report = check(sealer, tenant)
    assert report.exit_code == 1
    assert [(f.leaf_index, f.event_id) for f in report.of(Kind.MISSING)] == [
        (i, str(rows[i][0])) for i in (12, 13, 14)
    ]
    # Covering the tracks: the leaves go too. The signed checkpoint still says 15.
    sql(
        insider,
        f"ALTER TABLE {db}.merkle_leaves DELETE WHERE tenant_id = {{t:String}} AND leaf_index >= 12",
        t=tenant,
    )
    report = check(sealer, tenant)
    assert report.exit_code == 1
    [gone] = report.of(Kind.LEAVES_MISSING)
    assert gone.checkpoint_size == 15 and gone.leaf_index == 12


def test_inserted_event_is_named(sealer: Sealer, tenant: str, store) -> None:
    _sealed_log(sealer, tenant)
    # Never ingested: written straight into the table, backdated, at a free position inside
    # the sealed range (partition 0 holds only even offsets here).
    at = datetime.now(UTC) - timedelta(days=3)
    forged = build_row(tenant_id=tenant, occurred_at=at, received_at=at, kafka_partition=0, kafka_offset=5)
    store.insert_rows([forged])
    report = check(sealer, tenant)
    assert report.exit_code == 1
    [finding] = report.of(Kind.INSERTED)
    assert finding.event_id == str(forged[0])


def test_swapped_order_is_named(sealer: Sealer, tenant: str, insider) -> None:
    rows = _sealed_log(sealer, tenant)
    a, b = rows[2][0], rows[6][0]  # both in partition 0 (offsets 2 and 6)
    sql(
        insider,
        f"ALTER TABLE {sealer.store.database}.audit_events UPDATE kafka_offset = 8 - kafka_offset"
        " WHERE tenant_id = {t:String} AND event_id IN ({a:UUID}, {b:UUID})",
        t=tenant,
        a=a,
        b=b,
    )
    report = check(sealer, tenant)
    assert report.exit_code == 1
    moved = {(f.event_id, f.leaf_index) for f in report.of(Kind.REORDERED)}
    assert moved == {(str(a), 2), (str(b), 6)}
    assert not report.of(Kind.CHANGED)


def test_checkpoint_signed_by_another_key(sealer: Sealer, tenant: str, insider) -> None:
    _sealed_log(sealer, tenant)
    db = sealer.store.database
    original = sealer.ledger.checkpoint_at(tenant, 10)
    assert original is not None
    forged_key = Signer.generate("auditstream")
    body = Checkpoint.parse(open_note(original.note, sealer.signer.verifier))
    sql(
        insider,
        f"ALTER TABLE {db}.checkpoints DELETE WHERE tenant_id = {{t:String}} AND tree_size = 10",
        t=tenant,
    )
    insider.insert(
        f"{db}.checkpoints",
        [(tenant, 10, original.root_hash, original.created_at, sign_note(body.text(), forged_key), "")],
        column_names=["tenant_id", "tree_size", "root_hash", "created_at", "note", "frontier"],
    )
    report = check(sealer, tenant)
    assert report.exit_code == 1
    [bad] = report.of(Kind.BAD_SIGNATURE)
    assert bad.checkpoint_size == 10 and forged_key.verifier.key_id.hex() in bad.message
    [broken] = report.of(Kind.CHAIN_BROKEN)
    assert broken.checkpoint_size == 15


def test_retention_cut_verifies_and_keeps_proofs(sealer: Sealer, tenant: str, insider) -> None:
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    seed(sealer.store, tenant, 6, occurred_at=old)
    seal(sealer, tenant)
    rows = seed(sealer.store, tenant, 4, first_offset=6)
    seal(sealer, tenant)
    before = sealer.ledger.checkpoint_at(tenant, 6)
    after = sealer.ledger.checkpoint_at(tenant, 10)
    # What the TTL does at 30 days: the old rows leave both tables; the leaves table has no TTL.
    for table in ("audit_events", FEED_TABLE):
        sql(
            insider,
            f"ALTER TABLE {sealer.store.database}.{table} DELETE WHERE tenant_id = {{t:String}}"
            " AND occurred_at < now() - INTERVAL 30 DAY",
            t=tenant,
        )
    report = check(sealer, tenant, retention_days=30)
    assert report.exit_code == 0, report.lines()
    [expired] = report.of(Kind.EXPIRED)
    assert expired.leaf_index == 0 and "leaves 0..5" in expired.message
    assert "expired by retention" in expired.message
    # Proofs for the remaining events and between the checkpoints still verify.
    leaves = sealer.ledger.leaf_hashes(tenant, 10)
    for i, row in enumerate(rows, start=6):
        stored = sealer.store.get_event(tenant, row[0])
        verify_inclusion(i, 10, leaf_hash_of_row(stored), inclusion_proof(leaves, i, 10), after.root_hash)
    verify_consistency(6, 10, before.root_hash, after.root_hash, consistency_proof(leaves, 6, 10))
    # Deleting a recent event the same way is not retention.
    sql(
        insider,
        f"ALTER TABLE {sealer.store.database}.audit_events DELETE WHERE tenant_id = {{t:String}}"
        " AND event_id = {id:UUID}",
        t=tenant,
        id=rows[0][0],
    )
    assert check(sealer, tenant, retention_days=30).of(Kind.MISSING)[0].leaf_index == 6


def test_exactly_once_across_restart_and_replay(
    sealer: Sealer, tenant: str, store, ledger, signer, tmp_path
) -> None:
    rows = seed(store, tenant, 8)
    sealer.seal_tenant(tenant, store.feed_watermark(tenant))  # leaves written, no checkpoint: "crash"
    restarted = Sealer(store, ledger, signer, checkpoint_seconds=3600, checkpoint_dir=tmp_path / "cp2")
    assert restarted.seal_tenant(tenant, store.feed_watermark(tenant)) == 0
    # A replayed copy of an already sealed event at a new Kafka position is not a second leaf.
    copy = list(rows[3])
    copy[COLUMNS.index("kafka_partition")], copy[COLUMNS.index("kafka_offset")] = 0, 20
    store.insert_rows([tuple(copy)])
    seal(restarted, tenant)
    assert ledger.tree_position(tenant)[0] == 8
    cp = ledger.checkpoints(tenant)
    assert [c.tree_size for c in cp] == [8]


def test_since_rehashes_only_newer_events_but_checks_presence(sealer: Sealer, tenant: str, insider) -> None:
    rows = _sealed_log(sealer, tenant)
    first, second = sealer.ledger.checkpoints(tenant)
    since = first.created_at + (second.created_at - first.created_at) / 2
    if second.created_at == first.created_at:
        pytest.skip("both checkpoints in the same millisecond")
    db = sealer.store.database
    for victim in (rows[2][0], rows[12][0]):
        sql(
            insider,
            f"ALTER TABLE {db}.audit_events UPDATE reason = 'x'"
            " WHERE tenant_id = {t:String} AND event_id = {id:UUID}",
            t=tenant,
            id=victim,
        )
    sql(
        insider,
        f"ALTER TABLE {db}.audit_events DELETE WHERE tenant_id = {{t:String}} AND kafka_offset = 5",
        t=tenant,
    )
    full = check(sealer, tenant)
    assert sorted(f.leaf_index for f in full.of(Kind.CHANGED)) == [2, 12]
    recent = verify_tenant(
        sealer.ledger,
        tenant,
        sealer.signer.verifier,
        origin=sealer.origin(tenant),
        retention_days=3650,
        since=since,
    )
    assert [f.leaf_index for f in recent.of(Kind.CHANGED)] == [12]
    assert [f.leaf_index for f in recent.of(Kind.MISSING)] == [5]  # presence is still checked
    assert recent.of(Kind.UNCHECKED)


def test_history_resigned_with_the_key_is_caught_by_the_kept_copies(
    sealer: Sealer, tenant: str, insider
) -> None:
    rows = _sealed_log(sealer, tenant)
    db = sealer.store.database
    # The worst insider: database access AND the signing key. Change an event, fix its leaf,
    # drop the checkpoints and sign a new history.
    sql(
        insider,
        f"ALTER TABLE {db}.audit_events UPDATE actor_id = 'mallory' WHERE tenant_id = {{t:String}}"
        " AND event_id = {id:UUID}",
        t=tenant,
        id=rows[3][0],
    )
    forged = leaf_hash_of_row(sealer.store.get_event(tenant, rows[3][0]))
    sql(
        insider,
        f"ALTER TABLE {db}.merkle_leaves UPDATE leaf_hash = unhex({{h:String}})"
        " WHERE tenant_id = {t:String} AND leaf_index = 3",
        t=tenant,
        h=forged.hex(),
    )
    sql(insider, f"ALTER TABLE {db}.checkpoints DELETE WHERE tenant_id = {{t:String}}", t=tenant)
    Sealer(sealer.store, sealer.ledger, sealer.signer).checkpoint(tenant, force=True)
    assert check(sealer, tenant).exit_code == 0  # the database alone cannot tell (see README)
    kept = split_notes(checkpoint_file(sealer.checkpoint_dir, tenant, datetime.now(UTC)).read_text())
    report = verify_tenant(
        sealer.ledger,
        tenant,
        sealer.signer.verifier,
        origin=sealer.origin(tenant),
        retention_days=3650,
        copies=kept,
    )
    assert report.exit_code == 1
    assert sorted(f.checkpoint_size for f in report.of(Kind.CHECKPOINT_MISMATCH)) == [10, 10, 15, 15]
