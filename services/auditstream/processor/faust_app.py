"""The faust application: consumer group, broker, serializers, batching buffers.

Values stay raw bytes: validation is ours (``events.validation``), so a message
faust could not decode is still ours to send to the dead-letter topic.
"""

from __future__ import annotations

import faust

from auditstream.config import Settings
from auditstream.private_fs import private_dir


def build_faust_app(settings: Settings) -> faust.App:
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",") if host.strip()]
    return faust.App(
        settings.consumer_group,
        broker=brokers,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        autodiscover=False,
        # Created here, owner-only, before faust would create it with the umask's mode.
        datadir=str(private_dir(settings.data_dir / "faust")),
        # A new consumer group starts at the beginning: an audit log must not skip history.
        consumer_auto_offset_reset="earliest",
        # Topics are created by us with the partition count we want (kafka_admin.ensure_topics).
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        producer_acks=-1,
        # One getmany() can fill a whole batch (BatchFetcher, fetcher.py).
        broker_max_poll_records=settings.batch_max_events,
        consumer_max_fetch_size=8 * 1024 * 1024,
        broker_commit_interval=1.0,
    )
