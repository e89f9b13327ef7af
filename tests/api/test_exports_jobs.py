"""Asynchronous export jobs on the real store and the real broker (audit trail).

The big job exports 200,000 events of one tenant; its duration and rate are printed.
"""

from __future__ import annotations

import csv
import gzip
import io
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.api.jobs import JobStore
from auditstream.api.keys import KeyStore, Role
from auditstream.config import Settings
from auditstream.store import Store
from tests.api.jobkit import (
    NOW,
    api_settings,
    bearer,
    insert_events,
    iter_ndjson,
    make_event,
    read_topic,
    wait_for_job,
)
from tests.fixtures.kafka import Topics, new_topics

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]

A, B = "acme", "globex"
BIG = 200_000
SMALL_B = 30
WINDOW = {"since": "-30d"}


@pytest.fixture(scope="module")
def store(clickhouse_dsn: str, clickhouse_database: str) -> Iterator[Store]:
    s = Store(clickhouse_dsn, clickhouse_database)
    s.open()
    insert_events(s, [make_event(A, n) for n in range(BIG)])
    insert_events(
        s,
        [
            {**make_event(B, n, action="config.updated"), "details": {"region": "eu" if n % 3 == 0 else "us"}}
            for n in range(SMALL_B)
        ],
    )
    yield s
    s.close()


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
        tmp_path_factory.mktemp("jobs"), clickhouse_dsn, clickhouse_database, kafka_bootstrap, topics.events
    )


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    keys = KeyStore(settings.resolved_keys_path)
    return {f"{t}:{r.value}": keys.create(t, r, f"jobs {r.value}").token for t in (A, B) for r in Role}


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        yield c


def create(client: TestClient, token: str, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/exports", json={"name": "test", "filters": WINDOW, **body}, headers=bearer(token))
    assert r.status_code == 202, r.text
    return r.json()


def test_200k_row_job_completes_is_listed_and_downloads(
    client: TestClient, tokens: dict[str, str], settings: Settings, kafka_bootstrap: str, topics: Topics
) -> None:
    token = tokens[f"{A}:exporter"]
    started = time.monotonic()
    job = create(client, token, name="all of acme", format="ndjson")
    assert job["status"] in ("pending", "running") and job["rows_written"] == 0 and job["progress"] == 0
    assert job["tenant_id"] == A and job["format"] == "ndjson" and job["filters"] == WINDOW
    assert job["created_by"] == token.split("_")[1]
    done = wait_for_job(client, token, job["id"])
    seconds = time.monotonic() - started
    rate = BIG / seconds
    print(f"\nexport job: {BIG} rows in {seconds:.2f}s ({rate:,.0f} rows/s), {done['size_bytes']} bytes")
    assert done["rows_written"] == BIG and done["rows_total"] == BIG and done["progress"] == 1.0
    assert done["started_at"] and done["finished_at"] and done["error"] is None

    history = client.get("/v1/exports", headers=bearer(token)).json()
    assert history["data"][0]["id"] == job["id"]
    assert all(j["tenant_id"] == A for j in history["data"])
    created = [j["created_at"] for j in history["data"]]
    assert created == sorted(created, reverse=True)

    r = client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    rows = list(iter_ndjson(r.content))
    assert len(rows) == BIG and len({e["event_id"] for e in rows}) == BIG
    assert {e["tenant_id"] for e in rows} == {A}
    times = [e["occurred_at"] for e in rows]
    assert times == sorted(times)  # files are chronological

    # ?gzip=true: a .gz file; Accept-Encoding: gzip: the same bytes, compressed on the wire.
    r = client.get(f"/v1/exports/{job['id']}/download", params={"gzip": "true"}, headers=bearer(token))
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    assert r.headers["content-disposition"].endswith('.ndjson.gz"')
    assert gzip.decompress(r.content) == b"".join(line + b"\n" for line in r_lines(client, token, job["id"]))
    with client.stream(
        "GET", f"/v1/exports/{job['id']}/download", headers={**bearer(token), "Accept-Encoding": "gzip"}
    ) as s:
        assert s.headers["content-encoding"] == "gzip"
        raw = b"".join(s.iter_raw())
    assert len(raw) < len(r_bytes(client, token, job["id"])) / 3
    assert gzip.decompress(raw) == r_bytes(client, token, job["id"])

    # The job's creation and the downloads are in the audit log of the tenant.
    def found(records: list[dict[str, Any]]) -> bool:
        return sum(1 for e in records if e.get("resource", {}).get("id") == job["id"]) >= 3

    events = [
        e for e in read_topic(kafka_bootstrap, topics.events, found) if e["resource"]["id"] == job["id"]
    ]
    actions = sorted(e["action"] for e in events)
    assert actions[:2] == ["export.created", "export.downloaded"]
    for e in events:
        assert e["tenant_id"] == A and e["actor"]["id"] == token.split("_")[1]
        assert e["actor"]["type"] == "api_key" and e["resource"]["type"] == "export"


def r_bytes(client: TestClient, token: str, job_id: str) -> bytes:
    r = client.get(f"/v1/exports/{job_id}/download", headers={**bearer(token), "Accept-Encoding": "identity"})
    assert r.status_code == 200
    return r.content


def r_lines(client: TestClient, token: str, job_id: str) -> list[bytes]:
    return [line for line in r_bytes(client, token, job_id).splitlines() if line]


def test_csv_and_json_jobs_match_the_query(client: TestClient, tokens: dict[str, str]) -> None:
    token = tokens[f"{A}:exporter"]
    filters = {**WINDOW, "actor": ["user-7"], "outcome": "success"}
    expected = set()
    cursor = None
    while True:
        params = {**filters, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/events", params=params, headers=bearer(token)).json()
        expected |= {e["event_id"] for e in page["data"]}
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert expected
    for fmt in ("csv", "json"):
        job = create(client, token, name=f"user-7 {fmt}", format=fmt, filters=filters)
        done = wait_for_job(client, token, job["id"], within=60)
        assert done["rows_written"] == len(expected)
        body = client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token)).content
        if fmt == "csv":
            got = {row["event_id"] for row in csv.DictReader(io.StringIO(body.decode()))}
        else:
            got = {e["event_id"] for e in orjson.loads(body)}
        assert got == expected


def test_details_filters_as_an_object(client: TestClient, tokens: dict[str, str]) -> None:
    # details.KEY=VALUE of the query string is {"KEY": VALUE | [VALUES]} in a job's filters.
    token = tokens[f"{B}:exporter"]
    for details, expected in (({"region": "eu"}, SMALL_B // 3), ({"region": ["eu", "us"]}, SMALL_B)):
        job = create(client, token, format="ndjson", filters={**WINDOW, "details": details})
        done = wait_for_job(client, token, job["id"], within=60)
        assert done["rows_written"] == expected, (details, done)
        assert done["filters"]["details"] == details
        body = client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token)).content
        regions = {e["details"]["region"] for e in iter_ndjson(body)}
        assert regions == ({details["region"]} if isinstance(details["region"], str) else {"eu", "us"})
    bad_cases = (({"bad key": "x"}, "filters.details.bad key"), ({"region": ""}, "filters.details.region"))
    for bad, field in bad_cases:
        r = client.post(
            "/v1/exports", json={"name": "x", "filters": {**WINDOW, "details": bad}}, headers=bearer(token)
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["field"] == field, r.text


def test_empty_result_completes_with_zero_rows(client: TestClient, tokens: dict[str, str]) -> None:
    token = tokens[f"{A}:exporter"]
    job = create(client, token, format="json", filters={**WINDOW, "actor": ["nobody"]})
    done = wait_for_job(client, token, job["id"], within=60)
    assert done["rows_written"] == 0 and done["progress"] == 1.0
    r = client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token))
    assert r.status_code == 200 and r.json() == []


def test_download_is_409_until_completed(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    token = tokens[f"{A}:exporter"]
    jobs = JobStore(settings.resolved_keys_path.parent / "exports.sqlite3")
    job = jobs.create(
        tenant_id=A,
        name="stuck",
        fmt="ndjson",
        filters={},
        since=NOW,
        until=NOW,
        created_by="x",
    )
    jobs.update(job["id"], status="failed", error="boom")  # never picked up: the runner only reads its queue
    r = client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token))
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    jobs.update(job["id"], status="running", error=None)
    r = client.get(f"/v1/exports/{job['id']}/download", headers=bearer(token))
    assert r.status_code == 409 and "running" in r.json()["error"]["message"]


def test_invalid_requests(client: TestClient, tokens: dict[str, str]) -> None:
    token = tokens[f"{A}:exporter"]
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"name": "x", "format": "xml"}, 422, "format"),
        ({"name": "", "format": "csv"}, 422, "name"),
        ({"name": "x", "filters": {"action": ["Not An Action"]}}, 400, "filters.action"),
        ({"name": "x", "filters": {"since": "yesterday"}}, 400, "filters.since"),
        ({"name": "x", "filters": {"since": "-200d"}}, 400, "filters.since"),
        # Beyond the retention (365 days), though the window itself is short: as GET /v1/export.
        ({"name": "x", "filters": {"since": "-400d", "until": "-380d"}}, 400, "filters.since"),
        ({"name": "x", "filters": {"tenant_id": "globex"}}, 422, "filters.tenant_id"),
        ({"name": "x", "filters": {"outcome": "maybe"}}, 422, "filters.outcome"),
    ]
    for body, status, field in cases:
        r = client.post("/v1/exports", json=body, headers=bearer(token))
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["field"] == field, (body, r.text)
        if "-400d" in str(body):
            assert r.json()["error"]["code"] == "out_of_retention", r.text


def test_roles_and_tenants(client: TestClient, tokens: dict[str, str]) -> None:
    job = create(client, tokens[f"{A}:exporter"], format="ndjson", filters={**WINDOW, "actor": ["user-3"]})
    for path in ("/v1/exports", f"/v1/exports/{job['id']}", f"/v1/exports/{job['id']}/download"):
        assert client.get(path, headers=bearer(tokens[f"{A}:reader"])).status_code == 403
    r = client.post("/v1/exports", json={"name": "x"}, headers=bearer(tokens[f"{A}:reader"]))
    assert r.status_code == 403
    # Another tenant: 404 for the id, never 403, and not in its history.
    other = tokens[f"{B}:admin"]
    for path in (f"/v1/exports/{job['id']}", f"/v1/exports/{job['id']}/download"):
        r = client.get(path, headers=bearer(other))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert job["id"] not in {j["id"] for j in client.get("/v1/exports", headers=bearer(other)).json()["data"]}
    # A tenant admin may not select another tenant (issue 9); an operator may, explicitly.
    r = client.get(f"/v1/exports/{job['id']}", params={"tenant": A}, headers=bearer(other))
    assert r.status_code == 403 and r.json()["error"]["field"] == "tenant"
    operator = tokens[f"{B}:operator"]
    r = client.get(f"/v1/exports/{job['id']}", params={"tenant": A}, headers=bearer(operator))
    assert r.status_code == 200 and r.json()["tenant_id"] == A
    # The B-tenant job exports only B's events.
    b_job = create(client, tokens[f"{B}:exporter"], format="ndjson")
    wait_for_job(client, tokens[f"{B}:exporter"], b_job["id"], within=60)
    body = client.get(f"/v1/exports/{b_job['id']}/download", headers=bearer(tokens[f"{B}:exporter"])).content
    assert {e["tenant_id"] for e in iter_ndjson(body)} == {B} and len(body.splitlines()) == SMALL_B


def test_jobs_survive_an_api_restart(settings: Settings, store: Store, tokens: dict[str, str]) -> None:
    token = tokens[f"{A}:exporter"]
    # 1. A graceful stop right after creation: the job is left unfinished, then resumed.
    with TestClient(create_app(settings, store)) as first:
        job = create(first, token, name="restart me", format="ndjson")
    with TestClient(create_app(settings, store)) as second:
        done = wait_for_job(second, token, job["id"])
        assert done["rows_written"] == BIG
        assert len(r_lines(second, token, job["id"])) == BIG

    # 2. A crash: the record says "running" and a partial file is on disk.
    jobs = JobStore(settings.resolved_keys_path.parent / "exports.sqlite3")
    crashed = jobs.create(
        tenant_id=B,
        name="crashed",
        fmt="csv",
        filters={"since": "-30d"},
        since=NOW - timedelta(days=30),
        until=NOW + timedelta(days=1),
        created_by="x",
    )
    jobs.update(crashed["id"], status="running", rows_written=5)
    exports = Path(settings.data_dir) / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    # The attempt's partial file, and one under the name every attempt used before.
    parts = [exports / f"{crashed['id']}.csv.1.part", exports / f"{crashed['id']}.csv.part"]
    for part in parts:
        part.write_bytes(b"half a file")
    with TestClient(create_app(settings, store)) as third:
        done = wait_for_job(third, tokens[f"{B}:exporter"], crashed["id"], within=60)
        assert done["rows_written"] == SMALL_B
        body = third.get(f"/v1/exports/{crashed['id']}/download", headers=bearer(tokens[f"{B}:exporter"]))
        assert len(list(csv.DictReader(io.StringIO(body.text)))) == SMALL_B
    assert not [p for p in parts if p.exists()]
    assert sorted(p.name for p in exports.glob(f"{crashed['id']}*")) == [f"{crashed['id']}.csv"]


def test_a_job_failing_while_the_runner_stops_stays_running_and_resumes(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store closing under a read at shutdown is not the job's failure: it is resumed."""
    from auditstream.api.jobs import ExportRunner
    from auditstream.api.routes.exports import build_filter

    jobs = JobStore(tmp_path / "exports.sqlite3")
    exports = tmp_path / "exports"
    runner: ExportRunner

    def failing_at_shutdown(*args: Any) -> Any:
        # The runner is told to stop while this job runs (from another thread, as the API's
        # shutdown does), then the job's read fails.
        stopper = threading.Thread(target=runner.stop, kwargs={"timeout": 0})
        stopper.start()
        stopper.join(10)
        raise RuntimeError("the store was closed")

    def failing(*args: Any) -> Any:
        raise RuntimeError("a real failure")

    window = {"since": NOW - timedelta(days=30), "until": NOW + timedelta(days=1), "created_by": "x"}
    failed = jobs.create(tenant_id=B, name="fails", fmt="ndjson", filters=WINDOW, **window)
    runner = ExportRunner(jobs, store, exports, failing, workers=1)
    runner.start()
    runner.submit(failed["id"])
    deadline = time.monotonic() + 30
    while jobs.get(failed["id"])["status"] != "failed":  # outside a shutdown: failed, with why
        assert time.monotonic() < deadline, jobs.get(failed["id"])
        time.sleep(0.05)
    assert "a real failure" in jobs.get(failed["id"])["error"]
    runner.stop()

    job = jobs.create(tenant_id=B, name="interrupted", fmt="ndjson", filters=WINDOW, **window)
    runner = ExportRunner(jobs, store, exports, failing_at_shutdown, workers=1)
    with caplog.at_level("INFO", logger="auditstream.api.jobs"):
        runner.start()
        runner.submit(job["id"])
        deadline = time.monotonic() + 30
        while not any("interrupted by shutdown" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, jobs.get(job["id"])
            time.sleep(0.05)
    assert jobs.get(job["id"])["status"] == "running"

    resumed = ExportRunner(jobs, store, exports, build_filter, workers=1)
    assert resumed.start() == [job["id"]]
    try:
        deadline = time.monotonic() + 60
        while jobs.get(job["id"])["status"] != "completed":
            assert time.monotonic() < deadline, jobs.get(job["id"])
            time.sleep(0.05)
    finally:
        resumed.stop()
    assert sorted(p.name for p in exports.glob(f"{job['id']}*")) == [f"{job['id']}.ndjson"]
    assert len((exports / f"{job['id']}.ndjson").read_bytes().splitlines()) == SMALL_B
