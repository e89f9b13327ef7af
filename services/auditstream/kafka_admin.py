"""Create the pipeline's Kafka topics when they are missing.

Usage::

    await ensure_topics("127.0.0.1:9092", {"audit.events": 3, "audit.events.dlq": 3})
    await ensure_pipeline_topics(settings)  # the pipeline's two topics, as the settings say

``configs`` (topic -> {config: value}) is applied when a topic is created, e.g.
the input topic's ``max.message.bytes`` (see :func:`input_topic_configs`).

Idempotent: existing topics are left alone (also when another process creates
them at the same moment), so every component may call it at start-up. A broker
that is still starting is waited for, up to ``wait_seconds``, then a clear
error is raised instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

if TYPE_CHECKING:
    from auditstream.config import Settings

log = logging.getLogger(__name__)

DEFAULT_WAIT_SECONDS = 60.0


class TopicSetupError(RuntimeError):
    """The topics could not be created (broker unreachable or a creation refused)."""


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    replication_factor: int = 1,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create every topic of ``topics`` (name -> partitions) that does not exist yet.

    Waits for the broker to answer (and, after creating, for the new topics to
    appear in its metadata, so that a producer started right after finds them)
    up to ``wait_seconds``, then raises :class:`TopicSetupError`. A topic
    that already exists with another partition count is logged, not changed.
    """
    if not topics:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    admin = await _connect(bootstrap, deadline, wait_seconds)
    try:
        existing = set(await admin.list_topics())
        missing = {name: n for name, n in topics.items() if name not in existing}
        if missing:
            await _create(admin, missing, replication_factor, configs or {})
            await _wait_visible(admin, set(missing), deadline, bootstrap)
        await _warn_partition_mismatch(admin, topics, existing)
    finally:
        await admin.close()


async def _connect(bootstrap: str, deadline: float, wait_seconds: float) -> AIOKafkaAdminClient:
    loop = asyncio.get_running_loop()
    delay = 0.2
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await asyncio.wait_for(admin.start(), timeout=max(deadline - loop.time(), 0.1))
            return admin
        except (KafkaConnectionError, TimeoutError) as exc:
            await admin.close()
            if loop.time() >= deadline:
                raise TopicSetupError(
                    f"Kafka broker at {bootstrap} did not answer within {wait_seconds:g} s "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            log.info("broker at %s not reachable yet; retrying in %.1f s", bootstrap, delay)
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.0)))
            delay = min(delay * 2, 2.0)
        except BaseException:
            await admin.close()
            raise


def input_topic_configs(settings: Settings) -> dict[str, str]:
    """Configs of the input topic: records up to ``max_message_bytes`` are accepted.

    Larger than the contract's 64 KiB on purpose: a producer that is not the SDK may
    send an oversized record, and it is better for it to reach the DLQ with its
    reason than to be refused at the producer where nobody looks.
    """
    return {"max.message.bytes": str(settings.max_message_bytes), **replication_configs(settings)}


def replication_configs(settings: Settings) -> dict[str, str]:
    """``min.insync.replicas`` of every topic we create, when set.

    With ``acks=all`` (the SDK, the processor's DLQ writes) a write is acknowledged once
    this many replicas have it: with replication 3 and 2 in sync, one broker may fail
    without losing an acknowledged event and without stopping writes.
    """
    if settings.topic_min_insync_replicas is None:
        return {}
    return {"min.insync.replicas": str(settings.topic_min_insync_replicas)}


async def ensure_pipeline_topics(
    settings: Settings,
    *,
    bootstrap: str | None = None,
    topic: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> None:
    """The input topic (``topic``, default ``settings.topic``) and the DLQ, as the settings say.

    Partitions, replication factor and ``min.insync.replicas`` come from ``settings``.
    """
    topic = topic or settings.topic
    await ensure_topics(
        bootstrap or settings.kafka_bootstrap,
        {topic: settings.topic_partitions, settings.dlq_topic: settings.topic_partitions},
        settings.topic_replication_factor,
        wait_seconds=wait_seconds,
        configs={topic: input_topic_configs(settings), settings.dlq_topic: replication_configs(settings)},
    )


async def _create(
    admin: AIOKafkaAdminClient,
    missing: Mapping[str, int],
    replication_factor: int,
    configs: Mapping[str, Mapping[str, str]],
) -> None:
    response = await admin.create_topics(
        [
            NewTopic(
                name=name,
                num_partitions=n,
                replication_factor=replication_factor,
                topic_configs=dict(configs.get(name, {})),
            )
            for name, n in missing.items()
        ]
    )
    problems = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code == 0:
            log.info("created topic %s (%d partitions)", name, missing[name])
            continue
        error_type = for_code(code)
        if error_type is TopicAlreadyExistsError:
            continue  # created concurrently by another process: that is the goal anyway
        message = entry[2] if len(entry) > 2 and entry[2] else error_type.__name__
        problems.append(f"{name}: {message}")
    if problems:
        raise TopicSetupError("could not create topic(s): " + "; ".join(problems))


async def _wait_visible(admin: AIOKafkaAdminClient, names: set[str], deadline: float, bootstrap: str) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            if names <= set(await admin.list_topics()):
                return
        except KafkaError as exc:
            log.debug("listing topics failed, retrying: %r", exc)
        if loop.time() >= deadline:
            raise TopicSetupError(f"topics {sorted(names)} created but not visible on {bootstrap} in time")
        await asyncio.sleep(0.1)


async def _warn_partition_mismatch(
    admin: AIOKafkaAdminClient, topics: Mapping[str, int], existing: set[str]
) -> None:
    names = [name for name in topics if name in existing]
    if not names:
        return
    try:
        described = await admin.describe_topics(names)
    except KafkaError:
        return  # informational only
    for topic in described:
        name = topic.get("topic")
        partitions = len(topic.get("partitions") or [])
        if name in topics and partitions and partitions != topics[name]:
            log.warning(
                "topic %s exists with %d partitions (wanted %d); left unchanged",
                name,
                partitions,
                topics[name],
            )
