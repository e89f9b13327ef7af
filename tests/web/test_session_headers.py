"""The viewer without a browser: sign-in cookies, CSRF, security headers, tenancy, escaping, /v1/actors.

Drives the real ASGI app over a real chDB store with httpx (FastAPI's TestClient).
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from auditstream.api.deps import resolve_tenant
from auditstream.api.errors import Forbidden
from auditstream.api.keys import ApiKey, KeyStore, Role
from auditstream.config import Settings
from auditstream.store import Store
from auditstream.web.routes import may_switch_tenant
from auditstream.web.security import CSP
from auditstream.web.session import SESSION_COOKIE
from tests.api._support import (
    auth,
    client_for,
    csrf_of,
    event,
    make_tokens,
    row,
    settings_fixture,
    sign_in,
)

pytestmark = pytest.mark.clickhouse

A, B = "acme", "globex"
NOW = datetime.now(UTC).replace(microsecond=0)
HOSTILE = '"><img src=x onerror=alert(1)><script>window.pwned=1</script>'


@pytest.fixture(scope="module")
def store(clickhouse_dsn: str, clickhouse_database: str) -> Iterator[Store]:
    s = Store(clickhouse_dsn, clickhouse_database)
    s.open()
    events = [
        event(
            A,
            "scan.created",
            "u-alice",
            NOW - timedelta(minutes=5),
            actor={"name": "Alice Doe", "email": "alice@acme.test", "ip": "10.1.2.3"},
            resource={"type": "scan", "id": "s-1", "name": "Azure Cloud Workload"},
        ),
        event(
            A,
            "config.updated",
            "u-bob",
            NOW - timedelta(minutes=4),
            actor={"name": HOSTILE, "email": "bob@acme.test"},
            resource={"type": "config", "id": "c-1", "name": "javascript:alert(1)"},
            changes=[{"field": "mfa", "old": "off", "new": HOSTILE}],
        ),
        event(B, "scan.deleted", "u-zed", NOW - timedelta(minutes=3), actor={"name": "Zed"}),
    ]
    s.insert_rows([row(e, offset=i) for i, e in enumerate(events)])
    s.events = events  # type: ignore[attr-defined]
    yield s
    s.close()


settings = settings_fixture("web")


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    return make_tokens(settings, (A, B))


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    yield from client_for(settings, store)


def test_signin_sets_a_strict_httponly_expiring_cookie(client: TestClient, tokens, settings) -> None:
    cookie = sign_in(client, tokens[f"{A}:reader"])
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "max-age=28800" in lowered
    assert "secure" not in lowered  # plain http here; https gets Secure (next test)
    assert tokens[f"{A}:reader"] not in cookie  # the key is encrypted inside
    secret = settings.data_dir / "web-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    page = client.get("/")
    assert page.status_code == 200
    assert "Alice Doe" in page.text


def test_cookie_is_secure_over_tls(settings: Settings, store: Store, tokens) -> None:
    with TestClient(
        __import__("auditstream.api.app", fromlist=["create_app"]).create_app(settings, store),
        base_url="https://testserver",
    ) as c:
        assert "secure" in sign_in(c, tokens[f"{A}:reader"]).lower()


def test_wrong_key_and_no_session(client: TestClient) -> None:
    page = client.get("/signin")
    bad = client.post(
        "/signin", data={"api_key": "ask_0000000000000000_" + "x" * 30, "csrf_token": csrf_of(page.text)}
    )
    assert bad.status_code == 401
    assert "not valid" in bad.text
    assert SESSION_COOKIE not in bad.headers.get("set-cookie", "")
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/signin")


def test_signin_and_signout_need_csrf(client: TestClient, tokens) -> None:
    client.get("/signin")
    refused = client.post("/signin", data={"api_key": tokens[f"{A}:reader"], "csrf_token": "forged"})
    assert refused.status_code == 401
    assert "expired" in refused.text
    sign_in(client, tokens[f"{A}:reader"])
    assert client.post("/signout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    token = csrf_of(client.get("/").text)
    out = client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_forged_cookie_is_refused(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "gAAAAAforged")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_the_session(settings: Settings, store: Store) -> None:
    keys = KeyStore(settings.resolved_keys_path)
    new = keys.create(A, "reader", "revoked soon")
    for c in client_for(settings, store):
        sign_in(c, new.token)
        assert c.get("/").status_code == 200
        keys.revoke(new.key.key_id)
        c.app.state.verifier.clear()  # what the 2-second TTL does by itself
        assert c.get("/", follow_redirects=False).status_code == 303


def test_security_headers_on_pages_and_static(client: TestClient) -> None:
    for path in ("/signin", "/static/app.js"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
        assert response.headers["x-frame-options"] == "DENY"
    html = client.get("/signin").text
    assert not re.search(r"\son[a-z]+=", html), "inline event handler in the page"
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script in the page"
    assert "content-security-policy" not in client.get("/healthz").headers


def test_hostile_fields_render_as_text(client: TestClient, tokens, store: Store) -> None:
    sign_in(client, tokens[f"{A}:reader"])
    page = client.get("/")
    assert "<script>window.pwned" not in page.text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page.text
    assert 'href="javascript:' not in page.text
    hostile_id = str(store.events[1].event_id)  # type: ignore[attr-defined]
    detail = client.get(f"/events/{hostile_id}")
    assert detail.status_code == 200
    assert "<img src=x" not in detail.text and "&lt;img src=x" in detail.text
    assert 'id="changes"' in detail.text


def test_reader_sees_no_export_controls_exporter_does(client: TestClient, tokens) -> None:
    sign_in(client, tokens[f"{A}:reader"])
    page = client.get("/").text
    assert 'id="export-button"' not in page and "Export History" not in page
    assert client.get("/exports").status_code == 403
    sign_in(client, tokens[f"{A}:exporter"])
    page = client.get("/").text
    assert 'id="export-button"' in page and "Export History" in page


def test_other_tenants_event_is_not_found(client: TestClient, tokens, store: Store) -> None:
    sign_in(client, tokens[f"{A}:admin"])
    other = str(store.events[2].event_id)  # type: ignore[attr-defined]
    response = client.get(f"/events/{other}")
    assert response.status_code == 404
    assert "not found" in response.text.lower()
    assert client.get("/?tenant=globex").status_code in (200, 403)


def test_export_form_needs_csrf(client: TestClient, tokens) -> None:
    sign_in(client, tokens[f"{A}:exporter"])
    response = client.post("/exports", data={"name": "x", "format": "csv", "csrf_token": "nope", "view": ""})
    assert response.status_code == 403


def test_invalid_filter_shows_a_message_naming_the_field(client: TestClient, tokens) -> None:
    sign_in(client, tokens[f"{A}:reader"])
    response = client.get("/?since=-200d")
    assert response.status_code == 400
    assert 'data-field="since"' in response.text and "92 days" in response.text
    bad_ip = client.get("/?ip=not-an-ip")
    assert 'data-field="ip"' in bad_ip.text


def test_actors_endpoint_is_tenant_scoped_and_documented(client: TestClient, tokens) -> None:
    response = client.get("/v1/actors?prefix=al", headers=auth(tokens, f"{A}:reader"))
    assert response.status_code == 200
    data = response.json()["data"]
    assert [a["id"] for a in data] == ["u-alice"] and data[0]["email"] == "alice@acme.test"
    assert client.get("/v1/actors?prefix=ze", headers=auth(tokens, f"{A}:reader")).json()["data"] == []
    assert client.get("/v1/actors?prefix=", headers=auth(tokens, f"{A}:reader")).status_code in (400, 422)
    assert "/v1/actors" in client.get("/openapi.json").json()["paths"]


def test_session_expires(settings: Settings, store: Store, tokens) -> None:
    import time as _time

    for c in client_for(settings, store):
        codec = c.app.state.web_sessions
        cookie = codec.issue(tokens[f"{A}:reader"])
        verifier = c.app.state.verifier
        assert codec.open(cookie, verifier) is not None
        later = int(_time.time()) + codec.max_age + 5
        assert codec.open(cookie, verifier, now=later) is None


@pytest.mark.parametrize("role", list(Role))
async def test_tenant_switch_is_offered_exactly_to_keys_that_may_pick_a_tenant(role: Role) -> None:
    key = ApiKey("0123456789abcdef", A, role, "t", datetime.now(UTC))
    try:
        await resolve_tenant(key, B)
        allowed = True
    except Forbidden:
        allowed = False
    assert may_switch_tenant(key) is allowed


def test_pages_and_assets_are_compressed_the_api_is_not_touched(client: TestClient, tokens) -> None:
    response = client.get("/static/vendor/htmx-2.0.11.min.js", headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("content-encoding") == "gzip"
    api = client.get("/v1/events", headers={**auth(tokens, f"{A}:reader"), "Accept-Encoding": "gzip"})
    assert "content-encoding" not in api.headers


def test_an_ingest_key_cannot_sign_in(client: TestClient, tokens) -> None:
    page = client.get("/signin")
    response = client.post(
        "/signin", data={"api_key": tokens[f"{A}:ingest"], "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 401
    assert "cannot read the audit log" in response.text


def test_operator_switches_tenant_others_cannot(client: TestClient, tokens) -> None:
    sign_in(client, tokens[f"{A}:operator"])
    page = client.get("/?tenant=globex")
    assert page.status_code == 200 and 'class="tenant-switch"' in page.text and "Zed" in page.text
    sign_in(client, tokens[f"{A}:admin"])
    assert 'class="tenant-switch"' not in client.get("/").text
    refused = client.get("/?tenant=globex")
    assert refused.status_code == 403 and "operator" in refused.text


def test_a_misspelt_parameter_is_refused(client: TestClient, tokens) -> None:
    sign_in(client, tokens[f"{A}:reader"])
    response = client.get("/?actions=scan.*")
    assert response.status_code == 400
    assert "actions" in response.text
