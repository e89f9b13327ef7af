"""``auditstream query | export | tail`` against a real API server (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from auditstream.api.app import create_app
from auditstream.api.keys import KeyStore, Role
from auditstream.config import Settings
from auditstream.events.model import AuditEvent
from auditstream.events.stored import enrich
from auditstream.store import Store
from tests.api.jobkit import api_settings, insert_events, make_event, serve
from tests.fixtures.kafka import Topics, new_topics

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]

A, B = "acme", "globex"
N = 300


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    clickhouse_dsn: str,
    clickhouse_database: str,
    kafka_bootstrap: str,
) -> Settings:
    topics: Topics = new_topics(kafka_bootstrap)
    return api_settings(
        tmp_path_factory.mktemp("cli"), clickhouse_dsn, clickhouse_database, kafka_bootstrap, topics.events
    )


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[Store]:
    s = Store(settings.resolved_clickhouse_dsn, settings.clickhouse_database)
    s.open()
    insert_events(s, [make_event(A, n) for n in range(N)])
    insert_events(s, [make_event(B, n) for n in range(20)])
    yield s
    s.close()


@pytest.fixture(scope="module")
def url(settings: Settings, store: Store) -> Iterator[str]:
    with serve(create_app(settings, store)) as u:
        yield u


@pytest.fixture(scope="module")
def env(settings: Settings) -> dict[str, str]:
    token = KeyStore(settings.resolved_keys_path).create(A, Role.EXPORTER, "cli").token
    return {"AUDITSTREAM_API_KEY": token}


def run(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(__import__("auditstream.cli.main", fromlist=["app"]).app, args, env=env)


def test_query_json_and_table(url: str, env: dict[str, str]) -> None:
    r = run(["query", "--url", url, "--since", "-30d", "--actor", "user-7", "--limit", "1000", "--json"], env)
    assert r.exit_code == 0, r.output
    events = [orjson.loads(line) for line in r.stdout.splitlines() if line]
    assert len(events) == N // 50 and {e["actor"]["id"] for e in events} == {"user-7"}
    assert {e["tenant_id"] for e in events} == {A}
    r = run(["query", "--url", url, "--since", "-30d", "--limit", "5"], env)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 6 and "ACTION" in r.stdout


def test_query_errors_are_reported(url: str, env: dict[str, str]) -> None:
    r = run(["query", "--url", url, "--action", "NOT VALID"], env)
    assert r.exit_code == 2 and "action" in r.stderr
    r = run(["query", "--url", url], {"AUDITSTREAM_API_KEY": ""})
    assert r.exit_code == 2 and "AUDITSTREAM_API_KEY" in r.stderr
    r = run(["query", "--url", url], {"AUDITSTREAM_API_KEY": "ask_0123456789abcdef_" + "x" * 43})
    assert r.exit_code == 2 and "401" in r.stderr


@pytest.mark.parametrize("mode", ["stream", "async"])
def test_export_to_file(url: str, env: dict[str, str], tmp_path: Path, mode: str) -> None:
    out = tmp_path / f"out-{mode}.csv"
    args = ["export", "--url", url, "--since", "-30d", "--format", "csv", "-o", str(out)]
    r = run([*args, "--async"] if mode == "async" else args, env)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == N and {row["tenant_id"] for row in rows} == {A}
    assert not Path(str(out) + ".part").exists()


@contextmanager
def inserting(store: Store, row_at: Callable[[int], tuple], first: int, count: int = 200) -> Iterator[None]:
    """Insert ``row_at(offset)`` every 0.2 s from a thread while the block runs (tail starts from now)."""
    stop = threading.Event()

    def keep_inserting() -> None:
        for offset in range(first, first + count):
            if stop.is_set():
                return
            store.insert_rows([row_at(offset)])
            stop.wait(0.2)

    thread = threading.Thread(target=keep_inserting, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def test_tail_receives_new_events(url: str, env: dict[str, str], store: Store) -> None:
    inserted: list[str] = []

    def row_at(offset: int) -> tuple:
        e = make_event(A, offset, action="scan.created")
        inserted.append(e["event_id"])
        return enrich(
            AuditEvent.model_validate_json(orjson.dumps(e)),
            topic="audit.events",
            partition=0,
            offset=offset,
            received_at=datetime.now(UTC),
        )

    with inserting(store, row_at, 10_000):
        r = run(
            ["tail", "--url", url, "--action", "scan.*", "--max-events", "3", "--timeout", "30", "--json"],
            env,
        )
    assert r.exit_code == 0, r.output
    got = [orjson.loads(line)["event_id"] for line in r.stdout.splitlines() if line]
    assert len(got) == 3
    first = inserted.index(got[0])
    assert got == inserted[first : first + 3]


def test_tail_stops_at_timeout(url: str, env: dict[str, str]) -> None:
    started = time.monotonic()
    r = run(["tail", "--url", url, "--action", "nothing.here", "--timeout", "1.5"], env)
    assert r.exit_code == 0, r.output
    assert time.monotonic() - started < 10


HOSTILE_NAME = "mallory\x1b]0;owned\x07\x1b[2J\rroot\x9b1m\x7f\u202e"
_RAW_CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) != "\n"] + ["\u202e"]


def _hostile_row(offset: int) -> tuple:
    e = make_event(A, 0, action="user.login_failed", actor="mallory\x1b[31m")
    e["actor"]["name"] = HOSTILE_NAME
    e["details"] = {"note": "bell\x07 and CR\r here"}
    return enrich(
        AuditEvent.model_validate_json(orjson.dumps(e)),
        topic="audit.events",
        partition=1,
        offset=offset,
        received_at=datetime.now(UTC),
    )


def _assert_inert(stdout: str) -> None:
    leaked = sorted({hex(ord(c)) for c in stdout if c in _RAW_CONTROLS})
    assert not leaked, f"raw control characters reached the terminal: {leaked}"


def test_query_escapes_control_characters_of_a_hostile_event(
    url: str, env: dict[str, str], store: Store
) -> None:
    store.insert_rows([_hostile_row(50_000)])
    args = ["query", "--url", url, "--since", "-30d", "--action", "user.login_failed", "--limit", "10"]
    r = run([*args, "--json"], env)
    assert r.exit_code == 0, r.output
    _assert_inert(r.stdout)
    events = [orjson.loads(line) for line in r.stdout.splitlines() if line]
    hostile = [e for e in events if e["actor"].get("name") == HOSTILE_NAME]
    assert len(hostile) == 1  # still valid JSON, and it decodes to the stored data unchanged
    assert hostile[0]["details"]["note"] == "bell\x07 and CR\r here"
    r = run(args, env)
    assert r.exit_code == 0, r.output
    _assert_inert(r.stdout)
    assert "mallory\\u001b[31m" in r.stdout  # the actor column shows the escape, one line per row


def test_tail_escapes_control_characters(url: str, env: dict[str, str], store: Store) -> None:
    with inserting(store, _hostile_row, 60_000):
        r = run(
            ["tail", "--url", url, "--actor", "mallory\x1b[31m", "--max-events", "1", "--timeout", "30"], env
        )
    assert r.exit_code == 0, r.output
    _assert_inert(r.stdout)
    assert "mallory\\u001b[31m" in r.stdout


def test_url_comes_from_the_api_url_setting(url: str, env: dict[str, str]) -> None:
    host, port = url.removeprefix("http://").split(":")
    r = run(["query", "--since", "-30d", "--limit", "2", "--json"], {**env, "AUDITSTREAM_API_URL": url})
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 2
    # Without AUDITSTREAM_API_URL the default is built from the API host and port settings.
    r = run(
        ["query", "--since", "-30d", "--limit", "1", "--json"],
        {**env, "AUDITSTREAM_API_URL": "", "AUDITSTREAM_API_HOST": host, "AUDITSTREAM_API_PORT": port},
    )
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 1
    r = run(["query", "--limit", "1"], {**env, "AUDITSTREAM_API_URL": "http://127.0.0.1:9"})
    assert r.exit_code == 1 and "127.0.0.1:9" in r.stderr
