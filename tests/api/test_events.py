"""The query API against a real Store (chDB or a ClickHouse server) and a known data set.

Every expectation is computed from the events this module builds, so a filter that
returns one event too many or too few fails.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.api.keys import KeyStore, Role
from auditstream.api.schemas import Event, EventPage
from auditstream.config import Settings
from auditstream.events.model import AuditEvent
from auditstream.events.stored import enrich
from auditstream.store import Store
from tests.api._support import settings_fixture

pytestmark = pytest.mark.clickhouse

A, B = "acme", "globex"
# Millisecond precision, as stored; a minute back so nothing is "in the future".
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


@dataclass(frozen=True)
class Ev:
    """One source event and the attributes the filters look at."""

    tenant: str
    action: str
    actor: str
    at: datetime
    outcome: str = "success"
    resource_type: str | None = None
    resource_id: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    details: dict[str, str] | None = None

    def to_event(self) -> AuditEvent:
        body: dict[str, Any] = {
            "event_id": self.event_id,
            "tenant_id": self.tenant,
            "occurred_at": self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "action": self.action,
            "actor": {"id": self.actor, "type": "service" if self.actor.startswith("svc-") else "user"},
            "outcome": self.outcome,
        }
        if self.resource_type or self.resource_id:
            body["resource"] = {"type": self.resource_type, "id": self.resource_id}
        if self.outcome == "failure":
            body["reason"] = "denied"
        if self.details:
            body["details"] = self.details
        return AuditEvent.model_validate_json(orjson.dumps(body))


def h(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


EVENTS: list[Ev] = [
    Ev(A, "user.login", "alice", h(1)),
    Ev(A, "user.login", "bob", h(2), outcome="failure"),
    Ev(A, "user.logout", "alice", h(3)),
    Ev(A, "config.updated", "alice", h(4), resource_type="config", resource_id="cfg-1"),
    Ev(A, "config.deleted", "bob", h(5), outcome="failure", resource_type="config", resource_id="cfg-2"),
    # Three events in the same millisecond: the keyset must break ties on event_id.
    Ev(A, "scan.created", "svc-scanner", h(6), resource_type="scan", resource_id="scan-1"),
    Ev(
        A,
        "scan.completed",
        "svc-scanner",
        h(6),
        outcome="unknown",
        resource_type="scan",
        resource_id="scan-1",
    ),
    Ev(A, "scan.created", "svc-scanner", h(6), resource_type="scan", resource_id="scan-2"),
    # Shares the "config" spelling but not the "config." prefix: `config.*` must not match it.
    Ev(A, "configuration.viewed", "carol", h(8)),
    Ev(
        A,
        "key.created",
        "carol",
        h(30),
        resource_type="api_key",
        resource_id="key-1",
        details={"token": "abc"},
    ),
    Ev(A, "user.login", "carol", h(72)),
    Ev(
        A, "config.updated", "carol", h(240), resource_type="config", resource_id="cfg-1"
    ),  # 10 days: outside default
    # Same actor ids, actions and resources as tenant A: isolation must be by tenant, not by luck.
    Ev(B, "user.login", "alice", h(1)),
    Ev(B, "config.updated", "alice", h(4), resource_type="config", resource_id="cfg-1"),
    Ev(B, "scan.created", "svc-scanner", h(6), resource_type="scan", resource_id="scan-1"),
    Ev(B, "user.login", "mallory", h(50), outcome="failure"),
]
# A run of scan progress events, two per millisecond, for pagination.
for i in range(24):
    EVENTS.append(
        Ev(
            A,
            "scan.progress",
            "svc-scanner",
            h(7) - timedelta(minutes=i // 2),
            resource_type="scan",
            resource_id="scan-1",
        )
    )

BY_ID = {e.event_id: e for e in EVENTS}
DEFAULT_SINCE = timedelta(days=7)


def expected(
    tenant: str, pred: Callable[[Ev], bool] = lambda e: True, since: timedelta = DEFAULT_SINCE
) -> set[str]:
    return {e.event_id for e in EVENTS if e.tenant == tenant and e.at >= NOW - since and pred(e)}


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(clickhouse_dsn: str, clickhouse_database: str) -> Iterator[Store]:
    s = Store(clickhouse_dsn, clickhouse_database)
    s.open()
    received = datetime.now(UTC)
    rows = [
        enrich(e.to_event(), topic="audit.events", partition=0, offset=n, received_at=received)
        for n, e in enumerate(EVENTS)
    ]
    s.insert_rows(rows)
    # At-least-once delivery: the first event arrives a second time in another insert.
    s.insert_rows(rows[:1])
    yield s
    s.close()


settings = settings_fixture("api")


@pytest.fixture(scope="module")
def keystore(settings: Settings) -> KeyStore:
    return KeyStore(settings.resolved_keys_path)


@pytest.fixture(scope="module")
def tokens(keystore: KeyStore) -> dict[str, str]:
    return {
        f"{tenant}:{role.value}": keystore.create(tenant, role, f"test {role.value}").token
        for tenant in (A, B)
        for role in Role
    }


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    app = create_app(settings, store)

    @app.get("/test/boom")
    def boom() -> dict[str, str]:
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def get_events(client: TestClient, tokens: dict[str, str], who: str = f"{A}:reader", **params: Any) -> Any:
    r = client.get("/v1/events", params=params, headers=auth(tokens, who))
    assert r.status_code == 200, r.text
    return r.json()


def all_pages(
    client: TestClient, tokens: dict[str, str], who: str = f"{A}:reader", **params: Any
) -> list[dict]:
    """Follow next_cursor to the end; fail on a repeated cursor (a loop)."""
    out: list[dict] = []
    seen_cursors: set[str] = set()
    cursor = None
    while True:
        page = get_events(client, tokens, who, **params, **({"cursor": cursor} if cursor else {}))
        assert page["count"] == len(page["data"])
        out.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out
        assert page["data"], "a page with a next_cursor must not be empty"
        assert cursor not in seen_cursors
        seen_cursors.add(cursor)


def assert_error(r: Any, status: int, field: str | None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"]["field"] == field, body
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in r.text
    return body["error"]


# --- auth ----------------------------------------------------------------------------


def test_missing_header_is_401(client: TestClient) -> None:
    r = client.get("/v1/events")
    assert_error(r, 401, None, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token ask_0123456789abcdef_x", "Bearer a b"],
)
def test_malformed_header_is_401(client: TestClient, header: str) -> None:
    assert_error(client.get("/v1/events", headers={"Authorization": header}), 401, None, "unauthorized")


def test_unknown_and_wrong_secret_are_401(client: TestClient, tokens: dict[str, str]) -> None:
    good = tokens[f"{A}:reader"]
    key_id = good.split("_")[1]
    for token in ("ask_0123456789abcdef_" + "x" * 43, f"ask_{key_id}_" + "y" * 43, "not-a-key"):
        r = client.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
        assert_error(r, 401, None, "unauthorized")


def test_revoked_key_stops_working_within_cache_ttl(client: TestClient, keystore: KeyStore) -> None:
    verifier = client.app.state.verifier  # type: ignore[attr-defined]
    clock = [1000.0]
    original = verifier.clock
    verifier.clock = lambda: clock[0]
    try:
        new = keystore.create(A, Role.READER, "to revoke")
        headers = {"Authorization": f"Bearer {new.token}"}
        assert client.get("/v1/events", headers=headers).status_code == 200
        assert keystore.revoke(new.key.key_id)
        # Still cached: the documented grace is the cache TTL (at most 5 s), not forever.
        assert client.get("/v1/events", headers=headers).status_code == 200
        clock[0] += verifier.ttl + 0.001
        assert_error(client.get("/v1/events", headers=headers), 401, None, "unauthorized")
    finally:
        verifier.clock = original


def test_key_revoked_before_first_use_is_401(client: TestClient, keystore: KeyStore) -> None:
    new = keystore.create(A, Role.ADMIN)
    keystore.revoke(new.key.key_id)
    r = client.get("/v1/events", headers={"Authorization": f"Bearer {new.token}"})
    assert_error(r, 401, None, "unauthorized")


def test_reader_cannot_export(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/v1/export", headers=auth(tokens, f"{A}:reader"))
    assert_error(r, 403, None, "forbidden")


@pytest.mark.parametrize("role", ["reader", "exporter", "admin"])
def test_non_operator_cannot_pick_another_tenant(
    client: TestClient, tokens: dict[str, str], role: str
) -> None:
    # A tenant admin administers its own tenant only (issue 9): other tenants need an operator.
    for path in ("/v1/events", "/v1/export", f"/v1/events/{EVENTS[12].event_id}"):
        r = client.get(path, params={"tenant": B}, headers=auth(tokens, f"{A}:{role}"))
        if path == "/v1/export" and role == "reader":
            assert_error(r, 403, None, "forbidden")  # the role check comes first
        else:
            assert_error(r, 403, "tenant", "forbidden")


def test_naming_own_tenant_is_allowed(client: TestClient, tokens: dict[str, str]) -> None:
    page = get_events(client, tokens, tenant=A)
    assert {e["event_id"] for e in page["data"]} == expected(A)


def test_operator_may_pick_another_tenant(client: TestClient, tokens: dict[str, str]) -> None:
    page = get_events(client, tokens, f"{A}:operator", tenant=B)
    assert {e["event_id"] for e in page["data"]} == expected(B)
    assert {e["tenant_id"] for e in page["data"]} == {B}
    r = client.get("/v1/events", params={"tenant": "bad tenant!"}, headers=auth(tokens, f"{A}:operator"))
    assert_error(r, 400, "tenant")


# --- tenant isolation -------------------------------------------------------------------


def test_tenant_b_sees_none_of_tenant_a(client: TestClient, tokens: dict[str, str]) -> None:
    a_ids = {e.event_id for e in EVENTS if e.tenant == A}
    listed = all_pages(client, tokens, f"{B}:reader", since="-30d", limit=2)
    assert {e["event_id"] for e in listed} == expected(B, since=timedelta(days=30))
    assert not a_ids & {e["event_id"] for e in listed}

    for event_id in a_ids:
        r = client.get(f"/v1/events/{event_id}", headers=auth(tokens, f"{B}:admin"))
        assert_error(r, 404, "event_id", "not_found")

    r = client.get("/v1/export", params={"since": "-30d"}, headers=auth(tokens, f"{B}:exporter"))
    assert r.status_code == 200
    exported = {orjson.loads(line)["event_id"] for line in r.content.splitlines()}
    assert exported == expected(B, since=timedelta(days=30))


def test_detail_returns_every_field(client: TestClient, tokens: dict[str, str]) -> None:
    src = EVENTS[9]  # key.created with a secret-looking detail
    r = client.get(f"/v1/events/{src.event_id}", headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 200
    body = r.json()
    Event.model_validate(body)
    assert body["event_id"] == src.event_id
    assert body["tenant_id"] == A and body["action"] == "key.created"
    assert body["actor"]["id"] == "carol"
    assert body["resource"] == {"type": "api_key", "id": "key-1"}
    assert body["details"] == {"token": "[REDACTED]"}
    assert body["occurred_at"] == src.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert body["ingest"]["topic"] == "audit.events"
    for name in ("received_at", "category", "severity", "outcome", "schema_version"):
        assert name in body


def test_detail_uppercase_uuid_and_errors(client: TestClient, tokens: dict[str, str]) -> None:
    src = EVENTS[0]
    r = client.get(f"/v1/events/{src.event_id.upper()}", headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 200 and r.json()["event_id"] == src.event_id
    assert_error(
        client.get("/v1/events/not-a-uuid", headers=auth(tokens, f"{A}:reader")),
        400,
        "event_id",
        "invalid_parameter",
    )
    r = client.get(f"/v1/events/{uuid.uuid4()}", headers=auth(tokens, f"{A}:reader"))
    assert_error(r, 404, "event_id", "not_found")


# --- filters ----------------------------------------------------------------------------

FILTER_CASES: list[tuple[dict[str, Any], Callable[[Ev], bool], timedelta]] = [
    ({}, lambda e: True, DEFAULT_SINCE),
    ({"actor": "alice"}, lambda e: e.actor == "alice", DEFAULT_SINCE),
    ({"actor": ["alice", "bob"]}, lambda e: e.actor in {"alice", "bob"}, DEFAULT_SINCE),
    ({"action": "user.login"}, lambda e: e.action == "user.login", DEFAULT_SINCE),
    (
        {"action": "user.login,user.logout"},
        lambda e: e.action in {"user.login", "user.logout"},
        DEFAULT_SINCE,
    ),
    (
        {"action": ["user.logout", "key.created"]},
        lambda e: e.action in {"user.logout", "key.created"},
        DEFAULT_SINCE,
    ),
    ({"action": "config.*"}, lambda e: e.action.startswith("config."), DEFAULT_SINCE),
    ({"action": "config.*", "since": "-11d"}, lambda e: e.action.startswith("config."), timedelta(days=11)),
    (
        {"action": ["scan.*", "user.logout"]},
        lambda e: e.action.startswith("scan.") or e.action == "user.logout",
        DEFAULT_SINCE,
    ),
    ({"resource_type": "config"}, lambda e: e.resource_type == "config", DEFAULT_SINCE),
    ({"resource_id": "scan-1"}, lambda e: e.resource_id == "scan-1", DEFAULT_SINCE),
    (
        {"resource_type": "scan", "resource_id": "scan-2"},
        lambda e: e.resource_type == "scan" and e.resource_id == "scan-2",
        DEFAULT_SINCE,
    ),
    ({"outcome": "failure"}, lambda e: e.outcome == "failure", DEFAULT_SINCE),
    ({"outcome": "unknown"}, lambda e: e.outcome == "unknown", DEFAULT_SINCE),
    ({"since": "-26h"}, lambda e: True, timedelta(hours=26)),
    ({"since": "-11d"}, lambda e: True, timedelta(days=11)),
    (
        {"actor": "carol", "action": "user.*", "outcome": "success"},
        lambda e: e.actor == "carol" and e.action.startswith("user."),
        DEFAULT_SINCE,
    ),
    ({"actor": "nobody"}, lambda e: False, DEFAULT_SINCE),
]


@pytest.mark.parametrize(("params", "pred", "since"), FILTER_CASES, ids=[str(c[0]) for c in FILTER_CASES])
def test_filter_returns_exactly_the_expected_events(
    client: TestClient,
    tokens: dict[str, str],
    params: dict[str, Any],
    pred: Callable[[Ev], bool],
    since: timedelta,
) -> None:
    page = get_events(client, tokens, limit=1000, **params)
    EventPage.model_validate(page)
    ids = [e["event_id"] for e in page["data"]]
    assert len(ids) == len(set(ids)), "an event was returned twice (duplicate insert must be collapsed)"
    assert set(ids) == expected(A, pred, since)
    assert page["next_cursor"] is None and page["count"] == len(ids)
    times = [e["occurred_at"] for e in page["data"]]
    assert times == sorted(times, reverse=True)


def test_absolute_window(client: TestClient, tokens: dict[str, str]) -> None:
    since = (NOW - timedelta(hours=5, minutes=30)).isoformat().replace("+00:00", "Z")
    # The same instant written with a +02:00 offset.
    until = (NOW - timedelta(hours=1, minutes=30)).astimezone(timezone(timedelta(hours=2))).isoformat()
    page = get_events(client, tokens, since=since, until=until)
    assert {e["event_id"] for e in page["data"]} == {
        e.event_id for e in EVENTS if e.tenant == A and h(5.5) <= e.at < h(1.5)
    }


def test_default_window_is_seven_days(client: TestClient, tokens: dict[str, str]) -> None:
    ids = {e["event_id"] for e in get_events(client, tokens, limit=1000)["data"]}
    old = EVENTS[11]
    assert old.event_id not in ids
    assert old.event_id in {
        e["event_id"] for e in get_events(client, tokens, limit=1000, since="-11d")["data"]
    }


# --- pagination -------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("limit", [1, 3, 7])
def test_cursor_visits_every_event_exactly_once(
    client: TestClient, tokens: dict[str, str], order: str, limit: int
) -> None:
    paged = all_pages(client, tokens, order=order, limit=limit, since="-11d")
    ids = [e["event_id"] for e in paged]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected(A, since=timedelta(days=11))
    # Pages concatenate to exactly the single-page answer, in the same order.
    single = get_events(client, tokens, order=order, limit=1000, since="-11d")["data"]
    assert paged == single
    times = [e["occurred_at"] for e in paged]
    assert times == sorted(times, reverse=order == "desc")


def test_asc_is_desc_reversed(client: TestClient, tokens: dict[str, str]) -> None:
    desc = [e["event_id"] for e in all_pages(client, tokens, order="desc", limit=4)]
    asc = [e["event_id"] for e in all_pages(client, tokens, order="asc", limit=4)]
    assert asc == desc[::-1]


def test_cursor_with_filters_keeps_filters(client: TestClient, tokens: dict[str, str]) -> None:
    paged = all_pages(client, tokens, action="scan.*", actor="svc-scanner", limit=5)
    assert {e["event_id"] for e in paged} == expected(A, lambda e: e.action.startswith("scan."))


def _first_cursor(client: TestClient, tokens: dict[str, str], **params: Any) -> str:
    cursor = get_events(client, tokens, limit=2, **params)["next_cursor"]
    assert cursor
    return cursor


def test_cursor_with_other_filters_or_order_is_400(client: TestClient, tokens: dict[str, str]) -> None:
    cursor = _first_cursor(client, tokens, action="scan.*")
    hdr = auth(tokens, f"{A}:reader")
    for params in (
        {"action": "user.*"},
        {},
        {"action": "scan.*", "actor": "alice"},
        {"action": "scan.*", "order": "asc"},
        {"action": "scan.*", "since": "-1d"},
    ):
        r = client.get("/v1/events", params={**params, "cursor": cursor}, headers=hdr)
        assert_error(r, 400, "cursor", "invalid_parameter")
    # Another tenant's key (admin, same filters) cannot reuse it either.
    r = client.get(
        "/v1/events", params={"action": "scan.*", "cursor": cursor}, headers=auth(tokens, f"{B}:admin")
    )
    assert_error(r, 400, "cursor")
    # Comma-separated and repeated spellings of the same filter are the same query.
    c2 = _first_cursor(client, tokens, action="user.login,scan.*")
    r = client.get("/v1/events", params={"action": ["scan.*", "user.login"], "cursor": c2}, headers=hdr)
    assert r.status_code == 200


def _reencode(cursor: str, **changes: Any) -> str:
    data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data.update(changes)
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


Y1 = "0001-01-01"


def test_tampered_cursor_is_400(client: TestClient, tokens: dict[str, str]) -> None:
    cursor = _first_cursor(client, tokens)
    hdr = auth(tokens, f"{A}:reader")
    tampered = [
        "garbage",
        "!!!",
        cursor[:-3],
        cursor[::-1],
        base64.urlsafe_b64encode(b"[1,2,3]").decode(),
        _reencode(cursor, h="0000000000000000"),
        _reencode(cursor, o="asc"),
        _reencode(cursor, id="not-a-uuid"),
        _reencode(cursor, t="yesterday"),
        _reencode(cursor, t="2025-01-01T00:00:00"),  # naive
        _reencode(cursor, v=2),
        _reencode(cursor, s="1970-01-01T00:00:00+00:00"),  # window beyond the limit
        _reencode(cursor, u="1970-01-01T00:00:00+00:00"),  # until before since
        # Year 1 (issue 9: a 503 from ClickHouse's BAD_QUERY_PARAMETER before): outside DateTime64.
        _reencode(cursor, t=f"{Y1}T00:00:00+00:00", s=f"{Y1}T00:00:00+00:00", u="0001-01-02T00:00:00+00:00"),
        _reencode(cursor, t="0001-01-01T12:00:00+00:00"),  # the last row outside its own window
        # Representable, but older than the retention: no page we issue carries it.
        _reencode(cursor, t="1990-01-01T12:00:00Z", s="1990-01-01T00:00:00Z", u="1990-01-02T00:00:00Z"),
        _reencode(cursor, t="2299-12-31T00:00:00Z", s="2299-12-30T00:00:00Z", u="2300-01-01T00:00:00Z"),
        "A" * 2000,
    ]
    for bad in tampered:
        r = client.get("/v1/events", params={"cursor": bad}, headers=hdr)
        assert_error(r, 400, "cursor", "invalid_parameter")


# --- export -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"order": "asc"},
        {"action": "scan.*"},
        {"since": "-11d", "actor": ["alice", "carol"]},
        {"outcome": "failure"},
    ],
)
def test_ndjson_export_equals_paged_result(
    client: TestClient, tokens: dict[str, str], params: dict[str, Any]
) -> None:
    paged = all_pages(client, tokens, limit=3, **params)
    r = client.get("/v1/export", params={"format": "ndjson", **params}, headers=auth(tokens, f"{A}:exporter"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="auditstream-acme-') and disposition.endswith(
        '.ndjson"'
    )
    lines = r.content.splitlines()
    assert r.content.endswith(b"\n") or not r.content
    assert [orjson.loads(line) for line in lines] == paged


def test_json_export_and_default_format(client: TestClient, tokens: dict[str, str]) -> None:
    paged = all_pages(client, tokens, limit=50)
    hdr = auth(tokens, f"{A}:admin")
    r = client.get("/v1/export", params={"format": "json"}, headers=hdr)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == paged
    r = client.get("/v1/export", headers=hdr)  # default: ndjson
    assert [orjson.loads(line) for line in r.content.splitlines()] == paged
    # No match: an empty file, a valid empty array.
    assert client.get("/v1/export", params={"actor": "nobody"}, headers=hdr).content == b""
    assert client.get("/v1/export", params={"actor": "nobody", "format": "json"}, headers=hdr).json() == []


def test_export_rejects_unknown_format_and_bad_filters(client: TestClient, tokens: dict[str, str]) -> None:
    hdr = auth(tokens, f"{A}:exporter")
    assert_error(client.get("/v1/export", params={"format": "parquet"}, headers=hdr), 400, "format")
    assert_error(client.get("/v1/export", params={"format": "xml"}, headers=hdr), 400, "format")
    assert_error(client.get("/v1/export", params={"since": "-200d"}, headers=hdr), 400, "since")
    assert_error(client.get("/v1/export", params={"action": "Bad"}, headers=hdr), 400, "action")


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"outcome": "maybe"}, "outcome"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-01-01T00:00:00"}, "since"),  # naive
        ({"since": "2025-13-01T00:00:00Z"}, "since"),
        ({"since": "-93d"}, "since"),  # over max_window_days (92)
        ({"since": "-1h", "until": "-2h"}, "since"),
        ({"until": "soon"}, "until"),
        ({"since": "-9999999d"}, "since"),
        ({"action": "Config.Updated"}, "action"),
        ({"action": "config"}, "action"),
        ({"action": "*"}, "action"),
        ({"action": "config.*.x"}, "action"),
        ({"action": "config*"}, "action"),
        ({"action": [f"a.b{i}" for i in range(101)]}, "action"),
        ({"resource_type": ""}, "resource_type"),
        ({"resource_id": "x" * 300}, "resource_id"),
        ({"actor": "x" * 300}, "actor"),
        ({"tenant": "x" * 65}, "tenant"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(
    client: TestClient, tokens: dict[str, str], params: dict[str, Any], field: str
) -> None:
    r = client.get("/v1/events", params=params, headers=auth(tokens, f"{A}:admin"))
    assert_error(r, 400, field, "invalid_parameter")


def test_unknown_route_and_method(client: TestClient, tokens: dict[str, str]) -> None:
    assert_error(client.get("/v1/nothing"), 404, None, "not_found")
    assert_error(
        client.post("/v1/export", headers=auth(tokens, f"{A}:admin")), 405, None, "method_not_allowed"
    )


def test_unexpected_exception_is_a_generic_500(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="auditstream.api.errors"):
        r = client.get("/test/boom")
    err = assert_error(r, 500, None, "internal_error")
    assert "secret internal detail" not in r.text and "RuntimeError" not in r.text
    assert err["message"] == "internal server error"
    assert any("secret internal detail" in (rec.exc_text or "") for rec in caplog.records)


# --- injection --------------------------------------------------------------------------

INJECTIONS = [
    "' OR 1=1 --",
    "alice' OR '1'='1",
    "x'); DROP TABLE audit_events; --",
    "acme' OR tenant_id != 'acme",
    "{f_tenant:String}",
    "} OR 1=1 --",
    "\\' OR 1=1 --",
    '" OR ""="',
    "%' OR '%'='",
    "1 UNION SELECT * FROM system.tables",
    "config.* OR 1=1",
    "scan.*'); SELECT 1; --",
    "\x00",
    "\u202e\U0001f642",
]
PARAMS = [
    "since",
    "until",
    "actor",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "order",
    "limit",
    "cursor",
    "tenant",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_never_500_never_leaks(client: TestClient, tokens: dict[str, str], payload: str) -> None:
    a_ids = {e.event_id for e in EVENTS if e.tenant == A}
    for who in (f"{B}:reader", f"{B}:admin"):
        hdr = auth(tokens, who)
        for name in PARAMS:
            r = client.get("/v1/events", params={name: payload}, headers=hdr)
            assert r.status_code < 500, (name, r.text)
            if r.status_code == 200:
                assert not a_ids & {e["event_id"] for e in r.json()["data"]}, name
            else:
                assert 400 <= r.status_code < 500
                assert_error(r, r.status_code, r.json()["error"]["field"])
            r = client.get("/v1/export", params={name: payload, "format": "ndjson"}, headers=hdr)
            assert r.status_code < 500, (name, r.text)
            if r.status_code == 200:
                assert not a_ids & {orjson.loads(x)["event_id"] for x in r.content.splitlines()}
        r = client.get("/v1/export", params={"format": payload}, headers=hdr)
        if who.endswith("admin"):
            assert_error(r, 400, "format")
        else:
            assert_error(r, 403, None)  # a reader never gets as far as the format
        r = client.get(f"/v1/events/{quote(payload, safe='')}", headers=hdr)
        assert r.status_code in (400, 404), r.text
    # And the data is still all there.
    assert {e["event_id"] for e in all_pages(client, tokens, since="-11d", limit=1000)} == expected(
        A, since=timedelta(days=11)
    )


# --- metrics ----------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template(client: TestClient, tokens: dict[str, str]) -> None:
    client.get(f"/v1/events/{EVENTS[0].event_id}", headers=auth(tokens, f"{A}:reader"))
    text = client.get("/metrics").text
    assert 'route="/v1/events/{event_id}"' in text
    assert "auditstream_api_request_duration_seconds_bucket" in text
    assert EVENTS[0].event_id not in text  # raw paths never become labels


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/events", "/v1/events/{event_id}", "/v1/export", "/healthz", "/readyz", "/metrics"):
        assert p in paths


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_export_across_many_store_chunks(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Small reads of the stream: many pieces through the producer thread, same result."""
    monkeypatch.setattr(client.app.state.settings, "export_read_bytes", 300)  # type: ignore[attr-defined]
    paged = all_pages(client, tokens, limit=1000, since="-11d", order="asc")
    assert len(paged) > 3 * 5
    params = {"format": fmt, "since": "-11d", "order": "asc"}
    r = client.get("/v1/export", params=params, headers=auth(tokens, f"{A}:admin"))
    assert r.status_code == 200
    got = r.json() if fmt == "json" else [orjson.loads(line) for line in r.content.splitlines()]
    assert got == paged
