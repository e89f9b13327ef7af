"""A three-node KRaft cluster on loopback (deploy/kafka/cluster.sh), for the cluster tests.

Every call is bounded in time; the cluster is stopped and its folder removed when the
fixture ends, also after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "deploy" / "kafka" / "cluster.sh"
NODES = 3


def _free_block(size: int) -> int:
    """A base port with ``size`` free ports from it, below Linux's ephemeral range (32768+):
    between this check and the brokers binding, an outgoing connection could take a port
    of a block inside that range."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20_000, 32_000 - size)
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no block of free loopback ports")


class KafkaCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="auditstream-kafka-cluster-"))
        self.base_port = _free_block(2 * NODES)
        self.env = {
            **os.environ,
            "KAFKA_CLUSTER_DIR": str(self.dir),
            "KAFKA_NODES": str(NODES),
            "KAFKA_BASE_PORT": str(self.base_port),
        }
        self.bootstrap = ",".join(f"127.0.0.1:{self.port(n)}" for n in range(1, NODES + 1))

    def port(self, node: int) -> int:
        return self.base_port + 2 * (node - 1)

    def node_of_port(self, port: int) -> int:
        return (port - self.base_port) // 2 + 1

    def _run(self, *args: str, timeout: float = 180) -> None:
        subprocess.run([str(CLUSTER_SH), *args], env=self.env, check=True, timeout=timeout)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop", timeout=120)

    def kill(self, node: int) -> None:
        self._run("kill", str(node), timeout=30)

    def start_node(self, node: int) -> None:
        self._run("start-node", str(node))


async def describe(bootstrap: str, topic: str) -> dict[int, dict[str, Any]]:
    """partition -> {leader, replicas, isr} as the cluster's metadata says now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {
            p["partition"]: {"leader": p["leader"], "replicas": list(p["replicas"]), "isr": list(p["isr"])}
            for p in described["partitions"]
        }
    finally:
        await admin.close()


async def topic_config(bootstrap: str, topic: str, name: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {name: None})]
        )
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    if entry[0] == name:
                        return entry[1]
        return None
    finally:
        await admin.close()


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    with contextlib.suppress(Exception):
        return {p: d["leader"] for p, d in asyncio.run(describe(bootstrap, topic)).items()}
    return {}


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[KafkaCluster]:
    cluster = KafkaCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)
