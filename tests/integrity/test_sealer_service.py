"""The sealer as run_services starts it: a thread following the feed, checkpointing on its interval."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from auditstream.config import Settings
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Checkpoint, open_note
from auditstream.integrity.sealer import Sealer
from auditstream.integrity.service import public_key, start_sealer
from auditstream.runtime import Running, run_services
from auditstream.store import Store
from tests.fixtures.kafka import free_port, new_topics
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


@pytest.mark.kafka
def test_followers_alone_seal_what_another_process_stored(
    tmp_path: Path, store: Store, ledger: Ledger, tenant: str, kafka_bootstrap: str
) -> None:
    # `auditstream followers`: no processor and no query routes, only the feed followers
    # (and health/metrics), following rows stored by processors started with --no-followers.
    topics = new_topics(kafka_bootstrap)
    settings = Settings(
        data_dir=tmp_path,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
        kafka_bootstrap=kafka_bootstrap,
        topic=topics.events,
        dlq_topic=topics.dlq,
        checkpoint_seconds=0.3,
        api_port=free_port(),
    )

    async def scenario() -> tuple[int, int, int]:
        stop = asyncio.Event()
        started: list[Running] = []

        async def on_started(running: Running) -> None:
            started.append(running)

        task = asyncio.create_task(
            run_services(
                settings, api=False, processor=False, followers=True, on_started=on_started, stop=stop
            )
        )
        try:
            deadline = time.monotonic() + 60
            while not started:
                assert time.monotonic() < deadline and not task.done(), "followers did not start"
                await asyncio.sleep(0.05)
            assert started[0].processor is None
            await asyncio.to_thread(seed, store, tenant, 6)
            sizes: list[int] = []
            while sizes[-1:] != [6]:
                assert time.monotonic() < deadline, f"not sealed in time: {sizes}"
                await asyncio.sleep(0.05)
                sizes = [c.tree_size for c in await asyncio.to_thread(ledger.checkpoints, tenant)]
            async with httpx.AsyncClient(base_url=started[0].api_url, timeout=10) as http:
                health = (await http.get("/healthz")).status_code
                query = (await http.get("/v1/events")).status_code
            return sizes[-1], health, query
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)

    size, health, query = asyncio.run(scenario())
    assert size == 6 and health == 200
    assert query == 404  # the followers serve no query routes
    assert public_key(settings) is not None  # the key lives with the followers' data folder


def test_the_sealer_writes_the_public_key_file_and_verifiers_need_only_that(
    tmp_path: Path, store: Store
) -> None:
    sealer_side = Settings(data_dir=tmp_path / "followers", clickhouse_dsn=store.dsn,
                           clickhouse_database=store.database,
                           checkpoint_public_key_path=tmp_path / "shared" / "checkpoint.pub")  # fmt: skip
    running = start_sealer(sealer_side, store)
    running.stop()
    public = tmp_path / "shared" / "checkpoint.pub"
    signer_text = (tmp_path / "followers" / "checkpoint.key").read_text()
    assert public.stat().st_mode & 0o777 == 0o644 and "PRIVATE" not in public.read_text()
    assert signer_text.startswith("PRIVATE+KEY+")
    # The API's settings: its own data folder (no signing key there), the shared public key.
    api_side = Settings(data_dir=tmp_path / "api", checkpoint_public_key_path=public)
    verifier = public_key(api_side)
    assert verifier is not None and str(verifier) == public.read_text().strip()
    assert not (tmp_path / "api" / "checkpoint.key").exists()
    # A restart with the same key leaves the file as it is; a file that says another key is fixed.
    before = public.stat().st_mtime_ns
    start_sealer(sealer_side, store).stop()
    assert public.stat().st_mtime_ns == before
    public.write_text("auditstream+00000000+AAAA\n")
    start_sealer(sealer_side, store).stop()
    assert str(public_key(api_side)) == str(verifier)
