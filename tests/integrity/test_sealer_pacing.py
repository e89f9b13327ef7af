"""The sealer yields to ingest on the real store: one page per round while the feed heads move,
full speed once they stay put, and still exactly once (the log verifies)."""

from __future__ import annotations

import threading
import time

import pytest

from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Signer
from auditstream.integrity.sealer import Sealer
from auditstream.store import Store
from tests.integrity.conftest import check, seed

pytestmark = pytest.mark.clickhouse

PAGE = 4


def test_one_page_per_round_while_ingest_is_active(
    store: Store, ledger: Ledger, signer: Signer, tenant: str
) -> None:
    sealer = Sealer(store, ledger, signer, checkpoint_seconds=3600, page_size=PAGE, duty=0.1)
    seed(store, tenant, 3 * PAGE)
    assert sealer.run_once().get(tenant) == 3 * PAGE  # first round: nothing known, full speed
    assert not sealer.yielding

    seed(store, tenant, 5 * PAGE, first_offset=3 * PAGE)  # events arrived since the last round
    assert sealer.run_once().get(tenant) == PAGE
    assert sealer.ingest_active and sealer.yielding
    seed(store, tenant, PAGE, first_offset=8 * PAGE)
    assert sealer.run_once().get(tenant) == PAGE  # still arriving: still one page

    # The heads stayed put since the last round: ingest paused, catch up at full speed.
    assert sealer.run_once().get(tenant) == 9 * PAGE - 5 * PAGE
    assert not sealer.yielding
    sealer.checkpoint(tenant, force=True)
    report = check(sealer, tenant)
    assert report.exit_code == 0 and report.tree_size == 9 * PAGE, report.lines()


def test_never_yields_with_duty_1(store: Store, ledger: Ledger, signer: Signer, tenant: str) -> None:
    sealer = Sealer(store, ledger, signer, checkpoint_seconds=3600, page_size=PAGE)
    seed(store, tenant, PAGE)
    sealer.run_once()
    seed(store, tenant, 3 * PAGE, first_offset=PAGE)
    assert sealer.run_once().get(tenant) == 3 * PAGE
    assert sealer.ingest_active and not sealer.yielding


def test_running_sealer_pauses_and_stops_in_time(
    store: Store, ledger: Ledger, signer: Signer, tenant: str
) -> None:
    """The thread's loop with pauses: it seals everything and stops when told (bounded)."""
    sealer = Sealer(store, ledger, signer, checkpoint_seconds=0.5, page_size=PAGE, duty=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=sealer.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        for batch in range(4):
            seed(store, tenant, 2 * PAGE, first_offset=batch * 2 * PAGE)
        deadline = time.monotonic() + 60
        while sealer.tree_size(tenant) < 8 * PAGE or not ledger.checkpoints(tenant):
            assert time.monotonic() < deadline, f"sealed {sealer.tree_size(tenant)} of {8 * PAGE}"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    assert ledger.tree_position(tenant)[0] == 8 * PAGE
