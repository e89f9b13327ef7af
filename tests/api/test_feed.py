"""/v1/feed: ingest order, exactly once across pages while late events keep arriving.

Also who may read it (exporter, operator for other tenants) and its audit trail: one
``feed.read`` per cursor session, published to the real broker (nothing consumes the
topic here, so the trail never shows up in the feed under test).
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from auditstream.api.keys import KeyStore, Role
from auditstream.config import Settings
from auditstream.store import Store
from tests.api._support import auth, client_for, event, make_settings, make_tokens, row
from tests.api.jobkit import read_topic
from tests.fixtures.kafka import Topics, new_topics

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]

A, B = "acme", "globex"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


@pytest.fixture(scope="module")
def feed_topics(kafka_bootstrap: str) -> Topics:
    return new_topics(kafka_bootstrap)


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    clickhouse_dsn: str,
    clickhouse_database: str,
    kafka_bootstrap: str,
    feed_topics: Topics,
) -> Settings:
    return make_settings(
        tmp_path_factory.mktemp("feed"),
        clickhouse_dsn,
        clickhouse_database,
        kafka_bootstrap=kafka_bootstrap,
        topic=feed_topics.events,
    )


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    return make_tokens(settings, (A, B))


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    yield from client_for(settings, store)


class Producer:
    """Writes batches like the processor: per partition, offsets only grow."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.offsets = {0: itertools.count(100), 1: itertools.count(7)}
        self.sent: dict[str, list[str]] = {A: [], B: []}

    def batch(self, n: int, *, age: timedelta = timedelta(0), tenant: str = A) -> list[tuple]:
        rows = []
        for i in range(n):
            partition = i % 2
            e = event(tenant, "user.login", f"u{i}", NOW - age - timedelta(seconds=i))
            rows.append(row(e, next(self.offsets[partition]), partition))
            self.sent[tenant].append(str(e.event_id))
        self.store.insert_rows(rows)
        return rows


def page(client: TestClient, tokens: dict[str, str], who: str = f"{A}:exporter", **params: Any) -> dict:
    r = client.get("/v1/feed", params=params, headers=auth(tokens, who))
    assert r.status_code == 200, r.text
    return r.json()


def test_feed_exactly_once_with_late_events(client: TestClient, tokens: dict[str, str], store: Store) -> None:
    p = Producer(store)
    p.batch(15)
    p.batch(4, tenant=B)
    received: list[str] = []
    cursor = None
    for step in range(40):
        body = page(client, tokens, limit=4, **({"cursor": cursor} if cursor else {}))
        assert body["count"] == len(body["data"]) <= 4
        received += [e["event_id"] for e in body["data"]]
        assert all(e["tenant_id"] == A for e in body["data"])
        cursor = body["next_cursor"]
        if step in (1, 3):
            # Late arrivals: occurred hours and days ago, stored now.
            p.batch(5, age=timedelta(hours=6 + step))
            p.batch(3, age=timedelta(days=40))
            # At-least-once: the processor re-delivers a batch on the same positions.
            store.insert_rows(p.batch(2))
        if step > 6 and body["count"] == 0:
            break
    assert len(received) == len(set(received)), "an event was delivered twice"
    assert set(received) == set(p.sent[A])
    assert body["watermark"]["caught_up"] is True
    marks = {m["partition"]: m["offset"] for m in body["watermark"]["partitions"]}
    assert set(marks) == {0, 1}
    # The feed never ends: the cursor stays usable and delivers what arrives next.
    new = p.batch(3)
    body = page(client, tokens, cursor=cursor)
    assert [e["event_id"] for e in body["data"]] == [
        str(r[0]) for r in sorted(new, key=lambda r: (r[3], r[25], r[26]))
    ]


def test_feed_start_latest_and_ingest_order(client: TestClient, tokens: dict[str, str], store: Store) -> None:
    body = page(client, tokens, who=f"{B}:exporter", start="latest")
    assert body["count"] == 0
    cursor = body["next_cursor"]
    p = Producer(store)
    p.offsets = {0: itertools.count(10_000), 1: itertools.count(10_000)}
    p.batch(6, tenant=B)
    body = page(client, tokens, who=f"{B}:exporter", cursor=cursor, limit=100)
    got = body["data"]
    assert [e["event_id"] for e in got] and {e["event_id"] for e in got} == set(p.sent[B])
    for part in (0, 1):
        offsets = [e["ingest"]["offset"] for e in got if e["ingest"]["partition"] == part]
        assert offsets == sorted(offsets)


def test_feed_cursor_is_bound_to_tenant(client: TestClient, tokens: dict[str, str]) -> None:
    cursor = page(client, tokens)["next_cursor"]
    r = client.get("/v1/feed", params={"cursor": cursor}, headers=auth(tokens, f"{B}:exporter"))
    assert r.status_code == 400 and r.json()["error"]["field"] == "cursor"
    for bad in ["x", "eyJ2IjoxfQ", "' OR 1=1", "e30"]:
        r = client.get("/v1/feed", params={"cursor": bad}, headers=auth(tokens, f"{A}:exporter"))
        assert r.status_code == 400, bad
    r = client.get("/v1/feed", params={"limit": 10001}, headers=auth(tokens, f"{A}:exporter"))
    assert r.status_code == 400


def test_feed_asks_for_the_watermark_once(
    client: TestClient, tokens: dict[str, str], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page is read against the heads it reports: no second watermark query per request."""
    p = Producer(store)
    p.offsets = {0: itertools.count(50_000), 1: itertools.count(50_000)}
    p.batch(2)
    sent: list[str] = []
    original = store._select

    def counted(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        sent.append(sql)
        return original(sql, params)

    monkeypatch.setattr(store, "_select", counted)
    latest = page(client, tokens, start="latest")
    assert latest["count"] == 0 and latest["watermark"]["caught_up"] is True
    assert len(sent) == 1, sent  # start=latest: the heads, nothing else
    heads = {m["partition"]: m["offset"] for m in latest["watermark"]["partitions"]}
    assert heads == store.feed_watermark(A) and set(heads) == {0, 1}
    assert page(client, tokens, cursor=latest["next_cursor"])["count"] == 0

    new = p.batch(3)
    store.insert_rows(new)  # re-delivered before merging: the copies must not hide the rest
    sent.clear()
    body = page(client, tokens, cursor=latest["next_cursor"], limit=2)
    assert len(sent) == 2, sent  # heads, then positions with their rows (a small page)
    assert body["count"] == 2 and body["watermark"]["caught_up"] is False
    marks = {m["partition"]: m["offset"] for m in body["watermark"]["partitions"]}
    assert marks == {0: heads[0] + 2, 1: heads[1] + 1}
    rest = page(client, tokens, cursor=body["next_cursor"], limit=2)
    assert rest["count"] == 1 and rest["watermark"]["caught_up"] is True
    got = [e["event_id"] for e in body["data"] + rest["data"]]
    assert sorted(got) == sorted(str(r[0]) for r in new)


# --- who may read the feed, and the trace it leaves ---------------------------------------


def _edit(cursor: str, **changes: Any) -> str:
    data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data.update(changes)
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def test_feed_needs_exporter_and_only_an_operator_picks_a_tenant(
    client: TestClient, tokens: dict[str, str], store: Store
) -> None:
    p = Producer(store)  # its own events of B (offsets above the other tests'): runs alone too
    p.offsets = {0: itertools.count(10_000), 1: itertools.count(10_000)}
    p.batch(3, tenant=B)
    for role in ("reader", "ingest"):
        r = client.get("/v1/feed", headers=auth(tokens, f"{A}:{role}"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (role, r.text)
    for role in ("exporter", "admin"):
        r = client.get("/v1/feed", params={"tenant": B}, headers=auth(tokens, f"{A}:{role}"))
        assert r.status_code == 403 and r.json()["error"]["field"] == "tenant", (role, r.text)
    body = page(client, tokens, who=f"{A}:operator", tenant=B, limit=1000)
    assert {e["tenant_id"] for e in body["data"]} == {B}
    assert set(p.sent[B]) <= {e["event_id"] for e in body["data"]}


def _trail(kafka_bootstrap: str, topic: str, key_id: str, sessions: int) -> list[dict[str, Any]]:
    """The feed.read events of one key: read until ``sessions`` of them arrived (at most 30 s),
    then 2 s more, which is how a test sees that no extra one came."""

    def mine(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rs if r["action"] == "feed.read" and r["actor"]["id"] == key_id]

    reached: list[float] = []

    def done(rs: list[dict[str, Any]]) -> bool:
        n = len(mine(rs))
        if n >= sessions and not reached:
            reached.append(time.monotonic())
        return n > sessions or bool(reached and time.monotonic() - reached[0] >= 2.0)

    return mine(read_topic(kafka_bootstrap, topic, done, within=30))


def test_feed_reading_is_audited_once_per_cursor_session(
    client: TestClient, store: Store, kafka_bootstrap: str, settings: Settings
) -> None:
    new = KeyStore(settings.resolved_keys_path).create(A, Role.EXPORTER, "siem")
    key_id, who = new.key.key_id, {f"{A}:siem": new.token}
    Producer(store).batch(6)
    # A session: the first page (no cursor) and four pages that continue it.
    body = page(client, who, who=f"{A}:siem", limit=2)
    for _ in range(4):
        body = page(client, who, who=f"{A}:siem", limit=2, cursor=body["next_cursor"])
    trail = _trail(kafka_bootstrap, settings.topic, key_id, 1)
    assert len(trail) == 1, "pages continuing a session must not be audited"
    first = trail[0]
    assert first["tenant_id"] == A and first["source"]["service"] == "auditstream-api"
    assert first["actor"]["type"] == "api_key" and first["actor"]["name"] == "siem"
    assert first["resource"]["type"] == "feed_session" and first["details"] == {"start": "earliest"}
    session = first["resource"]["id"]
    assert orjson.loads(base64.urlsafe_b64decode(body["next_cursor"] + "==="))["s"] == session

    # start=latest is a session too; so is a cursor whose session was edited or removed
    # (the cursor is not signed, the session id is): a forged session never reads silently.
    latest = page(client, who, who=f"{A}:siem", start="latest")
    page(client, who, who=f"{A}:siem", cursor=_edit(body["next_cursor"], s="0123456789abcdef"))
    page(client, who, who=f"{A}:siem", cursor=_edit(body["next_cursor"], s=None, m=None))
    # ... while the cursor of the latest session continues it silently.
    page(client, who, who=f"{A}:siem", cursor=latest["next_cursor"])
    trail = _trail(kafka_bootstrap, settings.topic, key_id, 4)
    assert [t["details"]["start"] for t in trail] == ["earliest", "latest", "cursor", "cursor"]
    assert len({t["resource"]["id"] for t in trail}) == 4


def test_feed_cursor_with_non_ascii_digits_is_400(client: TestClient, tokens: dict[str, str]) -> None:
    # Issue 9: {"p": {"²": 5}} passed str.isdigit() and int() raised: a 500.
    cursor = page(client, tokens, start="latest")["next_cursor"]
    for partitions in ({"²": 5}, {"٣": 1}, {"1²": 2}, {"-1": 3}, {"": 1}, {"0": -1}, {"0": 1.5}):
        r = client.get(
            "/v1/feed", params={"cursor": _edit(cursor, p=partitions)}, headers=auth(tokens, f"{A}:exporter")
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "cursor", (partitions, r.text)


def test_feed_without_a_broker_serves_no_first_page(
    tmp_path: Any, store: Store, clickhouse_dsn: str, clickhouse_database: str
) -> None:
    """The first page is read while its feed.read record is being sent, but never served
    without it: a broker that does not answer is a 503 with no event in it. A page that
    continues a verified session needs no record and is served."""
    from auditstream.api.app import create_app
    from auditstream.api.routes.feed import encode_feed_cursor
    from tests.fixtures.kafka import free_port

    settings = make_settings(
        tmp_path, clickhouse_dsn, clickhouse_database, kafka_bootstrap=f"127.0.0.1:{free_port()}", topic="t"
    )
    tokens = make_tokens(settings, (A,))
    Producer(store).batch(3)
    app = create_app(settings, store)
    app.state.publisher.start_timeout = 0.5
    with TestClient(app, raise_server_exceptions=False) as c:
        for params in (
            {},
            {"start": "latest"},
            {"limit": "1"},
            {"cursor": _edit(page_cursor(A), s=None, m=None)},
        ):
            r = c.get("/v1/feed", params=params, headers=auth(tokens, f"{A}:exporter"))
            assert r.status_code == 503, (params, r.text)
            assert r.json()["error"]["code"] == "unavailable" and "data" not in r.json(), params
            assert r.headers["retry-after"]
        continuing = encode_feed_cursor(A, {}, "0123456789abcdef")
        r = c.get(
            "/v1/feed", params={"cursor": continuing, "limit": 2}, headers=auth(tokens, f"{A}:exporter")
        )
        assert r.status_code == 200 and r.json()["count"] == 2, r.text


def page_cursor(tenant: str) -> str:
    """A cursor of ``tenant`` at the start, with a session this process vouches for."""
    from auditstream.api.routes.feed import encode_feed_cursor

    return encode_feed_cursor(tenant, {}, "fedcba9876543210")
