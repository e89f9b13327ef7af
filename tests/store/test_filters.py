"""build_where: parameterised SQL only, and each filter selects exactly the matching rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from auditstream.store import EventFilter, Store, build_where
from tests.store.conftest import build_row, unique_tenant

BASE = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
INJECTIONS = [
    "' OR 1=1 --",
    "x'); DROP TABLE audit_events; --",
    "{f_tenant:String}",
    "\\' OR ''='",
    "acme' UNION SELECT * FROM system.tables --",
]


def test_values_never_appear_in_sql() -> None:
    f = EventFilter(
        tenant_id="evil'tenant",
        since=BASE,
        until=BASE + timedelta(days=1),
        actors=["a'b"],
        actions=["x.y", "drop.*"],
        resource_type="t'",
        resource_id="r'",
        outcome="o'",
    )
    sql, params = build_where(f)
    assert "'" not in sql.replace("'UTC'", "")
    assert params["f_tenant"] == "evil'tenant"
    assert params["f_action_prefix_0"] == "drop."
    assert params["f_actions"] == ["x.y"]


def test_filter_validation() -> None:
    with pytest.raises(ValueError):
        EventFilter(tenant_id="a", since=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValueError):
        EventFilter(tenant_id="a", actions=["a*b"])
    with pytest.raises(ValueError):
        EventFilter(tenant_id="a", actions=["config*"])
    with pytest.raises(ValueError):
        EventFilter(tenant_id="")


# --- against the engine ----------------------------------------------------------------------

TENANT = unique_tenant()
OTHER = unique_tenant()
ACTORS = ["alice", "bob", "carol"]
ACTIONS = ["user.login", "user.login_failed", "config.updated", "config.deleted", "configx.created"]
RESOURCES = [("scan", "s1"), ("scan", "s2"), ("user", "u1"), ("", "")]
OUTCOMES = ["success", "failure", "unknown"]


def dataset() -> list[tuple]:
    """A grid of rows over every combination of the filtered columns, one minute apart."""
    rows: list[tuple] = []
    i = 0
    for actor in ACTORS:
        for action in ACTIONS:
            for rtype, rid in RESOURCES:
                for outcome in OUTCOMES:
                    rows.append(
                        build_row(
                            tenant_id=TENANT,
                            occurred_at=BASE + timedelta(minutes=i),
                            actor_id=actor,
                            action=action,
                            resource_type=rtype,
                            resource_id=rid,
                            outcome=outcome,
                            kafka_offset=i,
                        )
                    )
                    i += 1
    # Another tenant with identical content must never leak into TENANT's results.
    rows += [build_row(**{**_as_dict(r), "tenant_id": OTHER, "event_id": uuid.uuid4()}) for r in rows[:20]]
    return rows


def _as_dict(row: tuple) -> dict:
    from auditstream.events.stored import COLUMNS

    return dict(zip(COLUMNS, row, strict=True))


@pytest.fixture(scope="module")
def loaded(store: Store) -> list[dict]:
    rows = dataset()
    store.insert_rows(rows)
    return [_as_dict(r) for r in rows]


def ids_of(store: Store, f: EventFilter) -> set[uuid.UUID]:
    found = [r["event_id"] for chunk in store.iter_events(f, chunk=1000) for r in chunk]
    assert len(found) == len(set(found))
    assert store.count_events(f) == len(found)
    return set(found)


CASES: list[tuple[str, dict, object]] = [
    ("tenant only", {}, lambda r: True),
    ("one actor", {"actors": ["bob"]}, lambda r: r["actor_id"] == "bob"),
    ("two actors", {"actors": ["bob", "carol"]}, lambda r: r["actor_id"] in ("bob", "carol")),
    ("exact action", {"actions": ["user.login"]}, lambda r: r["action"] == "user.login"),
    ("wildcard", {"actions": ["config.*"]}, lambda r: r["action"].startswith("config.")),
    (
        "wildcard + exact",
        {"actions": ["config.*", "user.login_failed"]},
        lambda r: r["action"].startswith("config.") or r["action"] == "user.login_failed",
    ),
    ("nested prefix", {"actions": ["user.login.*"]}, lambda r: r["action"].startswith("user.login.")),
    ("match all", {"actions": ["*"]}, lambda r: True),
    ("resource type", {"resource_type": "scan"}, lambda r: r["resource_type"] == "scan"),
    ("resource id", {"resource_id": "s2"}, lambda r: r["resource_id"] == "s2"),
    ("outcome", {"outcome": "failure"}, lambda r: r["outcome"] == "failure"),
    (
        "combined",
        {"actors": ["alice"], "actions": ["config.*"], "resource_type": "scan", "outcome": "success"},
        lambda r: (
            r["actor_id"] == "alice"
            and r["action"].startswith("config.")
            and r["resource_type"] == "scan"
            and r["outcome"] == "success"
        ),
    ),
    (
        "time window",
        {"since": BASE + timedelta(minutes=10), "until": BASE + timedelta(minutes=40)},
        lambda r: BASE + timedelta(minutes=10) <= r["occurred_at"] < BASE + timedelta(minutes=40),
    ),
    (
        "time window in another zone",
        {"since": (BASE + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-7)))},
        lambda r: r["occurred_at"] >= BASE + timedelta(minutes=5),
    ),
]


@pytest.mark.clickhouse
@pytest.mark.parametrize(("name", "kwargs", "predicate"), CASES, ids=[c[0] for c in CASES])
def test_filter_returns_exactly_matching_rows(
    store: Store, loaded: list[dict], name: str, kwargs: dict, predicate
) -> None:
    expected = {r["event_id"] for r in loaded if r["tenant_id"] == TENANT and predicate(r)}
    assert ids_of(store, EventFilter(tenant_id=TENANT, **kwargs)) == expected


@pytest.mark.clickhouse
@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_match_nothing(store: Store, loaded: list[dict], value: str) -> None:
    for f in (
        EventFilter(tenant_id=value),
        EventFilter(tenant_id=TENANT, actors=[value]),
        EventFilter(tenant_id=TENANT, resource_id=value),
        EventFilter(tenant_id=TENANT, resource_type=value),
        EventFilter(tenant_id=TENANT, outcome=value),
    ):
        assert store.query_events(f) == []
        assert store.count_events(f) == 0
    assert store.get_event(value, uuid.uuid4()) is None
    assert store.get_event(TENANT, value) is None
    # The table is still there and intact.
    assert store.count_events(EventFilter(tenant_id=TENANT)) == len(ACTORS) * len(ACTIONS) * 12
