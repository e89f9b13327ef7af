"""The built distribution, installed as a user would: a wheel in a fresh virtualenv outside the repository.

``AUDITSTREAM_TEST_WHEEL`` names a wheel to use instead of building one (CI may pass
the output of ``make dist``). The virtualenv lives in a temporary folder that every user
may read (the image test runs it as a non-root user) and is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BUILD_TIMEOUT = 300
INSTALL_TIMEOUT = 900  # the dependencies come from the package index (or pip's cache)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    usable_by_everyone: bool

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "auditstream"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user outside the repository: no PYTHONPATH, no AUDITSTREAM_* of the session."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUDITSTREAM_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return {**env, **extra}


@pytest.fixture(scope="session")
def built_wheel() -> Iterator[Path]:
    given = os.environ.get("AUDITSTREAM_TEST_WHEEL")
    if given:
        yield Path(given)
        return
    out = Path(tempfile.mkdtemp(prefix="auditstream-dist-"))
    try:
        # sdist first, then the wheel from the sdist: what `make dist` and a package index see.
        subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
            check=True,
            capture_output=True,
            timeout=BUILD_TIMEOUT,
        )
        (wheel,) = out.glob("auditstream-*.whl")
        yield wheel
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _usable_by_everyone(path: Path) -> bool:
    """Every folder above ``path`` can be entered by any user and the file can be run by any."""
    real = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in real.parents) and bool(os.stat(real).st_mode & 0o001)


def base_python() -> Path:
    """A Python 3.11+ that the image test's non-root user can run too (a pyenv one under /root cannot).

    The image's python:3.11-slim has its interpreter in /usr/local/bin; any 3.11+ will do.
    """
    own = Path(getattr(sys, "_base_executable", sys.executable))
    candidates = [
        own,
        *(Path(d) / f"python3.{m}" for d in ("/usr/local/bin", "/usr/bin") for m in (13, 12, 11)),
    ]
    for candidate in candidates:
        if candidate.exists() and _usable_by_everyone(candidate):
            return candidate
    return own


@pytest.fixture(scope="session")
def installed(built_wheel: Path) -> Iterator[Installed]:
    root = Path(tempfile.mkdtemp(prefix="auditstream-venv-"))
    root.chmod(0o755)  # the image test runs the installed command as another user
    venv = root / "venv"
    try:
        subprocess.run([str(base_python()), "-m", "venv", str(venv)], check=True, timeout=120)
        done = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", str(built_wheel)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            cwd=root,
            env=clean_env(),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        yield Installed(built_wheel, venv, usable_by_everyone=_usable_by_everyone(venv / "bin" / "python"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
