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
