"""Fixtures of the cluster tests: the three-broker loopback cluster."""

from tests.cluster.kafka_cluster import kafka_cluster

__all__ = ["kafka_cluster"]
