"""Export files, their folder and the SQLite files of the API are owner-only under umask 022.

Real store (chDB or server) and real broker (the export's audit event is published first).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.api.keys import KeyStore, Role
from auditstream.store import Store
from tests.api.jobkit import api_settings, bearer, insert_events, make_event, wait_for_job
from tests.fixtures.kafka import new_topics

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_export_job_file_and_api_files_are_owner_only(
    tmp_path: Path, clickhouse_dsn: str, clickhouse_database: str, kafka_bootstrap: str, umask_022: None
) -> None:
    data = tmp_path / "data"
    settings = api_settings(
        data, clickhouse_dsn, clickhouse_database, kafka_bootstrap, new_topics(kafka_bootstrap).events
    )
    settings.prepare_data_dir()
    store = Store(settings.resolved_clickhouse_dsn, settings.clickhouse_database)
    store.open()
    try:
        insert_events(store, [make_event("acme", n) for n in range(25)])
        token = KeyStore(settings.resolved_keys_path).create("acme", Role.EXPORTER, "modes").token
        with TestClient(create_app(settings, store), raise_server_exceptions=False) as client:
            for fmt in ("ndjson", "csv"):
                r = client.post(
                    "/v1/exports",
                    json={"name": "m", "format": fmt, "filters": {"since": "-30d"}},
                    headers=bearer(token),
                )
                assert r.status_code == 202, r.text
                job = wait_for_job(client, token, r.json()["id"], within=60)
                assert job["rows_written"] == 25
    finally:
        store.close()
    assert mode(data) == 0o700
    exports = data / "exports"
    assert mode(exports) == 0o700
    files = list(exports.iterdir())
    assert len(files) == 2 and all(mode(f) == 0o600 for f in files), [(f.name, oct(mode(f))) for f in files]
    sqlite_files = [p for p in data.iterdir() if ".sqlite3" in p.name]
    assert {"keys.sqlite3", "exports.sqlite3"} <= {p.name for p in sqlite_files}
    assert all(mode(p) == 0o600 for p in sqlite_files), [(p.name, oct(mode(p))) for p in sqlite_files]
