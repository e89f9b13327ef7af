"""The detail view's integrity badge without a browser, on the real store (chDB).

Sealed and checkpointed events show "included in checkpoint N, verified"; an event
not covered by a checkpoint "not sealed yet"; and after an insider's ``ALTER TABLE …
UPDATE`` of one event directly in ClickHouse, its page shows the red failure
"does not match checkpoint N" while its neighbours still verify.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from auditstream.config import Settings
from auditstream.integrity.keys import load_or_create_signer
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.sealer import Sealer
from auditstream.store import Store
from auditstream.store.client import create_client
from tests.api._support import event, make_tokens, row, settings_fixture, signed_in_client

pytestmark = pytest.mark.clickhouse

A = "acme"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
SEALED = 5


settings = settings_fixture("badge")


@pytest.fixture(scope="module")
def ids(settings: Settings, store: Store) -> list[str]:
    """SEALED events under one checkpoint, then one stored after it (not covered); ids in order."""
    batch = [
        event(A, "user.login", f"u{i}", NOW + timedelta(seconds=i), details={"i": str(i)})
        for i in range(SEALED + 1)
    ]
    rows = [row(e, offset=i, received_at=NOW + timedelta(seconds=i)) for i, e in enumerate(batch)]
    store.insert_rows(rows[:SEALED])
    ledger = Ledger(store.dsn, store.database)
    signer = load_or_create_signer(settings.resolved_checkpoint_key_path, settings.checkpoint_key_name)
    sealer = Sealer(store, ledger, signer, checkpoint_dir=settings.resolved_checkpoint_dir)
    try:
        while sealer.seal_tenant(A, store.feed_watermark(A)):
            pass
        assert sealer.checkpoint(A, force=True) is not None
    finally:
        ledger.close()
    store.insert_rows(rows[SEALED:])
    return [str(e.event_id) for e in batch]


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store, ids: list[str]) -> Iterator[TestClient]:
    yield from signed_in_client(settings, store, make_tokens(settings, (A,))[f"{A}:reader"])


def badge(client: TestClient, event_id: str) -> tuple[str, str]:
    page = client.get(f"/events/{event_id}")
    assert page.status_code == 200, page.text
    match = re.search(r'<p id="integrity" class="[^"]*" data-state="(\w+)"[^>]*>([^<]*)</p>', page.text)
    assert match, "no integrity badge on the detail page"
    return match.group(1), match.group(2)


def test_sealed_event_is_verified_and_a_new_one_not_sealed_yet(client: TestClient, ids: list[str]) -> None:
    state, text = badge(client, ids[2])
    assert state == "verified"
    assert f"included in checkpoint {SEALED}, verified" in text
    state, text = badge(client, ids[SEALED])
    assert (state, text) == ("unsealed", "not sealed yet")


def test_event_changed_in_clickhouse_shows_the_failure(
    client: TestClient, store: Store, ids: list[str]
) -> None:
    insider = create_client(store.dsn)  # what someone with the database password has
    try:
        insider.command(
            f"ALTER TABLE {store.database}.audit_events UPDATE outcome = 'failure'"
            " WHERE tenant_id = {t:String} AND event_id = {id:UUID}",
            parameters={"t": A, "id": ids[1]},
            settings={"mutations_sync": 2},
        )
    finally:
        insider.close()
    state, text = badge(client, ids[1])
    assert state == "failed"
    assert f"does not match checkpoint {SEALED}" in text
    assert "changed after it was sealed" in text
    page = client.get(f"/events/{ids[1]}").text
    assert 'class="integrity integrity-failed"' in page  # the red style (app.css)
    assert badge(client, ids[0])[0] == "verified"  # the others are untouched
