"""API keys: the SQLite key store, the verification cache and the `auditstream keys` CLI."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditstream.api.keys import CachedVerifier, KeyStore, Role, parse_token
from auditstream.cli.main import app as cli_app

TOKEN_RE = re.compile(r"^ask_([0-9a-f]{16})_([A-Za-z0-9_-]+)$")


@pytest.fixture
def keystore(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.sqlite3")


def test_create_verify_revoke(keystore: KeyStore) -> None:
    new = keystore.create("acme", Role.EXPORTER, "siem")
    m = TOKEN_RE.match(new.token)
    assert m and m.group(1) == new.key.key_id
    key = keystore.verify(new.token)
    assert key is not None
    assert (key.key_id, key.tenant_id, key.role, key.name) == (new.key.key_id, "acme", Role.EXPORTER, "siem")
    assert key.revoked_at is None
    assert keystore.revoke(new.key.key_id) is True
    assert keystore.verify(new.token) is None
    got = keystore.get(new.key.key_id)
    assert got is not None and got.revoked_at is not None
    assert keystore.revoke("0000000000000000") is False


def test_only_the_hash_is_stored(keystore: KeyStore) -> None:
    new = keystore.create("acme", Role.READER)
    secret = new.token.split("_", 2)[2]
    raw = keystore.path.read_bytes()
    for suffix in ("-wal",):
        p = Path(str(keystore.path) + suffix)
        if p.exists():
            raw += p.read_bytes()
    assert secret.encode() not in raw
    with sqlite3.connect(keystore.path) as conn:
        (stored,) = conn.execute("SELECT secret_hash FROM api_keys").fetchone()
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert mode == "wal"


def test_wrong_secret_and_malformed_tokens(keystore: KeyStore) -> None:
    new = keystore.create("acme", Role.ADMIN)
    key_id, secret = new.token.split("_", 2)[1:]
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for token in (f"ask_{key_id}_{flipped}", f"ask_{key_id}_", "", "ask_", new.token + " ", "x" + new.token):
        assert keystore.verify(token) is None
    assert parse_token(new.token) == (key_id, secret)


def test_role_grants() -> None:
    # The whole table (issue 9): ingest is apart from the reading roles, operator is the
    # only role that may choose its tenant.
    expected = {
        Role.READER: {Role.READER},
        Role.INGEST: {Role.INGEST},
        Role.EXPORTER: {Role.READER, Role.EXPORTER},
        Role.ADMIN: {Role.READER, Role.EXPORTER, Role.ADMIN},
        Role.OPERATOR: {Role.READER, Role.EXPORTER, Role.ADMIN, Role.OPERATOR},
    }
    for role in Role:
        assert {r for r in Role if role.allows(r)} == expected[role] == set(role.grants), role
        assert role.any_tenant is (role is Role.OPERATOR)
    assert not any(role.allows(Role.INGEST) for role in Role if role is not Role.INGEST)


def test_old_key_file_gains_the_new_roles(tmp_path: Path) -> None:
    # A key file created before issue 9 has a CHECK constraint naming three roles only.
    path = tmp_path / "old.sqlite3"
    old = KeyStore(path).create("acme", Role.READER, "from before")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
        conn.execute("DROP TABLE api_keys")
        conn.execute(
            "CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, role TEXT NOT NULL"
            " CHECK (role IN ('reader', 'exporter', 'admin')), name TEXT NOT NULL DEFAULT '',"
            " secret_hash TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)"
        )
        conn.executemany("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO api_keys VALUES ('x', 'acme', 'operator', '', 'h', 't', NULL)")
    store = KeyStore(path)
    assert store.verify(old.token) is not None  # the old key survives the rebuild, hash and all
    for role in (Role.INGEST, Role.OPERATOR):
        new = store.create("acme", role)
        assert store.verify(new.token) is not None and store.verify(new.token).role is role  # type: ignore[union-attr]
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO api_keys VALUES ('y', 'acme', 'root', '', 'h', 't', NULL)")


def test_cli_offers_every_role_and_warns_about_operator(tmp_path: Path) -> None:
    from auditstream.cli.keys import ROLE_HELP, RoleChoice

    env = {"AUDITSTREAM_KEYS_PATH": str(tmp_path / "k.sqlite3")}
    for role in ("ingest", "operator"):
        r = CliRunner().invoke(
            cli_app, ["keys", "create", "--tenant", "acme", "--role", role, "--no-audit"], env=env
        )
        assert r.exit_code == 0, r.output
        key = KeyStore(tmp_path / "k.sqlite3").verify(r.stdout.strip())
        assert key is not None and key.role.value == role

    assert [c.value for c in RoleChoice] == [r.value for r in Role]
    assert "operator: admin rights on EVERY tenant: may read and write every tenant" in ROLE_HELP
    r = CliRunner().invoke(cli_app, ["keys", "create", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    flat = " ".join(r.output.split())
    for role in Role:
        assert role.value in flat
    assert "may read and write every tenant" in flat


def test_invalid_tenant_or_role_refused(keystore: KeyStore) -> None:
    with pytest.raises(ValueError):
        keystore.create("bad tenant", Role.READER)
    with pytest.raises(ValueError):
        keystore.create("acme", "root")


def test_second_keystore_on_same_file_sees_changes(tmp_path: Path) -> None:
    # The CLI and the server are two processes with their own connections to one file.
    server, cli = KeyStore(tmp_path / "k.sqlite3"), KeyStore(tmp_path / "k.sqlite3")
    new = cli.create("acme", Role.READER)
    assert server.verify(new.token) is not None
    cli.revoke(new.key.key_id)
    assert server.verify(new.token) is None


def test_cache_bounds_how_long_a_revoked_key_works(keystore: KeyStore) -> None:
    now = [0.0]
    verifier = CachedVerifier(keystore, ttl_seconds=2.0, clock=lambda: now[0])
    new = keystore.create("acme", Role.READER)
    assert verifier.verify(new.token) is not None
    keystore.revoke(new.key.key_id)
    now[0] = 1.9
    assert verifier.verify(new.token) is not None  # cached
    now[0] = 2.01
    assert verifier.verify(new.token) is None


def test_cache_ttl_may_not_exceed_five_seconds(keystore: KeyStore) -> None:
    with pytest.raises(ValueError):
        CachedVerifier(keystore, ttl_seconds=30)


def test_cache_is_bounded(keystore: KeyStore) -> None:
    verifier = CachedVerifier(keystore, max_entries=10)
    for i in range(25):
        assert verifier.verify(f"ask_{i:016x}_{'x' * 43}") is None
    assert len(verifier._cache) <= 10


# --- CLI --------------------------------------------------------------------------------


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "cli-keys.sqlite3"
    env = {"AUDITSTREAM_KEYS_PATH": str(path), "AUDITSTREAM_DATA_DIR": str(tmp_path)}

    r = runner.invoke(
        cli_app,
        ["keys", "create", "--tenant", "acme", "--role", "exporter", "--name", "splunk", "--no-audit"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert TOKEN_RE.match(token), r.stdout  # stdout holds only the key
    store = KeyStore(path)
    key = store.verify(token)
    assert key is not None and key.tenant_id == "acme" and key.role is Role.EXPORTER and key.name == "splunk"

    r = runner.invoke(cli_app, ["keys", "list"], env=env)
    assert r.exit_code == 0
    assert key.key_id in r.stdout and "splunk" in r.stdout and "exporter" in r.stdout
    assert token.split("_", 2)[2] not in r.stdout  # never the secret

    r = runner.invoke(cli_app, ["keys", "revoke", key.key_id, "--no-audit"], env=env)
    assert r.exit_code == 0
    assert store.verify(token) is None
    r = runner.invoke(cli_app, ["keys", "list", "--active"], env=env)
    assert key.key_id not in r.stdout

    r = runner.invoke(cli_app, ["keys", "revoke", "0000000000000000"], env=env)
    assert r.exit_code == 1


def test_cli_rejects_bad_role_and_tenant(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"AUDITSTREAM_KEYS_PATH": str(tmp_path / "k.sqlite3")}
    r = runner.invoke(cli_app, ["keys", "create", "--tenant", "acme", "--role", "root"], env=env)
    assert r.exit_code == 2
    r = runner.invoke(cli_app, ["keys", "create", "--tenant", "no spaces", "--role", "reader"], env=env)
    assert r.exit_code == 2
    assert not r.stdout.strip()


def test_cli_json_output_and_audit_warning(tmp_path: Path) -> None:
    import orjson

    from tests.fixtures.kafka import free_port

    runner = CliRunner()
    env = {
        "AUDITSTREAM_KEYS_PATH": str(tmp_path / "k.sqlite3"),
        # No broker there: the key change stands, a warning says the audit event is missing.
        "AUDITSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    args = ["keys", "create", "--tenant", "acme", "--role", "reader", "--name", "n", "--json"]
    r = runner.invoke(cli_app, [*args, "--audit-timeout", "0.5"], env=env)
    assert r.exit_code == 0, r.output
    created = orjson.loads(r.stdout)
    assert (
        created["tenant_id"] == "acme" and created["role"] == "reader" and created["token"].startswith("ask_")
    )
    assert "NOT written to the audit log" in r.stderr
    r = runner.invoke(cli_app, ["keys", "list", "--json"], env=env)
    listed = orjson.loads(r.stdout)
    assert [k["key_id"] for k in listed] == [created["key_id"]] and "token" not in listed[0]
    r = runner.invoke(cli_app, ["keys", "revoke", created["key_id"], "--json", "--no-audit"], env=env)
    assert r.exit_code == 0 and orjson.loads(r.stdout)["active"] is False
    assert "audit" not in r.stderr


@pytest.mark.kafka
def test_cli_key_changes_are_audited(tmp_path: Path, kafka_bootstrap: str) -> None:
    from tests.api.jobkit import read_topic
    from tests.fixtures.kafka import new_topics

    topic = new_topics(kafka_bootstrap).events
    runner = CliRunner()
    env = {
        "AUDITSTREAM_KEYS_PATH": str(tmp_path / "k.sqlite3"),
        "AUDITSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AUDITSTREAM_TOPIC": topic,
    }
    r = runner.invoke(cli_app, ["keys", "create", "--tenant", "acme", "--role", "admin"], env=env)
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output
    token = r.stdout.strip()
    key_id = token.split("_")[1]
    r = runner.invoke(cli_app, ["keys", "revoke", key_id], env=env)
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output
    records = read_topic(kafka_bootstrap, topic, lambda rs: len(rs) >= 2)
    assert [(e["action"], e["resource"]["id"], e["tenant_id"]) for e in records] == [
        ("key.created", key_id, "acme"),
        ("key.revoked", key_id, "acme"),
    ]
    assert all(e["actor"]["id"] == "cli" and e["details"]["role"] == "admin" for e in records)
    assert all(token.split("_", 2)[2] not in str(e) for e in records)  # never the secret
