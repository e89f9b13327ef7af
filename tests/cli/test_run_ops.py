"""``auditstream run`` as operators meet it: a real pipeline child process on the real broker.

* the development keys are created once, kept owner-only in the data folder, audited
  (``key.created``, queryable) and reused by the next start;
* the data folder's files are owner-only;
* ``migrate --dry-run`` and ``reconcile`` while ``run`` holds the chDB folder exit 2 with
  one clear sentence, not a traceback.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from auditstream.producer import SyncAuditProducer
from tests.fixtures.kafka import Topics
from tests.fixtures.pipeline import DEMO_TENANT, REPO, PipelineProcess, running_pipeline

pytestmark = [pytest.mark.pipeline, pytest.mark.kafka, pytest.mark.clickhouse]

BANNER = "auditstream is running"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_for_banner(process: PipelineProcess, count: int, within: float = 120.0) -> None:
    """on_started ends with the banner: the keys are saved and their events sent by then."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.log_path.read_text(errors="replace").count(BANNER) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"no banner #{count} within {within}s:\n{process.tail()}")


def get_events(process: PipelineProcess, token: str, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{process.url}/v1/events",
        params={"since": "-1h", "limit": 1000, **params},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def poll_events(
    process: PipelineProcess, token: str, enough: int, within: float = 60.0, **params: Any
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = get_events(process, token, **params)
        if len(events) >= enough:
            return events
        time.sleep(0.2)
    raise AssertionError(f"{len(events)} of {enough} events {params} within {within}s")


def cli(process: PipelineProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditstream.cli.main", *args],
        env={**process.env, "PYTHONPATH": str(REPO)},
        cwd=process.data_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_keys_once_audited_reused_and_private(
    kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str
) -> None:
    with running_pipeline(kafka_bootstrap, topics, clickhouse_dsn) as process:
        wait_for_banner(process, 1)
        keys_file = process.data_dir / "demo-keys.json"
        assert mode(keys_file) == 0o600
        doc = orjson.loads(keys_file.read_bytes())
        by_role = {k["role"]: k for k in doc["keys"]}
        assert set(by_role) == {"reader", "admin"} and all(k["audited"] for k in doc["keys"])
        assert {k["tenant_id"] for k in doc["keys"]} == {DEMO_TENANT}
        admin = by_role["admin"]["token"]
        # The banner prints the saved keys with ready curl lines.
        log = process.log_path.read_text(errors="replace")
        assert f"Authorization: Bearer {by_role['reader']['token']}" in log

        created = poll_events(process, admin, 2, action="key.created")
        assert sorted(e["resource"]["id"] for e in created) == sorted(k["key_id"] for k in doc["keys"])
        assert {e["source"]["service"] for e in created} == {"auditstream-cli"}

        # Owner-only files in the data folder the app made.
        for name in ("keys.sqlite3", "exports.sqlite3"):
            assert mode(process.data_dir / name) == 0o600, name
        for name in ("faust", "exports"):
            assert mode(process.data_dir / name) == 0o700, name

        # The engine folder is held by the running process: migrate and reconcile say so, exit 2.
        for command in (["migrate", "--dry-run"], ["reconcile"]):
            done = cli(process, *command)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert "is in use" in done.stderr and "auditstream run" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr

        # A restart reuses the same keys and audits nothing again.
        process.stop()
        process.start()
        wait_for_banner(process, 2)
        assert orjson.loads(keys_file.read_bytes()) == doc
        tenant = by_role["admin"]["tenant_id"]
        marker = str(uuid.uuid4())
        with SyncAuditProducer(kafka_bootstrap, topics.events) as producer:
            producer.emit(
                {
                    "event_id": marker,
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "tenant_id": tenant,
                    "action": "test.marker",
                    "actor": {"id": "test"},
                }
            )
        # Same tenant, same partition: once the marker is stored, any key.created sent
        # by the second start before it would be stored as well.
        poll_events(process, admin, 1, action="test.marker")
        assert len(get_events(process, admin, action="key.created")) == 2
        keys_list = cli(process, "keys", "list", "--json")
        assert keys_list.returncode == 0, keys_list.stderr
        assert len(orjson.loads(keys_list.stdout)) == 2


def test_migrate_dry_run_works_when_the_engine_is_free(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "AUDITSTREAM_DATA_DIR": str(tmp_path),
        "AUDITSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "auditstream.cli.main", "migrate", "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE" in done.stdout
