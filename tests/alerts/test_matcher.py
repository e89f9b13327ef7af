"""The Python matcher agrees with the SQL of /v1/events on the same stored rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auditstream.alerts.matcher import compile_filter
from auditstream.alerts.model import parse_filter
from auditstream.store import EventFilter, Store
from tests.store.conftest import build_row, store, unique_tenant  # noqa: F401

FILTERS = [
    {"action": ["user.login_failed"]},
    {"action": ["user.*"]},
    {"action": ["config.*", "key.created"]},
    {"actor": ["bob", "carol"]},
    {"outcome": "failure"},
    {"resource_type": "user", "resource_id": "u-1"},
    {"ip": "10.0.0.0/8"},
    {"ip": "2001:db8::/32"},
    {"ip": "192.0.2.7"},
    {"q": "ADMIN"},
    {"q": "eu-west"},
    {"action": ["user.*"], "outcome": "success", "ip": "10.1.0.0/16"},
]


def _rows(tenant: str) -> list[tuple]:
    now = datetime.now(UTC) - timedelta(minutes=1)
    specs = [
        {"action": "user.login_failed", "outcome": "failure", "actor_ip": "10.1.2.3"},
        {"action": "user.login", "actor_id": "bob", "actor_ip": "10.1.9.9"},
        {
            "action": "user.role_changed",
            "resource_type": "user",
            "resource_id": "u-1",
            "details": {"role": "admin"},
        },
        {
            "action": "config.updated",
            "actor_id": "carol",
            "actor_ip": "2001:db8::5",
            "details": {"region": "eu-west-1"},
        },
        {"action": "key.created", "actor_name": "Admin Bot", "actor_ip": "192.0.2.7"},
        {"action": "scan.created", "actor_ip": "", "reason": "nothing"},
        {"action": "userx.thing", "actor_ip": "not-an-ip"},
    ]
    return [build_row(tenant_id=tenant, occurred_at=now, kafka_offset=i, **s) for i, s in enumerate(specs)]


@pytest.mark.clickhouse
@pytest.mark.parametrize("raw", FILTERS)
def test_python_matcher_agrees_with_sql(store: Store, raw: dict) -> None:  # noqa: F811
    tenant = unique_tenant()
    store.insert_rows(_rows(tenant))
    spec = parse_filter(raw)
    ef = EventFilter(
        tenant_id=tenant,
        actions=list(spec.actions),
        actors=list(spec.actors),
        resource_type=spec.resource_type,
        resource_id=spec.resource_id,
        outcome=spec.outcome,
        ip=spec.ip,
        text=spec.q,
    )
    page = store.feed_page(tenant, {}, limit=100, f=ef)
    assert len(page.rows) == 7
    matcher = compile_filter(spec)
    sql = {str(r["event_id"]) for r in page.rows if r["_matched"]}
    python = {str(r["event_id"]) for r in page.rows if matcher(r)}
    assert python == sql


def test_details_filter() -> None:
    matcher = compile_filter(parse_filter({"details.role": ["admin", "owner"]}))
    assert matcher({"details": {"role": "owner"}})
    assert not matcher({"details": {"role": "viewer"}})
    assert not matcher({"details": {}})
