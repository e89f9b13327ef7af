"""The API's surface, no store needed: unknown parameters, the bearer scheme, offline /docs.

Every check here runs before a route touches the store (the unknown-parameter check is
an app-wide dependency that comes first), so the app is built over no store at all and
its lifespan (publisher, export jobs) is never started.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.api.proxies import TrustedProxies, TrustedProxyMiddleware, parse_networks
from auditstream.config import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    data = tmp_path_factory.mktemp("surface")
    settings = Settings(data_dir=data, keys_path=data / "keys.sqlite3")
    return TestClient(create_app(settings, None), raise_server_exceptions=False)  # type: ignore[arg-type]


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    return [(m.upper(), p, op) for p, item in schema["paths"].items() for m, op in item.items()]


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "0190b1c2-0000-7000-8000-000000000000", path)


def test_unknown_query_parameters_are_400_on_every_route(client: TestClient) -> None:
    # Issue 9: ?actions= (a misspelt filter) answered unfiltered data.
    seen = 0
    for method, path, op in operations(client):
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        for bogus in ("actions", "ouctome", "tenant_id", "x"):
            assert bogus not in declared
            r = client.request(method, _url(path), params={bogus: "1"})
            assert r.status_code == 400, (method, path, bogus, r.text)
            err = r.json()["error"]
            assert err == {
                "code": "unknown_parameter",
                "field": bogus,
                "message": err["message"],
            }, (path, err)
            assert err["message"].startswith(f"{bogus}: unknown query parameter")
            seen += 1
    assert seen >= 4 * 14  # every /v1 route, health and metrics
    # Declared parameters pass the check (and then meet auth, not a 400 for the name).
    r = client.get("/v1/events", params={"action": "user.login", "limit": "5"})
    assert r.status_code == 401


def test_every_protected_route_declares_the_bearer_scheme(client: TestClient) -> None:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    public = {"/healthz", "/readyz", "/metrics"}
    for method, path, op in operations(client):
        if path in public:
            assert "security" not in op, path
        else:
            assert op.get("security") == [{"bearer": []}], (method, path)


def test_docs_use_only_local_assets_and_they_are_served(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text) + re.findall(
            r"""url:\s*["']([^"']+)["']""", r.text
        )
        assert urls, page
        assert not [u for u in urls if "//" in u], (page, urls)  # no CDN, no absolute URL at all
        assert "cdn" not in r.text.lower() and "fonts.googleapis" not in r.text
        for url in urls:
            if url.startswith("/docs/assets/"):
                asset = client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and b"SwaggerUIBundle" in js.content[:5000]
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")


# --- X-Forwarded-For ------------------------------------------------------------------


def test_forwarded_for_is_ignored_by_default() -> None:
    proxies = TrustedProxies(parse_networks([]))
    assert proxies.client("203.0.113.9", ["10.9.8.7"]) == "203.0.113.9"


def test_forwarded_for_from_a_trusted_proxy_gives_the_right_most_untrusted_hop() -> None:
    proxies = TrustedProxies(parse_networks(["10.0.0.0/8", "192.0.2.1"]))
    # The client wrote "6.6.6.6" itself; the proxies appended what they saw.
    assert proxies.client("10.1.1.1", ["6.6.6.6, 198.51.100.7, 192.0.2.1"]) == "198.51.100.7"
    assert proxies.client("10.1.1.1", ["6.6.6.6", "198.51.100.7"]) == "198.51.100.7"  # two headers
    assert proxies.client("10.1.1.1", ["2001:db8::5"]) == "2001:db8::5"
    assert proxies.client("10.1.1.1", ["[2001:db8::5]:443"]) == "2001:db8::5"
    assert proxies.client("10.1.1.1", ["not-an-ip"]) == "10.1.1.1"  # garbage: keep the peer
    assert proxies.client("10.1.1.1", []) == "10.1.1.1"
    assert proxies.client("::ffff:10.1.1.1", ["198.51.100.8"]) == "198.51.100.8"  # v4-mapped peer
    # A peer that is not a trusted proxy: its header is the client's own claim.
    assert proxies.client("203.0.113.9", ["10.9.8.7"]) == "203.0.113.9"


def test_trusted_proxies_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDITSTREAM_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    assert Settings(data_dir=tmp_path).trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    monkeypatch.setenv("AUDITSTREAM_TRUSTED_PROXIES", "")
    assert Settings(data_dir=tmp_path).trusted_proxies == []
    monkeypatch.setenv("AUDITSTREAM_TRUSTED_PROXIES", "10.0.0.0/8,nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        Settings(data_dir=tmp_path)


async def test_middleware_rewrites_the_client_only_for_trusted_peers() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    middleware = TrustedProxyMiddleware(app, TrustedProxies(parse_networks(["127.0.0.1"])))
    headers = [(b"x-forwarded-for", b"198.51.100.7")]
    for peer in ("127.0.0.1", "203.0.113.9"):
        await middleware({"type": "http", "client": (peer, 5000), "headers": headers}, None, None)
    assert seen == [("198.51.100.7", 0), ("203.0.113.9", 5000)]
