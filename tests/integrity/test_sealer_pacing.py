"""The sealer yields to ingest on the real store: one page per round while the feed heads move,
the tenants in turn, full speed once they stay put or once a tenant is too far behind, and
still exactly once (the log verifies).

``seed`` stores events received an hour ago, so a page that leaves more behind shows a lag
of about an hour: the pacing tests give the sealer a larger ``max_lag_seconds``."""

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
PATIENT = 10 * 24 * 3600.0  # a max_lag_seconds no seeded event reaches


def test_one_page_per_round_while_ingest_is_active(
    store: Store, ledger: Ledger, signer: Signer, tenant: str
) -> None:
    sealer = Sealer(
        store, ledger, signer, checkpoint_seconds=3600, page_size=PAGE, duty=0.1, max_lag_seconds=PATIENT
    )
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


def test_one_page_in_all_per_round_the_tenants_in_turn(
    store: Store, ledger: Ledger, signer: Signer, tenant: str
) -> None:
    """While yielding, a round seals one page whatever the number of tenants, and the next
    round goes on with the next tenant, not the first one again."""
    tenants = [f"{tenant}-a", f"{tenant}-b", f"{tenant}-c"]
    sealer = Sealer(
        store, ledger, signer, checkpoint_seconds=3600, page_size=PAGE, duty=0.1, max_lag_seconds=PATIENT
    )
    for t in tenants:
        seed(store, t, PAGE)
    sealer.run_once()  # first round, full speed: every tenant caught up
    for t in tenants:
        seed(store, t, 3 * PAGE, first_offset=PAGE)  # ingest goes on for all three
    served = []
    for _ in range(6):
        added = {t: n for t, n in sealer.run_once().items() if t in tenants}
        assert sum(added.values()) == PAGE, added  # one page in all, not one per tenant
        assert sealer.yielding
        served.extend(added)
        for t in tenants:  # still arriving
            seed(store, t, 1, first_offset=4 * PAGE + len(served) + tenants.index(t) * 100)
    assert served == tenants + tenants  # in turn
    while sealer.run_once():  # one more yielding round, then the heads stay put: full speed
        pass
    for t in tenants:
        sealer.checkpoint(t, force=True)
        report = check(sealer, t)
        assert report.exit_code == 0 and report.tree_size == 4 * PAGE + 6, report.lines()


def test_stops_yielding_when_a_tenant_is_too_far_behind(
    store: Store, ledger: Ledger, signer: Signer, tenant: str
) -> None:
    """Events an hour old left unsealed are past a 60 s bound: the sealer goes full speed
    although ingest goes on, and yields again once it has caught up."""
    sealer = Sealer(
        store, ledger, signer, checkpoint_seconds=3600, page_size=PAGE, duty=0.1, max_lag_seconds=60
    )
    seed(store, tenant, PAGE)
    sealer.run_once()
    seed(store, tenant, 30 * PAGE, first_offset=PAGE)
    assert sealer.run_once().get(tenant) == PAGE  # not known to be behind yet: one page
    assert sealer.behind and not sealer.yielding  # that page left events an hour old behind
    seed(store, tenant, PAGE, first_offset=31 * PAGE)  # ingest goes on
    assert sealer.run_once().get(tenant) == 20 * PAGE  # full speed (20 pages a round)
    assert sealer.ingest_active and not sealer.yielding
    assert sealer.run_once().get(tenant) == 10 * PAGE  # the rest: now at the head
    assert not sealer.behind
    seed(store, tenant, PAGE, first_offset=32 * PAGE)
    assert sealer.run_once().get(tenant) == PAGE  # caught up, ingest goes on: yielding again
    assert sealer.yielding
    sealer.checkpoint(tenant, force=True)
    report = check(sealer, tenant)
    assert report.exit_code == 0 and report.tree_size == 33 * PAGE, report.lines()


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
