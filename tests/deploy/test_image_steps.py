"""The container image's steps, without Docker: the wheel in a clean venv, run as the service user.

What deploy/docker/Dockerfile does, read from it: the wheel installed by root into a
virtualenv the service user cannot write (the image's site-packages), a non-root system
user, the folders the image creates for volumes owned by that user, ``HOME``,
``AUDITSTREAM_DATA_DIR`` and ``AUDITSTREAM_KEYS_PATH`` as its ``ENV`` sets them (placed
under a temporary root instead of ``/``), the working directory its ``WORKDIR`` names, and
a private ``TMPDIR`` standing in for the tmpfs the compose file mounts on ``/tmp`` of a
read-only root filesystem. As that user: ``auditstream migrate``, then ``auditstream run
--demo`` against the test broker, read back through the API. Afterwards every file the
service wrote is inside its own folders and belongs to it.

Needs root (to create the user and switch to it); CI runs as root. The API binds to
127.0.0.1 here, not to the image's 0.0.0.0.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import Installed, clean_env
from tests.deploy.dockerfile import runtime_stage
from tests.deploy.installed_run import pipeline_env, run_demo_and_query
from tests.fixtures.kafka import new_topics

pytestmark = [pytest.mark.dist]

DEMO_EVENTS = 200


@pytest.fixture
def service_user() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("the image test creates a system user and runs as it: needs root (CI runs as root)")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    name = f"as-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        timeout=30,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, timeout=30)


def owned_by(root: Path, uid: int) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.lstat().st_uid == uid:
                found.append(path)
        except FileNotFoundError:
            continue  # a temporary file that went away while we looked
    return found


@pytest.mark.kafka
@pytest.mark.clickhouse
@pytest.mark.pipeline
@pytest.mark.timeout(600)
def test_image_steps_run_as_the_service_user(
    installed: Installed, service_user: pwd.struct_passwd, kafka_bootstrap: str
) -> None:
    if not installed.usable_by_everyone:
        pytest.skip(f"no Python that another user may run was found for {installed.venv}")
    stage = runtime_stage()
    assert stage.user and stage.user != "root", "the image must not run as root"
    assert stage.pip_install.startswith("pip install") and ".whl" in stage.pip_install
    uid, gid = service_user.pw_uid, service_user.pw_gid
    image_root = Path(tempfile.mkdtemp(prefix="auditstream-image-"))
    image_root.chmod(0o755)
    try:

        def inside(path: str) -> Path:
            return image_root / path.lstrip("/")

        for folder in stage.owned_dirs:  # install -d -o <user> -m 0750 ...
            inside(folder).mkdir(parents=True, exist_ok=True)
            os.chown(inside(folder), uid, gid)
            inside(folder).chmod(0o750)
        tmp = inside("/tmp")
        tmp.mkdir()
        os.chown(tmp, uid, gid)
        env = clean_env(TMPDIR=str(tmp), AUDITSTREAM_API_HOST="127.0.0.1")
        for name, value in stage.env.items():
            env[name] = str(inside(value)) if value.startswith("/var/") else value
        topics = new_topics(kafka_bootstrap)
        env = pipeline_env(env, kafka_bootstrap, topics, Path(env["AUDITSTREAM_DATA_DIR"]))
        workdir = inside(stage.workdir)
        as_user = {"user": uid, "group": gid, "extra_groups": []}

        migrate = subprocess.run(
            [str(installed.command), "migrate"],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=180,
            **as_user,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        assert "applied 0001_" in migrate.stdout

        log_path = tmp / "run.log"
        seen = run_demo_and_query(
            [str(installed.command)], env, workdir, log_path, DEMO_EVENTS, popen_extra=as_user
        )
        assert seen["events_through_api"] == DEMO_EVENTS

        keys_file = Path(env["AUDITSTREAM_KEYS_PATH"])
        assert keys_file.is_file() and keys_file.stat().st_uid == uid
        data_dir = Path(env["AUDITSTREAM_DATA_DIR"])
        assert (data_dir / "clickhouse").is_dir() and (data_dir / "clickhouse").stat().st_uid == uid
        # Nothing the service wrote is outside its folders, and nothing there belongs to root.
        allowed = [inside(folder) for folder in stage.owned_dirs] + [tmp]
        stray = [p for p in owned_by(image_root, uid) if not any(p == a or a in p.parents for a in allowed)]
        assert not stray, stray
        foreign = [p for p in data_dir.rglob("*") if p.lstat().st_uid != uid]
        assert not foreign, f"files in the data folder not owned by {stage.user}: {foreign[:5]}"
        assert not owned_by(installed.venv, uid), "the service wrote into the installed package"
    finally:
        shutil.rmtree(image_root, ignore_errors=True)
