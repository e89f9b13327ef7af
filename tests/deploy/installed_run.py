"""``auditstream run --demo N`` from an installed distribution, read back through its API.

Used by the wheel test (as the current user) and the image test (as the service user).
Everything is bounded: start-up, the demo load, each request, the stop.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.kafka import Topics, free_port

DEMO_TENANTS = ("acme", "globex", "initech")


def until(predicate: Callable[[], bool], what: str, timeout: float, tail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{tail()}")


def pipeline_env(
    base: dict[str, str], kafka_bootstrap: str, topics: Topics, data_dir: Path
) -> dict[str, str]:
    return {
        **base,
        "AUDITSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AUDITSTREAM_TOPIC": topics.events,
        "AUDITSTREAM_DLQ_TOPIC": topics.dlq,
        "AUDITSTREAM_TOPIC_PARTITIONS": str(topics.partitions),
        "AUDITSTREAM_CONSUMER_GROUP": f"group-{topics.events}",
        "AUDITSTREAM_DATA_DIR": str(data_dir),
        "AUDITSTREAM_LOG_FORMAT": "json",
    }


def count_events(url: str, tokens: dict[str, str]) -> int:
    total = 0
    for token in tokens.values():
        response = httpx.get(
            f"{url}/v1/events",
            params={"since": "-7d", "limit": 1000},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        # The demo's own events only: `run` also records key.created for its development keys.
        total += sum(1 for e in response.json()["data"] if e["ingest"]["channel"] != "internal")
    return total


def run_demo_and_query(
    command: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    demo_events: int,
    *,
    popen_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start ``command run --demo N``; create a reader key per tenant; wait until the API returns them all.

    ``command`` is the installed console script (with a prefix to change user, if any).
    Returns what was seen: the ready time, the event count through the API.
    """
    port = free_port()
    started = time.monotonic()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*command, "run", "--port", str(port), "--demo", str(demo_events)],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            **(popen_extra or {}),
        )
    url = f"http://127.0.0.1:{port}"

    def tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])

    def ready() -> bool:
        assert proc.poll() is None, f"auditstream run exited with {proc.returncode}\n{tail()}"
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        until(ready, "/readyz of the installed pipeline", 180, tail)
        ready_after = time.monotonic() - started
        tokens = {}
        for tenant in DEMO_TENANTS:
            done = subprocess.run(
                [*command, "keys", "create", "--tenant", tenant, "--role", "reader", "--no-audit"],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=60,
                **(popen_extra or {}),
            )
            assert done.returncode == 0, done.stdout + done.stderr
            tokens[tenant] = done.stdout.strip()
        seen = {"n": 0}

        def all_queryable() -> bool:
            seen["n"] = count_events(url, tokens)
            return seen["n"] >= demo_events

        until(all_queryable, f"{demo_events} demo events through the API", 180, tail)
        return {"ready_seconds": round(ready_after, 1), "events_through_api": seen["n"], "url": url}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
