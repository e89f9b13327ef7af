"""The integrity routes on the real store: notes verify with the served key, proofs with the served root."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from pymerkle import InmemoryTree

from auditstream.config import Settings
from auditstream.integrity.canonical import leaf_data, leaf_hash_of_event
from auditstream.integrity.keys import load_or_create_signer
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.merkle import verify_consistency, verify_inclusion
from auditstream.integrity.note import Checkpoint, Verifier, open_note
from auditstream.integrity.sealer import Sealer
from auditstream.integrity.verify import verify_export
from auditstream.store import Store
from tests.api._support import auth, client_for, event, make_tokens, row, settings_fixture

pytestmark = pytest.mark.clickhouse

A, B = "acme", "globex"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


settings = settings_fixture("integrity")


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    return make_tokens(settings, (A, B))


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    yield from client_for(settings, store)


@pytest.fixture(scope="module")
def sealed(settings: Settings, store: Store) -> list[str]:
    """12 events of acme sealed under checkpoints of size 7 and 12; event ids in leaf order."""
    ids: list[str] = []
    ledger = Ledger(store.dsn, store.database)
    signer = load_or_create_signer(settings.resolved_checkpoint_key_path, settings.checkpoint_key_name)
    sealer = Sealer(store, ledger, signer, checkpoint_dir=settings.resolved_checkpoint_dir)
    for first, count in ((0, 7), (7, 5)):
        batch = [
            event(A, "user.login", f"u{i}", NOW + timedelta(seconds=i), details={"i": str(i)})
            for i in range(first, first + count)
        ]
        store.insert_rows(
            [
                row(e, offset=i, received_at=NOW + timedelta(seconds=i))
                for i, e in zip(range(first, first + count), batch, strict=True)
            ]
        )
        ids += [str(e.event_id) for e in batch]
        sealer.seal_tenant(A, store.feed_watermark(A))
        sealer.checkpoint(A, force=True)
    ledger.close()
    return ids


def test_checkpoints_and_key(client: TestClient, tokens: dict[str, str], sealed: list[str]) -> None:
    key = client.get("/v1/checkpoints/key", headers=auth(tokens, f"{A}:reader")).json()
    verifier = Verifier.parse(key["key"])
    body = client.get("/v1/checkpoints", headers=auth(tokens, f"{A}:reader")).json()
    assert [c["tree_size"] for c in body["checkpoints"]] == [12, 7]
    latest = Checkpoint.parse(open_note(body["latest"]["note"], verifier))
    assert (latest.origin, latest.size) == ("auditstream/acme", 12)
    # Another tenant's reader sees its own (empty) log, never acme's.
    other = client.get("/v1/checkpoints", headers=auth(tokens, f"{B}:reader")).json()
    assert other["checkpoints"] == [] and other["latest"] is None


def test_inclusion_proof_verifies_from_the_served_event(
    client: TestClient, tokens: dict[str, str], sealed: list[str]
) -> None:
    h = auth(tokens, f"{A}:reader")
    verifier = Verifier.parse(client.get("/v1/checkpoints/key", headers=h).json()["key"])
    for index in (0, 5, 11):
        proof = client.get(f"/v1/events/{sealed[index]}/proof", headers=h).json()
        assert proof["leaf_index"] == index and proof["tree_size"] == 12
        cp = Checkpoint.parse(open_note(proof["checkpoint"]["note"], verifier))
        # The recipient's side: the event as the API serves it, canonicalised and hashed.
        served = client.get(f"/v1/events/{sealed[index]}", headers=h).json()
        served = served.get("data", served)
        path = [base64.b64decode(p) for p in proof["audit_path"]]
        verify_inclusion(index, cp.size, leaf_hash_of_event(served), path, cp.root)
    early = client.get(f"/v1/events/{sealed[3]}/proof", params={"checkpoint": 7}, headers=h).json()
    assert early["tree_size"] == 7
    late = client.get(f"/v1/events/{sealed[9]}/proof", params={"checkpoint": 7}, headers=h)
    assert late.status_code == 400 and late.json()["error"]["field"] == "checkpoint"
    assert client.get(f"/v1/events/{sealed[0]}/proof", headers=auth(tokens, f"{B}:reader")).status_code == 404
    assert client.get("/v1/events/not-a-uuid/proof", headers=h).json()["error"]["field"] == "event_id"


def test_consistency_proof_and_independent_root(
    client: TestClient, tokens: dict[str, str], sealed: list[str]
) -> None:
    h = auth(tokens, f"{A}:reader")
    body = client.get("/v1/checkpoints/consistency", params={"from": 7, "to": 12}, headers=h).json()
    old, new = (base64.b64decode(body[k]["root_hash"]) for k in ("from", "to"))
    verify_consistency(7, 12, old, new, [base64.b64decode(p) for p in body["proof"]])
    # pymerkle, fed the canonical JSON of the served events, computes the same signed roots.
    tree = InmemoryTree(algorithm="sha256")
    for eid in sealed:
        served = client.get(f"/v1/events/{eid}", headers=h).json()
        tree.append_entry(leaf_data(served.get("data", served)))
    assert (tree.get_root(7), tree.get_root(12)) == (old, new)
    bad = client.get("/v1/checkpoints/consistency", params={"from": 8, "to": 12}, headers=h)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "from"


def test_full_export_verifies_offline(client: TestClient, tokens: dict[str, str], sealed: list[str]) -> None:
    h = auth(tokens, f"{A}:exporter")
    since = (NOW - timedelta(hours=1)).isoformat()
    text = client.get(
        "/v1/export", params={"format": "ndjson", "order": "asc", "since": since}, headers=h
    ).text
    events = [orjson.loads(line) for line in text.splitlines() if line]
    by_id = {e["event_id"]: e for e in events}
    in_leaf_order = [by_id[i] for i in sealed]
    note = client.get("/v1/checkpoints", headers=h).json()["latest"]["note"]
    verifier = Verifier.parse(client.get("/v1/checkpoints/key", headers=h).json()["key"])
    assert verify_export(in_leaf_order, note, verifier).exit_code == 0
    in_leaf_order[3] = dict(in_leaf_order[3], actor={"id": "mallory", "type": "user"})
    assert verify_export(in_leaf_order, note, verifier).exit_code == 1


def test_export_with_proof_line_verifies_alone(
    client: TestClient, tokens: dict[str, str], sealed: list[str], tmp_path, settings: Settings
) -> None:
    from typer.testing import CliRunner

    from auditstream.cli.main import app

    h = auth(tokens, f"{A}:exporter")
    params = {"format": "ndjson", "since": (NOW - timedelta(hours=1)).isoformat(), "actor": ["u2", "u9"]}
    plain = client.get("/v1/export", params=params, headers=h)
    proved = client.get("/v1/export", params={**params, "include_proof": "true"}, headers=h)
    assert proved.content.startswith(plain.content)  # the default export is unchanged
    trailer = orjson.loads(proved.content[len(plain.content) :])["auditstream_proof"]
    assert sorted(leaf["leaf_index"] for leaf in trailer["leaves"]) == [2, 9]
    key = client.get("/v1/checkpoints/key", headers=h).json()["key"]
    assert trailer["key"] == key

    path = tmp_path / "received-by-email.ndjson"
    path.write_bytes(proved.content)
    env = {"AUDITSTREAM_DATA_DIR": str(tmp_path / "elsewhere")}
    ok = CliRunner().invoke(app, ["verify", "--export", str(path), "--key", key], env=env)
    assert ok.exit_code == 0, ok.output
    path.write_bytes(proved.content.replace(b'"u9"', b'"u8"', 1))
    bad = CliRunner().invoke(app, ["verify", "--export", str(path), "--key", key], env=env)
    assert bad.exit_code == 1 and "(leaf 9) does not verify" in bad.output

    csv = client.get("/v1/export", params={**params, "format": "csv", "include_proof": "true"}, headers=h)
    assert csv.status_code == 400 and csv.json()["error"]["field"] == "include_proof"


def test_query_verify_checks_printed_events(
    client: TestClient, tokens: dict[str, str], sealed: list[str]
) -> None:
    from auditstream.cli.integrity import verify_printed

    h = auth(tokens, f"{A}:reader")
    key = client.get("/v1/checkpoints/key", headers=h).json()["key"]
    events = [client.get(f"/v1/events/{eid}", headers=h).json() for eid in sealed[:4]]
    events = [e.get("data", e) for e in events]
    saved = dict(client.headers)
    client.headers.update(h)
    try:
        assert verify_printed(client, events, key, None) == 0
        events[1] = dict(events[1], outcome="failure")
        assert verify_printed(client, events, key, None) == 1
    finally:
        client.headers.clear()
        client.headers.update(saved)


def test_damaged_log_answers_409_not_500(
    client: TestClient, tokens: dict[str, str], sealed: list[str], store: Store
) -> None:
    from auditstream.store.client import create_client

    insider = create_client(store.dsn)
    try:
        insider.command(
            f"ALTER TABLE {store.database}.merkle_leaves DELETE"
            " WHERE tenant_id = {t:String} AND leaf_index >= 10",
            parameters={"t": A},
            settings={"mutations_sync": 2},
        )
    finally:
        insider.close()
    r = client.get(f"/v1/events/{sealed[0]}/proof", headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "log_damaged"
