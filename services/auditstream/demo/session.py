"""What ``make run`` does once the services are up: a development key, a demo load, a banner.

The demo load goes through the real path (SDK -> Kafka -> processor -> ClickHouse);
the banner is printed once the events are queryable, so the printed ``curl``
works the moment you read it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from auditstream.api.keys import KeyStore, Role
from auditstream.demo.generator import generate_events
from auditstream.producer import AuditProducer
from auditstream.runtime import Running

log = logging.getLogger(__name__)

STORED_DEADLINE_SECONDS = 120.0


def demo_on_started(n_events: int, tenants: Sequence[str]) -> Callable[[Running], Awaitable[None]]:
    async def on_started(running: Running) -> None:
        settings = running.settings
        keys = KeyStore(settings.resolved_keys_path)
        tenant = tenants[0] if tenants else "acme"
        reader = keys.create(tenant, Role.READER, name="make run: development reader")
        admin = keys.create(tenant, Role.ADMIN, name="make run: development admin")
        if n_events > 0:
            await _emit_demo(running, n_events, tenants)
        _banner(running, tenant, reader.token, admin.token)

    return on_started


async def _emit_demo(running: Running, n_events: int, tenants: Sequence[str]) -> None:
    settings = running.settings
    before = await asyncio.to_thread(running.store.count_by_tenant)
    expected = sum(before.values()) + n_events
    started = time.monotonic()
    async with AuditProducer(bootstrap=settings.kafka_bootstrap, topic=settings.topic) as producer:
        for event in generate_events(n_events, tenants=list(tenants), seed=int(time.time())):
            await producer.emit(event)
    deadline = started + STORED_DEADLINE_SECONDS
    stored = 0
    while time.monotonic() < deadline:
        stored = sum((await asyncio.to_thread(running.store.count_by_tenant)).values())
        if stored >= expected:
            break
        await asyncio.sleep(0.2)
    log.info(
        "demo load stored",
        extra={"events": n_events, "stored_total": stored, "seconds": round(time.monotonic() - started, 2)},
    )


def _banner(running: Running, tenant: str, reader: str, admin: str) -> None:
    url = running.api_url or "(API not started)"
    lines = [
        "",
        "auditstream is running (Ctrl-C stops it)",
        f"  Web viewer     {url}/   (sign in with a key below)",
        f"  API            {url}/v1",
        f"  OpenAPI docs   {url}/docs",
        f"  health         {url}/healthz   {url}/readyz   {url}/metrics",
        f"  Kafka          {running.settings.kafka_bootstrap}  topic {running.settings.topic}",
        f"  ClickHouse     {running.settings.resolved_clickhouse_dsn}",
        f"  reader key ({tenant})  {reader}",
        f"  admin key  ({tenant})  {admin}",
        "",
        "Try:",
        f"  curl -s -H 'Authorization: Bearer {reader}' '{url}/v1/events?limit=5'",
        f"  curl -s -H 'Authorization: Bearer {reader}' '{url}/v1/events?action=user.login_failed&since=-7d'",
        f"  curl -s -H 'Authorization: Bearer {admin}' '{url}/v1/export?format=ndjson' | head",
        "",
    ]
    print("\n".join(lines), flush=True)
