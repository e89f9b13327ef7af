"""Search (ip, several actions, free text, windows, retention) and /v1/stats on a known data set."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from auditstream.config import Settings
from auditstream.events.model import AuditEvent
from auditstream.store import Store
from tests.api._support import auth, client_for, event, make_tokens, row, settings_fixture

pytestmark = pytest.mark.clickhouse

A, B = "acme", "globex"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
ACTIONS = ["user.login", "user.logout", "config.updated", "scan.created", "key.created"]
IPS = ["10.0.0.5", "10.1.2.3", "192.168.1.7", "2001:db8::1", "2001:db8:1::9", "fe80::1", None]


def _build() -> list[AuditEvent]:
    out: list[AuditEvent] = []
    for i in range(120):
        tenant = A if i % 4 else B
        ip = IPS[i % len(IPS)]
        actor: dict[str, Any] = {"name": f"User {i % 5}", "email": f"u{i % 5}@example.com"}
        if ip:
            actor["ip"] = ip
        extra: dict[str, Any] = {"actor": actor}
        if i % 9 == 0:
            extra["outcome"] = "failure"
            extra["reason"] = "Password Expired" if i % 2 else "mfa_required 100%"
        if i % 7 == 0:
            extra["details"] = {"ticket": f"INC-{1000 + i}", "note": "rotated_by_ops"}
        if i % 5 == 0:
            extra["resource"] = {"type": "scan", "id": f"scan-{i}", "name": f"Nightly Scan {i}"}
        out.append(
            event(tenant, ACTIONS[i % len(ACTIONS)], f"actor-{i % 6}", NOW - timedelta(hours=i), **extra)
        )
    # older than the default 7 days but within retention
    out.append(event(A, "user.login", "old-actor", NOW - timedelta(days=20), actor={"ip": "10.9.9.9"}))
    return out


EVENTS = _build()


@pytest.fixture(scope="module")
def store(clickhouse_dsn: str, clickhouse_database: str) -> Iterator[Store]:
    s = Store(clickhouse_dsn, clickhouse_database, retention_days=30)
    s.open()
    rows = [row(e, n) for n, e in enumerate(EVENTS)]
    s.insert_rows(rows)
    s.insert_rows(rows[:10])  # at-least-once: duplicates must not be counted twice
    yield s
    s.close()


settings = settings_fixture("search", retention_days=30, max_window_days=14)


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    return make_tokens(settings, (A, B))


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    yield from client_for(settings, store)


def ids(client: TestClient, tokens: dict[str, str], **params: Any) -> set[str]:
    r = client.get("/v1/events", params={"limit": 1000, **params}, headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 200, r.text
    return {e["event_id"] for e in r.json()["data"]}


def expect(pred: Any, days: int = 7) -> set[str]:
    return {
        str(e.event_id)
        for e in EVENTS
        if e.tenant_id == A and e.occurred_at >= NOW - timedelta(days=days) and pred(e)
    }


def _ip(e: AuditEvent) -> str | None:
    return e.actor.ip


@pytest.mark.parametrize(
    ("ip", "pred"),
    [
        ("10.0.0.0/8", lambda ip: ip is not None and ip.startswith("10.")),
        ("10.1.2.3", lambda ip: ip == "10.1.2.3"),
        ("10.1.2.3/32", lambda ip: ip == "10.1.2.3"),
        ("192.168.0.0/16", lambda ip: ip == "192.168.1.7"),
        ("2001:db8::/32", lambda ip: ip is not None and ip.startswith("2001:db8")),
        ("2001:db8:1::/48", lambda ip: ip == "2001:db8:1::9"),
        ("2001:DB8::1", lambda ip: ip == "2001:db8::1"),
        ("fe80::/10", lambda ip: ip == "fe80::1"),
        ("0.0.0.0/0", lambda ip: ip is not None and ":" not in ip),
    ],
)
def test_ip_and_cidr(client: TestClient, tokens: dict[str, str], ip: str, pred: Any) -> None:
    want = expect(lambda e: pred(_ip(e)))
    assert want
    assert ids(client, tokens, ip=ip) == want


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-an-ip", "1.2.3.4.5", "' OR 1=1 --", "::g"])
def test_bad_ip_is_400(client: TestClient, tokens: dict[str, str], bad: str) -> None:
    r = client.get("/v1/events", params={"ip": bad}, headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "ip"


def test_several_actions_and_prefix(client: TestClient, tokens: dict[str, str]) -> None:
    want = expect(lambda e: e.action in ("user.login", "scan.created"))
    assert ids(client, tokens, action=["user.login", "scan.created"]) == want
    assert ids(client, tokens, action="user.login,scan.created") == want
    want = expect(lambda e: e.action.startswith("user.") or e.action == "key.created")
    assert ids(client, tokens, action=["user.*", "key.created"]) == want


def _text(e: AuditEvent) -> str:
    parts = [e.actor.id, e.actor.name or "", e.actor.email or "", e.action, e.reason or ""]
    if e.resource:
        parts += [e.resource.type or "", e.resource.id or "", e.resource.name or ""]
    parts += list((e.details or {}).values())
    return "\n".join(parts).lower()


@pytest.mark.parametrize(
    "q",
    [
        "password",
        "EXPIRED",
        "inc-1028",
        "nightly scan 4",
        "u3@example",
        "100%",
        "rotated_by",
        "actor-5",
        "config.upd",
        "scan-",
        "zzz-nothing",
        "it's",
        "%",
        "_",
    ],
)
def test_free_text(client: TestClient, tokens: dict[str, str], q: str) -> None:
    want = expect(lambda e: q.lower() in _text(e))
    assert ids(client, tokens, q=q) == want


def test_free_text_combines_with_filters(client: TestClient, tokens: dict[str, str]) -> None:
    want = expect(lambda e: "example" in _text(e) and e.actor.ip == "10.1.2.3" and e.action == "user.login")
    assert ids(client, tokens, q="example", ip="10.1.2.3", action="user.login") == want


def test_relative_times_and_window(client: TestClient, tokens: dict[str, str]) -> None:
    # "-24h" is relative to the request, not to when the events were made (NOW).
    cutoff = datetime.now(UTC) - timedelta(hours=24)
    assert ids(client, tokens, since="-24h") == expect(lambda e: e.occurred_at >= cutoff, days=2)
    assert ids(client, tokens, since="-21d", until="-10d", ip="10.9.9.9") == expect(
        lambda e: e.actor.ip == "10.9.9.9", days=21
    )
    h = auth(tokens, f"{A}:reader")
    r = client.get("/v1/events", params={"since": "-15d", "until": "-0d"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "since"


@pytest.mark.parametrize("route", ["/v1/events", "/v1/stats", "/v1/export"])
def test_since_beyond_retention_is_400(client: TestClient, tokens: dict[str, str], route: str) -> None:
    r = client.get(route, params={"since": "-31d", "until": "-25d"}, headers=auth(tokens, f"{A}:exporter"))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "since"
    assert "kept 30 days" in err["message"]


# --- stats --------------------------------------------------------------------------


def stats(client: TestClient, tokens: dict[str, str], who: str = f"{A}:reader", **params: Any) -> dict:
    r = client.get("/v1/stats", params=params, headers=auth(tokens, who))
    assert r.status_code == 200, r.text
    return r.json()


def _events(tenant: str = A, days: int = 7) -> list[AuditEvent]:
    return [e for e in EVENTS if e.tenant_id == tenant and e.occurred_at >= NOW - timedelta(days=days)]


@pytest.mark.parametrize(
    ("group_by", "key"),
    [
        ("action", lambda e: e.action),
        ("actor", lambda e: e.actor.id),
        ("outcome", lambda e: e.outcome.value),
        ("category", lambda e: {"user": "authentication"}.get(e.action.split(".")[0])),
    ],
)
def test_stats_equal_python_counts(
    client: TestClient, tokens: dict[str, str], group_by: str, key: Any
) -> None:
    body = stats(client, tokens, group_by=group_by, limit=1000)
    got = {g["key"]: g["count"] for g in body["data"]}
    assert body["total"] == len(_events())
    assert sum(got.values()) == body["total"]
    if group_by != "category":
        assert got == dict(Counter(key(e) for e in _events()))
    else:
        assert got.get("authentication") == sum(1 for e in _events() if e.action.startswith("user."))
    counts = [g["count"] for g in body["data"]]
    assert counts == sorted(counts, reverse=True)


def test_stats_top_n_and_filters(client: TestClient, tokens: dict[str, str]) -> None:
    evs = [e for e in _events() if e.actor.ip and e.actor.ip.startswith("10.")]
    want = Counter(e.actor.id for e in evs)
    body = stats(client, tokens, group_by="actor", ip="10.0.0.0/8", limit=2)
    assert body["groups"] == len(want) and body["total"] == len(evs)
    assert len(body["data"]) == 2
    top = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    assert [(g["key"], g["count"]) for g in body["data"]] == top


@pytest.mark.parametrize("bucket", ["hour", "day"])
def test_stats_time_buckets(client: TestClient, tokens: dict[str, str], bucket: str) -> None:
    body = stats(client, tokens, group_by="time", bucket=bucket, since="-3d", limit=1000)
    evs = _events(days=3)
    trunc = (
        (lambda d: d.replace(minute=0, second=0, microsecond=0))
        if bucket == "hour"
        else (lambda d: d.replace(hour=0, minute=0, second=0, microsecond=0))
    )
    want = Counter(trunc(e.occurred_at.astimezone(UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for e in evs)
    assert {g["key"]: g["count"] for g in body["data"]} == dict(want)
    assert [g["key"] for g in body["data"]] == sorted(want)


def test_stats_tenant_isolation_and_bad_group(client: TestClient, tokens: dict[str, str]) -> None:
    body = stats(client, tokens, who=f"{B}:reader", group_by="action", limit=1000)
    assert body["total"] == len(_events(B))
    r = client.get("/v1/stats", params={"group_by": "tenant_id"}, headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 400 and r.json()["error"]["field"] == "group_by"
    r = client.get("/v1/stats", params={"tenant": B}, headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 403


# --- details.KEY=VALUE (the filter alert rules take too) ------------------------------


def _details(e: AuditEvent) -> dict[str, str]:
    return e.details or {}


def test_details_key_value_filters_events_stats_and_export(
    client: TestClient, tokens: dict[str, str]
) -> None:
    want = expect(lambda e: _details(e).get("note") == "rotated_by_ops")
    assert len(want) > 3
    assert ids(client, tokens, **{"details.note": "rotated_by_ops"}) == want
    # Repeated: any of the values; with another filter: both.
    two = expect(lambda e: _details(e).get("ticket") in ("INC-1007", "INC-1014"))
    assert len(two) == 2
    assert ids(client, tokens, **{"details.ticket": ["INC-1007", "INC-1014"]}) == two
    both = expect(lambda e: _details(e).get("note") == "rotated_by_ops" and e.action == "config.updated")
    assert ids(client, tokens, action="config.updated", **{"details.note": "rotated_by_ops"}) == both
    # Exact strings: no substring, no case folding, and a key an event lacks matches nothing.
    assert ids(client, tokens, **{"details.note": "rotated"}) == set()
    assert ids(client, tokens, **{"details.note": "ROTATED_BY_OPS"}) == set()
    assert ids(client, tokens, **{"details.absent": "rotated_by_ops"}) == set()
    assert stats(client, tokens, group_by="action", **{"details.note": "rotated_by_ops"})["total"] == len(
        want
    )
    r = client.get(
        "/v1/export", params={"details.note": "rotated_by_ops"}, headers=auth(tokens, f"{A}:exporter")
    )
    assert r.status_code == 200, r.text
    assert {orjson.loads(line)["event_id"] for line in r.text.splitlines() if line} == want


def test_details_filter_survives_paging(client: TestClient, tokens: dict[str, str]) -> None:
    want = expect(lambda e: _details(e).get("note") == "rotated_by_ops")
    headers = auth(tokens, f"{A}:reader")
    params: dict[str, Any] = {"details.note": "rotated_by_ops", "limit": 2}
    seen: list[str] = []
    for _ in range(50):  # bounded: a few pages
        body = client.get("/v1/events", params=params, headers=headers).json()
        seen += [e["event_id"] for e in body["data"]]
        if not body.get("next_cursor"):
            break
        params = {"details.note": "rotated_by_ops", "limit": 2, "cursor": body["next_cursor"]}
    assert sorted(seen) == sorted(want)
    # The cursor is bound to its filter: another details value with it is refused.
    first = client.get("/v1/events", params={"details.note": "rotated_by_ops", "limit": 2}, headers=headers)
    cursor = first.json()["next_cursor"]
    r = client.get("/v1/events", params={"details.note": "other", "cursor": cursor}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize(
    "name",
    [
        "details.",
        "details.a'b",
        "details.x') OR 1=1 --",
        "details.a b",
        "details.a]",
        "details.ключ",
        "details." + "k" * 129,
        "details.%00",
    ],
)
@pytest.mark.parametrize("route", ["/v1/events", "/v1/stats", "/v1/export"])
def test_hostile_details_keys_are_422_naming_the_parameter(
    client: TestClient, tokens: dict[str, str], name: str, route: str
) -> None:
    r = client.get(route, params={name: "x"}, headers=auth(tokens, f"{A}:exporter"))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == name[:64]


@pytest.mark.parametrize(
    "value", ["' OR 1=1 --", "\\'", "%", "_", "x'); DROP TABLE audit_events; --", "v" * 1024]
)
def test_hostile_details_values_match_nothing(client: TestClient, tokens: dict[str, str], value: str) -> None:
    assert ids(client, tokens, **{"details.note": value}) == set()


@pytest.mark.parametrize("value", ["", "v" * 1025])
def test_empty_or_overlong_details_values_are_422(
    client: TestClient, tokens: dict[str, str], value: str
) -> None:
    r = client.get("/v1/events", params={"details.note": value}, headers=auth(tokens, f"{A}:reader"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "details.note"


def test_details_on_a_route_without_filters_is_still_an_unknown_parameter(
    client: TestClient, tokens: dict[str, str]
) -> None:
    r = client.get("/v1/alerts/rules", params={"details.note": "x"}, headers=auth(tokens, f"{A}:admin"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_parameter"
