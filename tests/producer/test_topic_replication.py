"""Replication settings of the topics we create: unchanged for one broker, set for a cluster.

On one broker (the session's) the pipeline's topics are created with replication 1 and no
``min.insync.replicas`` of their own; the cluster test (tests/cluster/) checks 3 and 2.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from auditstream.config import Settings
from auditstream.kafka_admin import ensure_pipeline_topics, input_topic_configs, replication_configs
from tests.cluster.kafka_cluster import describe, topic_config


def test_defaults_are_those_of_one_broker() -> None:
    settings = Settings(_env_file=None)
    assert settings.topic_replication_factor == 1 and settings.topic_min_insync_replicas is None
    assert replication_configs(settings) == {}
    assert input_topic_configs(settings) == {"max.message.bytes": str(settings.max_message_bytes)}


def test_min_insync_replicas_goes_to_both_topics() -> None:
    settings = Settings(_env_file=None, topic_replication_factor=3, topic_min_insync_replicas=2)
    assert replication_configs(settings) == {"min.insync.replicas": "2"}
    assert input_topic_configs(settings)["min.insync.replicas"] == "2"


@pytest.mark.kafka
def test_pipeline_topics_on_one_broker_keep_replication_one(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        _env_file=None,
        kafka_bootstrap=kafka_bootstrap,
        topic=f"repl.{suffix}",
        dlq_topic=f"repl.{suffix}.dlq",
    )
    asyncio.run(ensure_pipeline_topics(settings, wait_seconds=30))
    for topic in (settings.topic, settings.dlq_topic):
        layout = asyncio.run(describe(kafka_bootstrap, topic))
        assert len(layout) == settings.topic_partitions
        assert all(len(p["replicas"]) == 1 for p in layout.values())
        # Not set on the topic: the broker's default applies (1 on the development broker).
        assert asyncio.run(topic_config(kafka_bootstrap, topic, "min.insync.replicas")) == "1"
