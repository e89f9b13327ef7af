"""The native fast path's own Rust unit tests (calendar arithmetic, the hand-written patterns).

The proof that it accepts only what pydantic accepts is tests/events/test_fastpath.py;
these pin the pieces it is built from, where a wrong day count would otherwise only show as
a fallback to the slow path. ``--no-default-features`` links libpython for the test binary
(the extension itself is built without it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CRATE = Path(__file__).resolve().parents[2] / "native" / "fastpath" / "Cargo.toml"


def test_the_crates_unit_tests_pass() -> None:
    cargo = shutil.which("cargo") or shutil.which(str(Path.home() / ".cargo" / "bin" / "cargo"))
    if cargo is None:
        if os.environ.get("AUDITSTREAM_TEST_REQUIRE_NATIVE") == "1":
            pytest.fail("cargo not found (AUDITSTREAM_TEST_REQUIRE_NATIVE=1)")
        pytest.skip("no Rust toolchain here")
    result = subprocess.run(
        [cargo, "test", "--release", "--no-default-features", "--manifest-path", str(CRATE)],
        env={**os.environ, "PYO3_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "test result: ok" in result.stdout
