"""The sealer as run_services starts it: a thread following the feed, checkpointing on its interval."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from auditstream.config import Settings
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Checkpoint, open_note
from auditstream.integrity.sealer import Sealer
from auditstream.integrity.service import public_key, start_sealer
from auditstream.store import Store
from tests.integrity.conftest import seed

pytestmark = pytest.mark.clickhouse


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_sealer_thread_follows_and_signs(tmp_path: Path, store: Store, ledger: Ledger, tenant: str) -> None:
    settings = Settings(
        data_dir=tmp_path,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
        checkpoint_seconds=0.3,
    )
    running = start_sealer(settings, store)
    try:
        seed(store, tenant, 5)
        _wait(lambda: [c.tree_size for c in ledger.checkpoints(tenant)][-1:] == [5])
        seed(store, tenant, 3, first_offset=5)
        _wait(lambda: [c.tree_size for c in ledger.checkpoints(tenant)][-1:] == [8])
    finally:
        running.stop()
    assert not running.thread.is_alive()
    verifier = public_key(settings)
    assert verifier is not None and (tmp_path / "checkpoint.key").stat().st_mode & 0o077 == 0
    sizes = [Checkpoint.parse(open_note(c.note, verifier)).size for c in ledger.checkpoints(tenant)]
    assert sizes == sorted(sizes) and sizes[-1] == 8
    assert list((tmp_path / "checkpoints" / tenant).glob("*.notes"))


def test_checkpoint_interval_is_respected(store: Store, ledger: Ledger, signer, tenant: str) -> None:
    sealer = Sealer(store, ledger, signer, checkpoint_seconds=3600)
    seed(store, tenant, 4)
    sealer.seal_tenant(tenant, store.feed_watermark(tenant))
    assert sealer.checkpoint(tenant) is not None  # the first one at once
    seed(store, tenant, 2, first_offset=4)
    sealer.seal_tenant(tenant, store.feed_watermark(tenant))
    assert sealer.checkpoint(tenant) is None  # grew, but the hour has not passed
    # A restarted sealer keeps the interval from the stored checkpoint's time.
    restarted = Sealer(store, ledger, signer, checkpoint_seconds=3600)
    assert restarted.checkpoint(tenant) is None
    assert restarted.checkpoint(tenant, force=True).tree_size == 6
    assert restarted.checkpoint(tenant, force=True) is None  # nothing new: no checkpoint
