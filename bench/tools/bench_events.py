"""Throughput of parse_event + enrich on one core (not a test; prints events/s).

Usage: cd /work/main && .venv/bin/python /tmp/events_bench/bench_events.py
A mixed corpus of 2,000 realistic events (IPv4 and IPv6 clients, ~10% with
changes, some secret-looking details) is run several times; the best round is
reported, since other processes share the box.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import orjson

from auditstream.events import AuditEvent, enrich, parse_event, uuid7

ACTIONS = [
    "user.login",
    "user.login_failed",
    "scan.created",
    "scan.completed",
    "config.updated",
    "role.assigned",
    "api_key.revoked",
    "export.created",
    "user.deleted",
    "settings.viewed",
]


def corpus(n: int = 2000) -> list[bytes]:
    rnd = random.Random(7)
    base = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(n):
        ev = {
            "event_id": str(uuid7()),
            "occurred_at": (base + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            "tenant_id": f"tenant-{rnd.randrange(50)}",
            "action": rnd.choice(ACTIONS),
            "actor": {
                "id": f"user-{rnd.randrange(10_000)}",
                "type": "user",
                "email": f"user{rnd.randrange(10_000)}@example.com",
                "ip": f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
                if rnd.random() < 0.8
                else f"2001:db8::{rnd.randrange(65536):x}",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
            },
            "resource": {"type": "scan", "id": f"scan-{rnd.randrange(10**6)}", "name": "nightly web scan"},
            "outcome": rnd.choice(["success", "success", "success", "failure"]),
            "source": {"service": "api-gateway", "host": "gw-1.internal", "request_id": f"req-{i}"},
            "details": {"plan": "enterprise", "region": "eu-west-1", "client_secret": "s3cr3t"}
            if rnd.random() < 0.2
            else {"plan": "enterprise", "region": "eu-west-1"},
        }
        if rnd.random() < 0.1:
            ev["changes"] = [
                {"field": "retention_days", "old": 30, "new": 90},
                {"field": "smtp_password", "old": "a", "new": "b"},
            ]
        out.append(orjson.dumps(ev))
    return out


def best_rate(label: str, fn, raws: list[bytes], rounds: int = 7) -> float:
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for r in raws:
            fn(r)
        best = max(best, len(raws) / (time.perf_counter() - t0))
    print(f"{label:<38} {best:>10,.0f} events/s  {1e6 / best:6.2f} µs/event")
    return best


def main() -> None:
    raws = corpus()
    print(f"corpus: {len(raws)} events, mean {sum(map(len, raws)) / len(raws):.0f} bytes")
    received = datetime.now(UTC)
    best_rate("orjson.loads (baseline)", orjson.loads, raws)
    best_rate("AuditEvent.model_validate_json", AuditEvent.model_validate_json, raws)
    best_rate("parse_event", parse_event, raws)
    best_rate(
        "parse_event + enrich",
        lambda r: enrich(parse_event(r), topic="audit.events", partition=0, offset=1, received_at=received),
        raws,
    )


if __name__ == "__main__":
    main()
