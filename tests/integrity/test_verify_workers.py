"""``verify`` recomputing leaves in worker processes finds the same things as in one."""

from __future__ import annotations

import pytest

from auditstream.integrity.sealer import Sealer
from auditstream.integrity.verify import Kind, verify_tenant
from auditstream.store import Store
from tests.integrity.conftest import seal, seed, sql

pytestmark = pytest.mark.clickhouse


def test_two_workers_name_the_changed_event(sealer: Sealer, store: Store, tenant: str, insider) -> None:
    rows = seed(store, tenant, 30)
    seal(sealer, tenant)

    def run(workers: int):
        return verify_tenant(
            sealer.ledger,
            tenant,
            sealer.signer.verifier,
            origin=sealer.origin(tenant),
            retention_days=3650,
            workers=workers,
        )

    clean = run(2)
    assert clean.exit_code == 0 and clean.events == 30, clean.lines()
    sql(
        insider,
        f"ALTER TABLE {store.database}.audit_events UPDATE actor_id = 'mallory'"
        " WHERE tenant_id = {t:String} AND event_id = {id:UUID}",
        t=tenant,
        id=rows[17][0],
    )
    one, two = run(1), run(2)
    assert two.exit_code == one.exit_code == 1
    assert [f.as_dict() for f in two.findings] == [f.as_dict() for f in one.findings]
    assert [f.event_id for f in two.of(Kind.CHANGED)] == [str(rows[17][0])]
