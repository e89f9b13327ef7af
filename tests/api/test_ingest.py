"""``POST /v1/events``: validation all-or-nothing, tenant scope, size limit, publish to the real broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.api.keys import KeyStore, Role
from auditstream.api.routes.ingest import MAX_BODY_BYTES
from auditstream.config import Settings
from auditstream.store import Store
from tests.api.jobkit import api_settings, bearer, make_event, read_topic
from tests.fixtures.kafka import Topics, new_topics

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]

A, B = "acme", "globex"
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def topics(kafka_bootstrap: str) -> Topics:
    return new_topics(kafka_bootstrap)


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    clickhouse_dsn: str,
    clickhouse_database: str,
    kafka_bootstrap: str,
    topics: Topics,
) -> Settings:
    return api_settings(
        tmp_path_factory.mktemp("ingest"), clickhouse_dsn, clickhouse_database, kafka_bootstrap, topics.events
    )


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    keys = KeyStore(settings.resolved_keys_path)
    return {f"{t}:{r.value}": keys.create(t, r).token for t in (A, B) for r in Role}


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    store = Store(settings.resolved_clickhouse_dsn, settings.clickhouse_database)
    store.open()
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        yield c
    store.close()


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def published(kafka_bootstrap: str, topic: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    records = read_topic(kafka_bootstrap, topic, lambda got: ids <= {r.get("event_id") for r in got})
    return {r["event_id"]: r for r in records if r.get("event_id") in ids}


def test_one_event_and_a_batch_are_published(
    client: TestClient, tokens: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    single = make_event(A, 1)
    r = client.post("/v1/events", json=single, headers=bearer(tokens[f"{A}:ingest"]))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "event_ids": [single["event_id"]]}

    batch = [make_event(A, n) for n in range(2, 52)]
    del batch[0]["event_id"]  # assigned by the API
    body = ndjson(batch).replace(b"\n", b"\n\n", 1)  # blank lines are ignored
    r = client.post("/v1/events", content=body, headers={**bearer(tokens[f"{A}:ingest"]), **NDJSON})
    assert r.status_code == 202, r.text
    ids = r.json()["event_ids"]
    assert len(ids) == 50 and ids[1:] == [e["event_id"] for e in batch[1:]]

    got = published(kafka_bootstrap, topics.events, {*ids, single["event_id"]})
    assert len(got) == 51
    assert all(e["tenant_id"] == A for e in got.values())
    assert got[ids[0]]["action"] == batch[0]["action"]


def test_any_invalid_event_rejects_the_whole_batch(
    client: TestClient, tokens: dict[str, str], kafka_bootstrap: str, topics: Topics
) -> None:
    good = [make_event(A, n) for n in range(3)]
    bad_actor = {**make_event(A, 4), "actor": {"type": "user"}}
    bad_action = {**make_event(A, 5), "action": "Login"}
    lines = [orjson.dumps(e) for e in (good[0], bad_actor, good[1], bad_action, good[2])] + [b"{not json"]
    r = client.post(
        "/v1/events", content=b"\n".join(lines), headers={**bearer(tokens[f"{A}:ingest"]), **NDJSON}
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error" and err["field"] == "1.actor.id"
    problems = {(e["index"], e["field"]) for e in err["errors"]}
    assert {(1, "actor.id"), (3, "action"), (5, "")} <= problems
    assert all(e["message"] for e in err["errors"])
    # Nothing of the batch reached the topic, not even the valid events: a sentinel sent
    # afterwards arrives (same tenant, same partition) and none of them came before it.
    sentinel = make_event(A, 9)
    r = client.post("/v1/events", json=sentinel, headers=bearer(tokens[f"{A}:ingest"]))
    assert r.status_code == 202
    got = published(kafka_bootstrap, topics.events, {sentinel["event_id"]})
    assert set(got) == {sentinel["event_id"]}
    records = read_topic(
        kafka_bootstrap, topics.events, lambda rs: sentinel["event_id"] in {x.get("event_id") for x in rs}
    )
    assert not {e["event_id"] for e in good} & {x.get("event_id") for x in records}


def test_tenant_must_be_the_keys(client: TestClient, tokens: dict[str, str]) -> None:
    mixed = [make_event(A, 1), make_event(B, 2)]
    r = client.post("/v1/events", content=ndjson(mixed), headers={**bearer(tokens[f"{A}:ingest"]), **NDJSON})
    assert r.status_code == 403 and r.json()["error"]["field"] == "tenant_id"
    r = client.post("/v1/events", json=make_event(B, 3), headers=bearer(tokens[f"{A}:ingest"]))
    assert r.status_code == 403 and r.json()["error"]["field"] == "tenant_id"
    # An ingest key cannot select another tenant either.
    r = client.post(
        "/v1/events", params={"tenant": B}, json=make_event(B, 4), headers=bearer(tokens[f"{A}:ingest"])
    )
    assert r.status_code == 403 and r.json()["error"]["field"] == "tenant", r.text


@pytest.mark.parametrize("role", ["reader", "exporter", "admin", "operator"])
def test_only_the_ingest_role_may_ingest(
    client: TestClient, tokens: dict[str, str], kafka_bootstrap: str, topics: Topics, role: str
) -> None:
    # Issue 9: a reader POSTed a forged event. Ingest is its own role now; no other role has it.
    forged = make_event(A, 7)
    r = client.post("/v1/events", json=forged, headers=bearer(tokens[f"{A}:{role}"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert "ingest" in r.json()["error"]["message"]
    sentinel = make_event(A, 8)
    assert client.post("/v1/events", json=sentinel, headers=bearer(tokens[f"{A}:ingest"])).status_code == 202
    records = read_topic(
        kafka_bootstrap, topics.events, lambda rs: sentinel["event_id"] in {x.get("event_id") for x in rs}
    )
    assert forged["event_id"] not in {x.get("event_id") for x in records}


def test_an_ingest_key_reads_nothing(client: TestClient, tokens: dict[str, str]) -> None:
    for path in ("/v1/events", "/v1/stats", "/v1/feed", "/v1/export", "/v1/exports"):
        r = client.get(path, headers=bearer(tokens[f"{A}:ingest"]))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)


@pytest.mark.parametrize("service", ["auditstream-api", "auditstream-cli", " AuditStream-API "])
def test_the_apis_own_trail_cannot_be_imitated(
    client: TestClient, tokens: dict[str, str], kafka_bootstrap: str, topics: Topics, service: str
) -> None:
    good = make_event(A, 1)
    imitation = {
        **make_event(A, 2),
        "action": "export.downloaded",
        "source": {"service": service},
    }
    r = client.post(
        "/v1/events", content=ndjson([good, imitation]), headers={**bearer(tokens[f"{A}:ingest"]), **NDJSON}
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "1.source.service"
    assert {(e["index"], e["field"]) for e in err["errors"]} == {(1, "source.service")}
    assert "reserved" in err["errors"][0]["message"]
    sentinel = make_event(A, 9)
    assert client.post("/v1/events", json=sentinel, headers=bearer(tokens[f"{A}:ingest"])).status_code == 202
    records = read_topic(
        kafka_bootstrap, topics.events, lambda rs: sentinel["event_id"] in {x.get("event_id") for x in rs}
    )
    assert not {good["event_id"], imitation["event_id"]} & {x.get("event_id") for x in records}


def test_limits_and_media_types(client: TestClient, tokens: dict[str, str]) -> None:
    auth = bearer(tokens[f"{A}:ingest"])
    huge = b"x" * (MAX_BODY_BYTES + 1)
    r = client.post("/v1/events", content=huge, headers={**auth, **NDJSON})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(6):
            yield b" " * (1024 * 1024)

    r = client.post("/v1/events", content=chunks(), headers={**auth, **NDJSON})
    assert r.status_code == 413
    r = client.post("/v1/events", content=b"<xml/>", headers={**auth, "Content-Type": "application/xml"})
    assert r.status_code == 415
    for body in (b"", b"[]", b"42", b"null"):
        r = client.post("/v1/events", content=body, headers={**auth, "Content-Type": "application/json"})
        assert r.status_code == 422, (body, r.text)
    assert client.post("/v1/events", json=make_event(A, 1)).status_code == 401


def test_broker_down_is_503_and_publishes_nothing(
    tmp_path: Any, clickhouse_dsn: str, clickhouse_database: str
) -> None:
    from tests.fixtures.kafka import free_port

    settings = api_settings(tmp_path, clickhouse_dsn, clickhouse_database, f"127.0.0.1:{free_port()}", "t")
    token = KeyStore(settings.resolved_keys_path).create(A, Role.INGEST).token
    store = Store(clickhouse_dsn, clickhouse_database)
    store.open()
    try:
        app = create_app(settings, store)
        app.state.publisher.start_timeout = 0.5
        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.post("/v1/events", json=make_event(A, 1), headers=bearer(token))
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
            assert r.headers["retry-after"]
    finally:
        store.close()
