"""What ``make run`` does once the services are up: development keys, a demo load, a banner.

The keys are created once and kept in ``<data_dir>/demo-keys.json`` (0600), reused on
later starts, and each is audited (``key.created``) like a key made with ``auditstream
keys create`` (see :mod:`auditstream.demo.keys`). The demo load goes through the real
path (SDK -> Kafka -> processor -> ClickHouse); the banner is printed once the events
are queryable, so the printed ``curl`` works the moment you read it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from auditstream.api import audit_trail
from auditstream.api.keys import KeyStore, Role
from auditstream.demo.generator import generate_events
from auditstream.demo.keys import DEMO_KEYS_FILE, DemoKeys
from auditstream.producer import AuditProducer
from auditstream.runtime import Running

log = logging.getLogger(__name__)

STORED_DEADLINE_SECONDS = 120.0


def demo_on_started(n_events: int, tenants: Sequence[str]) -> Callable[[Running], Awaitable[None]]:
    async def on_started(running: Running) -> None:
        settings = running.settings
        demo_keys = DemoKeys(settings.data_dir / DEMO_KEYS_FILE, KeyStore(settings.resolved_keys_path))
        tenant = tenants[0] if tenants else "acme"
        keys = demo_keys.ensure(tenant)
        await _audit_new_keys(running, demo_keys)
        if n_events > 0:
            await _emit_demo(running, n_events, tenants)
        _banner(running, tenant, keys[Role.READER].token, keys[Role.ADMIN].token, demo_keys.path)

    return on_started


async def _audit_new_keys(running: Running, demo_keys: DemoKeys) -> None:
    """``key.created`` for each demo key not yet recorded; one that fails is retried next start."""
    pending = demo_keys.unaudited()
    if not pending:
        return
    settings = running.settings
    recorded: list[str] = []
    try:
        async with AuditProducer(bootstrap=settings.kafka_bootstrap, topic=settings.topic) as producer:
            for key in pending:
                event = audit_trail.key_event("key.created", key, audit_trail.CLI_ACTOR)
                await producer.emit_and_wait(audit_trail.internal_record(settings, event))
                recorded.append(key.key_id)
    except Exception as exc:  # broker trouble: the keys work; the events are sent on the next start
        log.warning(
            "key.created of the development keys not written to the audit log; retried at the next start",
            extra={"error": repr(exc), "keys": [k.key_id for k in pending if k.key_id not in recorded]},
        )
    if recorded:
        demo_keys.mark_audited(recorded)


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


def _banner(running: Running, tenant: str, reader: str, admin: str, keys_file: Path) -> None:
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
        f"  keys file      {keys_file}  (owner only; the same keys on every start)",
        "",
        "Try:",
        f"  curl -s -H 'Authorization: Bearer {reader}' '{url}/v1/events?limit=5'",
        f"  curl -s -H 'Authorization: Bearer {reader}' '{url}/v1/events?action=user.login_failed&since=-7d'",
        f"  curl -s -H 'Authorization: Bearer {admin}' '{url}/v1/export?format=ndjson' | head",
        "",
    ]
    print("\n".join(lines), flush=True)
