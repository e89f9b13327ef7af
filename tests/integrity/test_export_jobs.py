"""Export jobs with proofs, end to end on the real store and broker (audit trail).

A job created with ``include_proof`` writes the proof line of ``GET /v1/export?include_proof=true``
into its file; the file downloaded (plain or as a .gz) verifies offline with
``auditstream verify FILE --note NOTE --key KEY``, and one changed byte in an event line is
named by event id.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from auditstream.api.app import create_app
from auditstream.cli.main import app as cli
from auditstream.config import Settings
from auditstream.integrity.keys import load_or_create_signer
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.sealer import Sealer
from auditstream.store import Store
from tests.api._support import event, make_tokens, row
from tests.api.jobkit import NOW, api_settings, bearer, wait_for_job
from tests.fixtures.kafka import Topics, new_topics

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]

A = "acme"
COUNT = 9


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    clickhouse_dsn: str,
    clickhouse_database: str,
    kafka_bootstrap: str,
) -> Settings:
    topics: Topics = new_topics(kafka_bootstrap)
    return api_settings(
        tmp_path_factory.mktemp("proof-jobs"),
        clickhouse_dsn,
        clickhouse_database,
        kafka_bootstrap,
        topics.events,
    )


@pytest.fixture(scope="module")
def sealed(settings: Settings, store: Store) -> list[str]:
    """COUNT events of acme, sealed under one checkpoint; their ids in leaf order."""
    batch = [
        event(A, "user.login", f"u{i}", NOW - timedelta(minutes=10) + timedelta(seconds=i))
        for i in range(COUNT)
    ]
    store.insert_rows(
        [
            row(e, offset=i, received_at=NOW - timedelta(minutes=9) + timedelta(seconds=i))
            for i, e in enumerate(batch)
        ]
    )
    ledger = Ledger(store.dsn, store.database)
    signer = load_or_create_signer(settings.resolved_checkpoint_key_path, settings.checkpoint_key_name)
    sealer = Sealer(store, ledger, signer, checkpoint_dir=settings.resolved_checkpoint_dir)
    try:
        while sealer.seal_tenant(A, store.feed_watermark(A)):
            pass
        assert sealer.checkpoint(A, force=True) is not None
    finally:
        ledger.close()
    return [str(e.event_id) for e in batch]


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        yield c


def _create(client: TestClient, token: str, **body: Any) -> Any:
    return client.post(
        "/v1/exports",
        json={"name": "with proofs", "filters": {"since": "-1d"}, **body},
        headers=bearer(token),
    )


def test_job_file_with_proofs_verifies_offline(
    client: TestClient, settings: Settings, sealed: list[str], tmp_path: Path
) -> None:
    token = make_tokens(settings, (A,))[f"{A}:exporter"]
    r = _create(client, token, include_proof=True)
    assert r.status_code == 202, r.text
    assert r.json()["include_proof"] is True
    done = wait_for_job(client, token, r.json()["id"], within=120)
    assert done["rows_written"] == COUNT and done["include_proof"] is True

    plain = client.get(f"/v1/exports/{done['id']}/download", headers=bearer(token))
    assert plain.status_code == 200
    lines = plain.content.splitlines()
    assert len(lines) == COUNT + 1
    trailer = orjson.loads(lines[-1])["auditstream_proof"]
    assert sorted(leaf["event_id"] for leaf in trailer["leaves"]) == sorted(sealed)
    assert sorted(leaf["leaf_index"] for leaf in trailer["leaves"]) == list(range(COUNT))

    key = client.get("/v1/checkpoints/key", headers=bearer(token)).json()["key"]
    note = tmp_path / "checkpoint.note"
    note.write_text(client.get("/v1/checkpoints", headers=bearer(token)).json()["latest"]["note"])
    env = {"AUDITSTREAM_DATA_DIR": str(tmp_path / "recipient")}  # no store, no key file: offline
    runner = CliRunner()

    def verify(path: Path) -> Any:
        return runner.invoke(cli, ["verify", str(path), "--note", str(note), "--key", key], env=env)

    path = tmp_path / "job.ndjson"
    path.write_bytes(plain.content)
    ok = verify(path)
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("VERIFIED: ") and f"{COUNT} events" in ok.output

    gz = client.get(f"/v1/exports/{done['id']}/download", params={"gzip": "true"}, headers=bearer(token))
    assert gz.status_code == 200 and gz.headers["content-type"] == "application/gzip"
    gz_path = tmp_path / "job.ndjson.gz"
    gz_path.write_bytes(gz.content)
    assert gzip.decompress(gz.content) == plain.content
    ok_gz = verify(gz_path)
    assert ok_gz.exit_code == 0, ok_gz.output

    # One byte of one event line changed (actor "u4" -> "u5"): named by its event id and leaf.
    target = next(i for i, line in enumerate(lines) if b'"u4"' in line)
    victim = orjson.loads(lines[target])["event_id"]
    tampered = list(lines)
    tampered[target] = lines[target].replace(b'"u4"', b'"u5"', 1)
    assert sum(a != b for a, b in zip(lines[target], tampered[target], strict=True)) == 1
    path.write_bytes(b"\n".join(tampered) + b"\n")
    bad = verify(path)
    assert bad.exit_code == 1, bad.output
    index = sealed.index(victim)
    assert f"event {victim} (leaf {index}) does not verify" in bad.output

    # A job without include_proof is unchanged: no proof line.
    r = _create(client, token)
    assert r.status_code == 202 and r.json()["include_proof"] is False
    done = wait_for_job(client, token, r.json()["id"], within=120)
    body = client.get(f"/v1/exports/{done['id']}/download", headers=bearer(token)).content
    assert body == b"\n".join(lines[:-1]) + b"\n"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_include_proof_needs_ndjson(client: TestClient, settings: Settings, fmt: str) -> None:
    token = make_tokens(settings, (A,))[f"{A}:exporter"]
    r = _create(client, token, format=fmt, include_proof=True)
    assert r.status_code == 400, r.text  # as GET /v1/export?format=csv&include_proof=true
    assert r.json()["error"]["field"] == "include_proof"
    history = client.get("/v1/exports", headers=bearer(token)).json()["data"]
    assert all(j["format"] != fmt for j in history)  # refused: no job was created
