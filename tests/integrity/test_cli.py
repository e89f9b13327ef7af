"""``auditstream verify`` and ``auditstream checkpoint`` in-process on the real store: exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditstream.cli.main import app
from auditstream.events.stored import row_to_event
from auditstream.integrity.keys import load_or_create_signer
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.sealer import Sealer
from auditstream.store import Store
from tests.integrity.conftest import seal, seed, sql

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def env(tmp_path: Path, store: Store) -> dict[str, str]:
    return {
        "AUDITSTREAM_DATA_DIR": str(tmp_path),
        "AUDITSTREAM_CLICKHOUSE_DSN": store.dsn,
        "AUDITSTREAM_CLICKHOUSE_DATABASE": store.database,
    }


def test_verify_online_and_offline(
    env: dict[str, str], tmp_path: Path, store: Store, ledger: Ledger, tenant: str, insider
) -> None:
    runner = CliRunner()
    signer = load_or_create_signer(tmp_path / "checkpoint.key", "auditstream")
    sealer = Sealer(store, ledger, signer, checkpoint_dir=tmp_path / "checkpoints")
    rows = seed(store, tenant, 6)
    seal(sealer, tenant)

    key = runner.invoke(app, ["checkpoint", "key"], env=env)
    assert key.exit_code == 0 and key.output.strip() == str(signer.verifier)
    listed = runner.invoke(app, ["checkpoint", "list", "--tenant", tenant], env=env)
    assert listed.exit_code == 0 and listed.output.startswith("6\t")

    ok = runner.invoke(app, ["verify", "--tenant", tenant, "--key", key.output.strip()], env=env)
    assert ok.exit_code == 0, ok.output
    assert "VERIFIED" in ok.output

    # Offline: the export file (events as the API serves them) with the checkpoint note alone.
    export = tmp_path / "export.ndjson"
    events = [row_to_event(store.get_event(tenant, r[0])) for r in rows]
    export.write_text("".join(json.dumps(e) + "\n" for e in reversed(events)))
    note = tmp_path / "checkpoint.note"
    note.write_text(ledger.checkpoints(tenant)[0].note)
    args = ["verify", "--export", str(export), "--checkpoint", str(note), "--key", str(signer.verifier)]
    assert runner.invoke(app, args, env=env).exit_code == 0
    events[2]["actor"]["id"] = "mallory"
    export.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert runner.invoke(app, args, env=env).exit_code == 1
    other = load_or_create_signer(tmp_path / "other.key", "auditstream")
    wrong_key = runner.invoke(app, [*args[:-1], str(other.verifier)], env=env)
    assert wrong_key.exit_code == 1 and "no valid signature" in wrong_key.output

    sql(
        insider,
        f"ALTER TABLE {store.database}.audit_events UPDATE outcome = 'failure'"
        " WHERE tenant_id = {t:String} AND event_id = {id:UUID}",
        t=tenant,
        id=rows[1][0],
    )
    bad = runner.invoke(app, ["verify", "--tenant", tenant, "--key", str(signer.verifier)], env=env)
    assert bad.exit_code == 1
    assert f"event {rows[1][0]} (leaf 1) was changed" in bad.output

    nothing = runner.invoke(app, ["verify", "--tenant", "nobody", "--key", str(signer.verifier)], env=env)
    assert nothing.exit_code == 2 and "no checkpoint" in nothing.output
    assert runner.invoke(app, ["verify", "--tenant", tenant, "--key", "garbage"], env=env).exit_code == 2


def test_unknown_leaf_format_is_refused_with_exit_2(
    env: dict[str, str], tmp_path: Path, store: Store, ledger: Ledger, tenant: str, insider
) -> None:
    from auditstream.integrity.note import Checkpoint, open_note, sign_note

    runner = CliRunner()
    signer = load_or_create_signer(tmp_path / "checkpoint.key", "auditstream")
    sealer = Sealer(store, ledger, signer, checkpoint_dir=tmp_path / "checkpoints")
    rows = seed(store, tenant, 4)
    seal(sealer, tenant)
    cp_row = ledger.checkpoints(tenant)[0]
    cp = Checkpoint.parse(open_note(cp_row.note, signer.verifier))
    assert cp.extension("leaf-format") == "1"  # signed with the checkpoint
    assert {leaf.leaf_format for leaf in ledger.iter_leaves(tenant, 0, 4)} == {1}
    key = str(signer.verifier)

    # Offline: a proof line or a checkpoint naming a format this verifier does not know.
    events = [row_to_event(store.get_event(tenant, r[0])) for r in rows]
    note = tmp_path / "checkpoint.note"
    note.write_text(cp_row.note)
    export = tmp_path / "export.ndjson"
    trailer = {"auditstream_proof": {"checkpoint": cp_row.note, "leaf_format": 9, "leaves": []}}
    export.write_text("".join(json.dumps(e) + "\n" for e in [*events, trailer]))
    out = runner.invoke(app, ["verify", str(export), "--note", str(note), "--key", key], env=env)
    assert out.exit_code == 2, out.output
    assert "uses leaf format '9'" in out.output and "knows leaf format 1" in out.output
    future = Checkpoint(cp.origin, cp.size, cp.root, ("leaf-format 2",))
    note.write_text(sign_note(future.text(), signer))
    export.write_text("".join(json.dumps(e) + "\n" for e in events))
    out = runner.invoke(app, ["verify", str(export), "--note", str(note), "--key", key], env=env)
    assert out.exit_code == 2 and "checkpoint at tree size 4 uses leaf format '2'" in out.output

    # Online: a leaf row recorded with an unknown format.
    sql(
        insider,
        f"ALTER TABLE {store.database}.merkle_leaves UPDATE leaf_format = 7"
        " WHERE tenant_id = {t:String} AND leaf_index = 2",
        t=tenant,
    )
    out = runner.invoke(app, ["verify", "--tenant", tenant, "--key", key], env=env)
    assert out.exit_code == 2, out.output
    assert "leaf 2 uses leaf format '7'" in out.output
