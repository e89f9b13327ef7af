"""The query API in a child process (``auditstream api``) so its RSS is its own.

The child opens the chDB path itself: the parent must have closed its own engine on
that path first (chDB locks a path to one process). Binds 127.0.0.1 on a free port and
is always stopped: SIGTERM, then SIGKILL after a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from auditstream.api.keys import KeyStore, Role


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_key(keys_path: Path, tenant: str, role: str = "exporter") -> str:
    return KeyStore(keys_path).create(tenant, Role(role), "bench").token


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS since start) of ``pid`` from /proc, in KiB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class ApiProcess:
    def __init__(self, workdir: Path, dsn: str, database: str, bootstrap: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys_path = workdir / "keys.sqlite3"
        self.log_path = workdir / "api.log"
        self.env = {
            **os.environ,
            "AUDITSTREAM_CLICKHOUSE_DSN": dsn,
            "AUDITSTREAM_CLICKHOUSE_DATABASE": database,
            "AUDITSTREAM_DATA_DIR": str(workdir),
            "AUDITSTREAM_KEYS_PATH": str(self.keys_path),
            "AUDITSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "AUDITSTREAM_API_HOST": "127.0.0.1",
            "AUDITSTREAM_LOG_LEVEL": "WARNING",
            # The bench windows reach 30+ days back; allow them.
            "AUDITSTREAM_MAX_WINDOW_DAYS": "92",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 120.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "auditstream.cli.main",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"API not up within {ready_within}s: {self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ApiProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
