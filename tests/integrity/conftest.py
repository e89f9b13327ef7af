"""Fixtures for integrity tests on the real store (chDB): a store, its ledger, a sealer, helpers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Signer
from auditstream.integrity.sealer import Sealer
from auditstream.integrity.verify import Report, verify_tenant
from auditstream.store import Store
from auditstream.store.client import create_client
from tests.store.conftest import build_row, store, tenant  # noqa: F401 - fixtures re-used here


@pytest.fixture(scope="module")
def ledger(store: Store) -> Iterator[Ledger]:  # noqa: F811
    led = Ledger(store.dsn, store.database)
    try:
        yield led
    finally:
        led.close()


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate("auditstream")


@pytest.fixture
def sealer(store: Store, ledger: Ledger, signer: Signer, tmp_path: Path) -> Sealer:  # noqa: F811
    return Sealer(store, ledger, signer, checkpoint_seconds=3600, checkpoint_dir=tmp_path / "checkpoints")


@pytest.fixture(scope="module")
def insider(store: Store) -> Iterator[Client]:  # noqa: F811
    """A raw ClickHouse client: what someone with the database password has."""
    client = create_client(store.dsn)
    try:
        yield client
    finally:
        client.close()


def sql(client: Client, statement: str, **params: Any) -> None:
    """Run a statement; mutations wait until applied (mutations_sync), as an insider would."""
    client.command(statement, parameters=params, settings={"mutations_sync": 2})


def seed(
    store: Store,  # noqa: F811
    tenant_id: str,
    count: int,
    *,
    first_offset: int = 0,
    occurred_at: datetime | None = None,
) -> list[tuple]:
    """``count`` events in two partitions (even offsets in 0, odd in 1), stored like the processor does."""
    base = occurred_at or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    rows = []
    for i in range(count):
        offset = first_offset + i
        at = base + timedelta(seconds=offset)
        rows.append(
            build_row(
                tenant_id=tenant_id,
                occurred_at=at,
                received_at=at + timedelta(milliseconds=5),
                actor_id=f"user{offset}",
                details={"n": str(offset)},
                kafka_partition=offset % 2,
                kafka_offset=offset,
            )
        )
    store.insert_rows(rows)
    return rows


def seal(sealer: Sealer, tenant_id: str) -> None:
    """Seal everything stored for the tenant and sign a checkpoint now."""
    while sealer.seal_tenant(tenant_id, sealer.store.feed_watermark(tenant_id)):
        pass
    sealer.checkpoint(tenant_id, force=True)


def check(sealer: Sealer, tenant_id: str, *, retention_days: int = 3650) -> Report:
    return verify_tenant(
        sealer.ledger,
        tenant_id,
        sealer.signer.verifier,
        origin=sealer.origin(tenant_id),
        retention_days=retention_days,
    )
