"""The sealer's public methods may be called from another thread while it runs (the pacing
test reads ``tree_size`` that way): a second thread must never load a second copy of a
tenant's state over the one the sealing thread advances, or pages are sealed twice at one
index and others never."""

from __future__ import annotations

import contextlib
import threading

import pytest

from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Signer
from auditstream.integrity.sealer import Sealer
from auditstream.store import Store
from tests.integrity.conftest import check, seal, seed

pytestmark = pytest.mark.clickhouse

PAGE = 4
BOUND = 2.0  # seconds any hand-over below waits at most


class _OverlappingLoads(Ledger):
    """The real ledger; its ``tree_position`` (the first read of a state load) lets the reader
    thread's load finish only after the sealing thread's page, the interleaving that lost
    leaves in CI. With the sealer's lock the reader never gets here while a page runs."""

    def __init__(self, dsn: str, database: str) -> None:
        super().__init__(dsn, database)
        self.both_loading = threading.Barrier(2, timeout=BOUND)
        self.page_done = threading.Event()
        self.reader: threading.Thread | None = None

    def tree_position(self, tenant_id: str) -> tuple[int, dict[int, int]]:
        position = super().tree_position(tenant_id)
        # Broken: the other thread is not loading (serialised), nothing to interleave.
        with contextlib.suppress(threading.BrokenBarrierError):
            self.both_loading.wait()
        if threading.current_thread() is self.reader:
            self.page_done.wait(BOUND)
        return position


def test_a_reader_thread_cannot_replace_the_state_the_sealing_thread_advances(
    store: Store, signer: Signer, tenant: str
) -> None:
    ledger = _OverlappingLoads(store.dsn, store.database)
    try:
        sealer = Sealer(store, ledger, signer, checkpoint_seconds=3600, page_size=PAGE)
        seed(store, tenant, 2 * PAGE)
        heads = store.feed_watermark(tenant)
        errors: list[BaseException] = []

        def one_page() -> None:
            try:
                sealer.seal_tenant(tenant, heads, max_pages=1)
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                ledger.page_done.set()

        sealing = threading.Thread(target=one_page)
        ledger.reader = threading.Thread(target=sealer.tree_size, args=(tenant,))
        sealing.start()
        ledger.reader.start()
        sealing.join(3 * BOUND)
        ledger.reader.join(3 * BOUND)
        assert not sealing.is_alive() and not ledger.reader.is_alive() and not errors

        seed(store, tenant, 2 * PAGE, first_offset=2 * PAGE)
        seal(sealer, tenant)
        assert sealer.tree_size(tenant) == 4 * PAGE
        assert ledger.tree_position(tenant)[0] == 4 * PAGE
        report = check(sealer, tenant)
        assert report.exit_code == 0 and report.tree_size == 4 * PAGE, report.lines()
    finally:
        ledger.close()
