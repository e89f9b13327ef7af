"""``auditstream demo``: publish a realistic audit-event load (and optionally malformed messages).

Example::

    auditstream demo --events 3000 --tenants acme,globex,initech
    auditstream demo --events 100000 --malformed 500   # also exercise the dead-letter queue

The valid events go through the SDK (:class:`AuditProducer`), exactly as a
service would send them. Malformed messages cannot go through the SDK (it
refuses them), so they are written with a raw Kafka client — what a buggy
producer in another language would do — and must end up in the DLQ.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from auditstream.config import Settings


def demo(
    events: Annotated[
        int, typer.Option("--events", "-n", min=0, help="How many valid events to emit.")
    ] = 3000,
    tenants: Annotated[str, typer.Option(help="Comma-separated tenant ids.")] = "acme,globex,initech",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same events.")] = 0,
    days: Annotated[float, typer.Option(min=0.0, help="Spread occurred_at over the last N days.")] = 3.0,
    malformed: Annotated[
        int, typer.Option(min=0, help="Also write this many malformed messages (raw client) for the DLQ.")
    ] = 0,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers [default: AUDITSTREAM_KAFKA_BOOTSTRAP]")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Topic [default: AUDITSTREAM_TOPIC]")] = None,
    create_topics: Annotated[
        bool,
        typer.Option("--create-topics/--no-create-topics", help="Create the topic and the DLQ if missing."),
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker to answer.")] = 60.0,
) -> None:
    """Emit a realistic audit-event load (scans, logins, RBAC, keys, config) through the SDK."""
    from auditstream.config import Settings

    settings = Settings()
    bootstrap = bootstrap or settings.kafka_bootstrap
    topic = topic or settings.topic
    tenant_list = [t.strip() for t in tenants.split(",") if t.strip()]
    if not tenant_list:
        raise typer.BadParameter("at least one tenant", param_hint="--tenants")
    try:
        summary = asyncio.run(
            _run(
                events, tenant_list, seed, days, malformed, bootstrap, topic, settings, create_topics, timeout
            )
        )
    except Exception as exc:  # broker unavailable, invalid tenant id, delivery failure: one clear line
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in summary:
        typer.echo(line)


async def _run(
    n: int,
    tenants: list[str],
    seed: int,
    days: float,
    n_malformed: int,
    bootstrap: str,
    topic: str,
    settings: Settings,
    create_topics: bool,
    broker_wait: float,
) -> list[str]:
    from auditstream.demo.generator import generate_events
    from auditstream.kafka_admin import ensure_pipeline_topics
    from auditstream.producer import AuditProducer

    if create_topics:
        await ensure_pipeline_topics(settings, bootstrap=bootstrap, topic=topic, wait_seconds=broker_wait)

    end = datetime.now(UTC)
    per_action: Counter[str] = Counter()
    per_tenant: Counter[str] = Counter()
    started = time.perf_counter()
    async with AuditProducer(bootstrap=bootstrap, topic=topic, start_timeout=broker_wait) as producer:
        for event in generate_events(
            n, tenants=tenants, seed=seed, start=end - timedelta(days=days), end=end
        ):
            await producer.emit(event)
            per_action[event["action"]] += 1
            per_tenant[event["tenant_id"]] += 1
        await producer.flush()
    elapsed = time.perf_counter() - started

    lines = [
        f"emitted {n} events to {topic} in {elapsed:.2f} s ({n / elapsed if elapsed else 0:,.0f} events/s)",
        "tenants: " + ", ".join(f"{t}={c}" for t, c in sorted(per_tenant.items())),
        "top actions: " + ", ".join(f"{a}={c}" for a, c in per_action.most_common(8)),
    ]
    if n_malformed:
        kinds = await _send_malformed(n_malformed, seed, bootstrap, topic, broker_wait)
        lines.append(
            f"wrote {n_malformed} malformed messages (raw client; expect them in the DLQ): "
            + ", ".join(f"{k}={c}" for k, c in sorted(kinds.items()))
        )
    return lines


async def _send_malformed(n: int, seed: int, bootstrap: str, topic: str, broker_wait: float) -> Counter[str]:
    from aiokafka import AIOKafkaProducer

    from auditstream.demo.malformed import malformed_kinds, malformed_messages

    raw = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10)
    await asyncio.wait_for(raw.start(), broker_wait)
    try:
        for value, _field in malformed_messages(n, seed=seed):
            await raw.send(topic, value, key=b"malformed-demo")
        await raw.flush()
    finally:
        await raw.stop()
    return Counter(malformed_kinds(n))
