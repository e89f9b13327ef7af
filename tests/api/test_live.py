"""/v1/live over a real HTTP server: connect, store an event, receive it as a server-sent event."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
import uvicorn

from auditstream.api.app import create_app
from auditstream.api.keys import KeyStore, Role
from auditstream.api.routes.feed import encode_feed_cursor
from auditstream.config import Settings
from auditstream.store import Store
from tests.api._support import auth, event, make_tokens, row, settings_fixture
from tests.fixtures.kafka import free_port

pytestmark = pytest.mark.clickhouse

A, B = "acme", "globex"


settings = settings_fixture("live")


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    return make_tokens(settings, (A, B))


@pytest.fixture(scope="module")
def base_url(settings: Settings, store: Store) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def read_events(lines: Iterator[str], want: int, deadline: float) -> list[tuple[str, dict]]:
    """(id, event) pairs parsed from the SSE stream until ``want`` arrived or the deadline."""
    out: list[tuple[str, dict]] = []
    msg_id = None
    for line in lines:
        if line.startswith("id: "):
            msg_id = line[4:]
        elif line.startswith("data: "):
            assert msg_id is not None
            out.append((msg_id, orjson.loads(line[6:])))
            if len(out) >= want:
                return out
        if time.monotonic() > deadline:
            break
    return out


def test_live_receives_new_matching_events(base_url: str, store: Store, tokens: dict[str, str]) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    store.insert_rows([row(event(A, "user.login", "before", now), 1)])  # before connecting: not sent
    headers = auth(tokens, f"{A}:reader")
    params = {"action": "user.*", "max_seconds": "20"}
    with (
        httpx.Client(timeout=httpx.Timeout(20, read=20)) as http,
        http.stream("GET", f"{base_url}/v1/live", params=params, headers=headers) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == ": connected"
        late = event(A, "user.logout", "late", now - timedelta(hours=5))  # old occurred_at, new arrival
        store.insert_rows(
            [
                row(event(A, "config.updated", "filtered-out", now), 2),
                row(event(B, "user.login", "other-tenant", now), 3),
                row(event(A, "user.login", "after", now), 4),
                row(late, 5),
            ]
        )
        got = read_events(lines, 2, time.monotonic() + 15)
    assert [e["actor"]["id"] for _, e in got] == ["after", "late"]
    # Resuming with Last-Event-ID continues after the first event: the second comes again.
    with httpx.Client(timeout=httpx.Timeout(20, read=20)) as http:
        resume = {**headers, "Last-Event-ID": got[0][0]}
        with http.stream("GET", f"{base_url}/v1/live", params=params, headers=resume) as r:
            again = read_events(r.iter_lines(), 1, time.monotonic() + 15)
    assert [e["event_id"] for _, e in again] == [str(late.event_id)]


def test_live_is_bounded_and_scoped(base_url: str, tokens: dict[str, str]) -> None:
    started = time.monotonic()
    with httpx.Client(timeout=10) as http:
        r = http.get(f"{base_url}/v1/live", params={"max_seconds": "1"}, headers=auth(tokens, f"{B}:reader"))
    assert r.status_code == 200 and time.monotonic() - started < 8
    assert "data:" not in r.text or '"tenant_id":"acme"' not in r.text
    with httpx.Client(timeout=10) as http:
        r = http.get(f"{base_url}/v1/live", params={"tenant": A}, headers=auth(tokens, f"{B}:reader"))
        assert r.status_code == 403
        r = http.get(f"{base_url}/v1/live", headers={**auth(tokens, f"{A}:reader"), "Last-Event-ID": "junk"})
        assert r.status_code == 400


def test_a_revoked_keys_stream_ends_within_seconds(base_url: str, settings: Settings, store: Store) -> None:
    keys = KeyStore(settings.resolved_keys_path)
    new = keys.create(A, Role.READER, "revoked while streaming")
    headers = {"Authorization": f"Bearer {new.token}"}
    with (
        httpx.Client(timeout=httpx.Timeout(30, read=30)) as http,
        http.stream("GET", f"{base_url}/v1/live", params={"max_seconds": "120"}, headers=headers) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines) == ": connected"
        # The stream is alive: an event stored now arrives.
        store.insert_rows([row(event(A, "user.login", "while-valid", datetime.now(UTC)), 900)])
        assert [e["actor"]["id"] for _, e in read_events(lines, 1, time.monotonic() + 15)] == ["while-valid"]
        assert keys.revoke(new.key.key_id)
        revoked_at = time.monotonic()
        rest = list(lines)  # ends when the server closes the stream (read timeout 30 s otherwise)
        closed_after = time.monotonic() - revoked_at
    # KEY_CHECK_SECONDS (1 s) + the verification cache (2 s), with room for a slow machine.
    assert closed_after < 10, closed_after
    assert "event: error" in rest and any('"unauthorized"' in line for line in rest), rest
    # And the key is refused from then on.
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{base_url}/v1/live", headers=headers).status_code == 401


def test_forged_last_event_id_is_400(base_url: str, tokens: dict[str, str]) -> None:
    # Issue 9: non-ASCII digits as a partition number were a 500 through Last-Event-ID too.
    good = encode_feed_cursor(A, {0: 1})
    data = orjson.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    headers = auth(tokens, f"{A}:reader")
    with httpx.Client(timeout=10) as http:
        for partitions in ({"²": 5}, {"٣": 1}, {"0": -1}):
            data["p"] = partitions
            forged = base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()
            r = http.get(f"{base_url}/v1/live", headers={**headers, "Last-Event-ID": forged})
            assert r.status_code == 400 and r.json()["error"]["field"] == "Last-Event-ID", r.text
