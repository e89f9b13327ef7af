"""Owner-only folders and files whatever the umask (pure file-system logic, no services)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditstream.api import sqlite_file
from auditstream.config import Settings
from auditstream.private_fs import open_private, private_dir, private_file, write_private
from auditstream.producer.spool import Spool


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o000], ids=["umask022", "umask002", "umask000"])
def permissive_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_private_dir_creates_every_missing_folder_0700(tmp_path: Path, permissive_umask: int) -> None:
    base = tmp_path / "base"
    base.mkdir()
    base.chmod(0o755)
    target = private_dir(base / "a" / "b" / "c")
    assert target.is_dir()
    for p in (base / "a", base / "a" / "b", target):
        assert mode(p) == 0o700, p
    assert mode(base) == 0o755  # an existing folder is left alone


def test_private_dir_leaves_an_existing_folder_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    private_dir(shared)
    assert mode(shared) == 0o755
    assert "accessible to other users" in caplog.text


def test_files_are_0600(tmp_path: Path, permissive_umask: int) -> None:
    created = private_file(tmp_path / "new" / "f")
    assert mode(created) == 0o600 and mode(created.parent) == 0o700
    loose = tmp_path / "loose"
    loose.write_text("x")
    loose.chmod(0o644)
    private_file(loose)
    assert mode(loose) == 0o600 and loose.read_text() == "x"  # tightened, not truncated
    with open_private(tmp_path / "opened") as out:
        out.write(b"data")
    assert mode(tmp_path / "opened") == 0o600
    written = write_private(tmp_path / "w" / "doc.json", b"{}")
    assert mode(written) == 0o600 and written.read_bytes() == b"{}"
    write_private(written, b"[]")  # replaced atomically, still 0600, no temporary left behind
    assert mode(written) == 0o600 and sorted(p.name for p in written.parent.iterdir()) == ["doc.json"]


def test_sqlite_files_and_their_wal_are_0600(tmp_path: Path, permissive_umask: int) -> None:
    path = tmp_path / "data" / "keys.sqlite3"
    sqlite_file.create(path, "CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    with sqlite_file.connect(path) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        sidecars = [p for p in path.parent.iterdir() if p.name != path.name]
        assert any(p.name.endswith("-wal") for p in sidecars)
        for p in [path, *sidecars]:
            assert mode(p) == 0o600, p.name
    assert mode(path.parent) == 0o700


def test_producer_spool_is_owner_only(tmp_path: Path, permissive_umask: int) -> None:
    spool = Spool(tmp_path / "spool")
    try:
        assert mode(tmp_path / "spool") == 0o700
        for p in (tmp_path / "spool").iterdir():
            assert mode(p) == 0o600, p.name
    finally:
        spool.close()


def test_settings_prepare_the_data_folder_and_the_chdb_folder(tmp_path: Path, permissive_umask: int) -> None:
    settings = Settings(data_dir=tmp_path / ".data")
    settings.prepare_data_dir()
    assert mode(tmp_path / ".data") == 0o700
    assert mode(tmp_path / ".data" / "clickhouse") == 0o700
    other = Settings(data_dir=tmp_path / "d2", clickhouse_dsn=f"chdb://{tmp_path / 'engine'}")
    other.prepare_data_dir()
    assert mode(tmp_path / "engine") == 0o700
    Settings(data_dir=tmp_path / "d3", clickhouse_dsn="http://u:p@127.0.0.1:1").prepare_data_dir()
    assert mode(tmp_path / "d3") == 0o700


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"AUDITSTREAM_API_PORT": "8111"}, "http://127.0.0.1:8111"),
        ({"AUDITSTREAM_API_HOST": "0.0.0.0", "AUDITSTREAM_API_PORT": "9"}, "http://127.0.0.1:9"),
        ({"AUDITSTREAM_API_HOST": "::1"}, "http://[::1]:8000"),
        (
            {"AUDITSTREAM_API_URL": "https://audit.example/", "AUDITSTREAM_API_PORT": "1"},
            "https://audit.example",
        ),
    ],
)
def test_api_url_setting(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str) -> None:
    for name in ("AUDITSTREAM_API_URL", "AUDITSTREAM_API_HOST", "AUDITSTREAM_API_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None).resolved_api_url == url  # type: ignore[call-arg]
