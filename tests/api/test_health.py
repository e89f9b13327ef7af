"""/healthz, /readyz (store ping + the processor's readiness callback) and /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.config import Settings
from auditstream.store import Store

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def settings(tmp_path: Any, clickhouse_dsn: str, clickhouse_database: str) -> Settings:
    return Settings(data_dir=tmp_path, clickhouse_dsn=clickhouse_dsn, clickhouse_database=clickhouse_database)


def test_healthz_needs_nothing(settings: Settings, store: Store) -> None:
    with TestClient(create_app(settings, store)) as c:
        r = c.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_ready_without_processor(settings: Settings, store: Store) -> None:
    with TestClient(create_app(settings, store)) as c:
        r = c.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"ready": True, "checks": {"store": "ok"}, "reasons": []}


def test_readiness_follows_the_processor(settings: Settings, store: Store) -> None:
    state: dict[str, Any] = {"processor": "starting", "ready": False}
    with TestClient(create_app(settings, store, readiness=lambda: dict(state))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["ready"] is False
        assert body["reasons"] == ["processor: starting"]
        assert body["checks"]["processor"] == {"processor": "starting", "ready": False}
        state.update(processor="running", ready=True)
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["ready"] is True


def test_failing_readiness_callback_is_not_ready(settings: Settings, store: Store) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    with TestClient(create_app(settings, store, readiness=broken), raise_server_exceptions=False) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reasons"] == ["processor: RuntimeError"]


def test_closed_store_is_not_ready(settings: Settings, clickhouse_dsn: str, clickhouse_database: str) -> None:
    closed = Store(clickhouse_dsn, clickhouse_database)  # never opened: ping cannot answer
    with TestClient(create_app(settings, closed), raise_server_exceptions=False) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["store"] == "unreachable"
        assert c.get("/healthz").status_code == 200  # liveness does not depend on the store


def test_metrics_exposition(settings: Settings, store: Store) -> None:
    with TestClient(create_app(settings, store)) as c:
        c.get("/healthz")
        c.get("/healthz")
        c.get("/v1/events")  # 401
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'auditstream_api_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert 'auditstream_api_requests_total{method="GET",route="/v1/events",status="401"} 1.0' in text
    assert 'auditstream_api_request_duration_seconds_count{method="GET",route="/healthz"} 2.0' in text


def test_two_apps_in_one_process_have_separate_metrics(settings: Settings, store: Store) -> None:
    with TestClient(create_app(settings, store)) as one, TestClient(create_app(settings, store)) as two:
        one.get("/healthz")
        assert 'route="/healthz"' not in two.get("/metrics").text


def test_store_outage_is_503_not_500(tmp_path: Any) -> None:
    """ClickHouse unreachable: queries answer 503 + Retry-After in the error shape, readiness fails."""
    from auditstream.api.keys import KeyStore, Role
    from auditstream.store import StoreUnavailable

    down = Store("http://default:@127.0.0.1:1", "nowhere")  # nothing listens on port 1
    with pytest.raises(StoreUnavailable):
        down.open()
    settings = Settings(data_dir=tmp_path, clickhouse_dsn="http://127.0.0.1:1")
    token = KeyStore(settings.resolved_keys_path).create("acme", Role.ADMIN).token
    hdr = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, down), raise_server_exceptions=False) as c:
        paths = ["/v1/events", "/v1/events/0190f3c4-0000-7000-8000-000000000000"]
        # Every export format fails before its first byte (the CSV header and the JSON '['
        # travel with the first rows), so it still gets an error status.
        paths += [f"/v1/export?format={fmt}" for fmt in ("ndjson", "json", "csv")]
        for path in paths:
            r = c.get(path, headers=hdr)
            assert r.status_code == 503, (path, r.text)
            err = r.json()["error"]
            assert err == {"code": "unavailable", "message": err["message"], "field": None}
            assert "retry" in err["message"]
            assert r.headers["retry-after"] == "5"
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200
