"""The wheel, installed outside the repository, runs the whole pipeline.

What a new user does: ``pip install auditstream-*.whl`` into a fresh virtualenv, then
``auditstream --version``, ``auditstream migrate --dry-run`` and ``auditstream run --demo``
from a folder that is not the checkout, with nothing of the repository on the path. The
migrations and the event schema must come from the installed package.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import pytest

import auditstream
from auditstream.events import fastpath
from tests.deploy.conftest import REPO, Installed, clean_env
from tests.deploy.installed_run import pipeline_env, run_demo_and_query
from tests.fixtures.kafka import new_topics

pytestmark = [pytest.mark.dist]

DEMO_EVENTS = 500


def _source(path: Path) -> bool:
    # The compiled native fast path is built for the wheel, not copied: checked by name below.
    return path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".so")


def runtime_files() -> dict[str, Path]:
    """Every file the package reads at run time: wheel path -> source file."""
    files: dict[str, Path] = {}
    package = REPO / "services" / "auditstream"
    for path in package.rglob("*"):
        if _source(path):
            files[f"auditstream/{path.relative_to(package).as_posix()}"] = path
    schemas = REPO / "schemas"
    for path in schemas.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"auditstream/schemas/{path.relative_to(schemas).as_posix()}"] = path
    return files


def test_the_wheel_carries_every_runtime_file_and_nothing_of_the_repository(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as wheel:
        names = set(wheel.namelist())
        expected = runtime_files()
        missing = sorted(set(expected) - names)
        assert not missing, f"not in the wheel: {missing}"
        for name, source in expected.items():
            assert wheel.read(name) == source.read_bytes(), f"{name} differs from {source}"
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"auditstream", f"auditstream-{auditstream.__version__}.dist-info"}, top_level
    assert any(re.fullmatch(r"auditstream/schemas/clickhouse/\d{4}_\w+\.sql", n) for n in names)
    # Built where this suite's package was (a Rust toolchain at hand): the wheel has it too.
    if fastpath.NATIVE:
        assert any(re.fullmatch(r"auditstream/events/_fastpath_native\..*\.so", n) for n in names), names


def test_installed_version_and_dry_run_migrate_outside_the_repository(
    installed: Installed, tmp_path: Path
) -> None:
    env = clean_env(AUDITSTREAM_DATA_DIR=str(tmp_path / "data"))
    version = subprocess.run(
        [str(installed.command), "--version"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"auditstream {auditstream.__version__}"
    if fastpath.NATIVE:
        # The wheel's compiled module loads there (an import error would silently mean msgspec).
        native = subprocess.run(
            [str(installed.python), "-c", "from auditstream.events.fastpath import NATIVE; print(NATIVE)"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert native.stdout.strip() == "True", native.stdout + native.stderr

    dry = subprocess.run(
        [str(installed.command), "migrate", "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    labels = sorted(p.stem for p in (REPO / "schemas" / "clickhouse").glob("*.sql"))
    assert f"-- auditstream: would apply {', '.join(labels)}" in dry.stdout
    # The SQL comes from the installed package, not from a checkout.
    where = subprocess.run(
        [str(installed.python), "-c", "import auditstream.resources as r; print(r.packaged_schemas())"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.strip().startswith(str(installed.venv)), where.stdout + where.stderr


def test_schemas_dir_override_is_honoured_by_the_installed_command(
    installed: Installed, tmp_path: Path
) -> None:
    override = tmp_path / "schemas" / "clickhouse"
    override.mkdir(parents=True)
    (override / "0001_only.sql").write_text(
        "CREATE TABLE IF NOT EXISTS {database}.only (x UInt8) ENGINE = Log;\n"
    )
    env = clean_env(
        AUDITSTREAM_DATA_DIR=str(tmp_path / "data"), AUDITSTREAM_SCHEMAS_DIR=str(tmp_path / "schemas")
    )
    dry = subprocess.run(
        [str(installed.command), "migrate", "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "-- auditstream: would apply 0001_only" in dry.stdout
    assert "CREATE TABLE IF NOT EXISTS auditstream.only" in dry.stdout


@pytest.mark.kafka
@pytest.mark.clickhouse
@pytest.mark.pipeline
@pytest.mark.timeout(600)
def test_installed_wheel_runs_the_demo_pipeline(
    installed: Installed, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = new_topics(kafka_bootstrap)
    data = tmp_path / "data"
    env = pipeline_env(clean_env(HOME=str(tmp_path)), kafka_bootstrap, topics, data)
    seen = run_demo_and_query([str(installed.command)], env, tmp_path, tmp_path / "run.log", DEMO_EVENTS)
    print(f"wheel {installed.wheel.name}: {installed.wheel.stat().st_size} bytes; {seen}")
    assert seen["events_through_api"] == DEMO_EVENTS
    assert (data / "clickhouse").is_dir()  # the store is where the settings say, not in the repository
