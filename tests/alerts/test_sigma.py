"""Sigma import: the shipped SigmaHQ examples map, unmappable parts are refused by name (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from auditstream.alerts.evaluator import Evaluator
from auditstream.alerts.model import RuleError, parse_rule
from auditstream.alerts.sigma import sigma_to_rule
from tests.alerts.rows import stored

EXAMPLES = Path(__file__).resolve().parents[2] / "services" / "auditstream" / "alerts" / "sigma_examples"


def imported(name: str):
    rule = parse_rule(sigma_to_rule((EXAMPLES / name).read_text()))
    return replace(rule, id=name, tenant_id="acme")


def fire(rule, rows):
    ev = Evaluator([rule], lateness=timedelta(minutes=5))
    return ev.apply(ev.match(rows), {})


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yml")), ids=lambda p: p.name)
def test_every_shipped_example_imports(path: Path) -> None:
    rule = parse_rule(sigma_to_rule(path.read_text()))
    assert rule.kind in ("match", "threshold")
    assert rule.extra["sigma"] == path.read_text()


def test_okta_privilege_grant_is_a_match_rule() -> None:
    rule = imported("okta_admin_role_assigned_to_user_or_group.yml")
    assert rule.kind == "match"
    assert rule.filter.actions == ("group.privilege.grant", "user.account.privilege.grant")
    assert len(fire(rule, [stored(action="user.account.privilege.grant"), stored(action="user.login")])) == 1


def test_github_permission_maps_into_details() -> None:
    rule = imported("github_org_member_role_changed_to_admin.yml")
    assert rule.severity == "high"
    admin = stored(action="org.update_member", details={"permission": "admin"})
    read = stored(action="org.update_member", details={"permission": "read"})
    assert len(fire(rule, [admin, read])) == 1


def test_event_count_correlation_becomes_threshold() -> None:
    rule = imported("okta_mfa_reset_burst.yml")
    assert (rule.kind, rule.threshold, rule.window, rule.group_by) == (
        "threshold",
        3,
        timedelta(minutes=10),
        ("actor.id",),
    )
    two = [stored(action="user.mfa.factor.reset_all", at=i * 60) for i in range(2)]
    assert fire(rule, two) == []
    assert len(fire(rule, [*two, stored(action="user.mfa.factor.deactivate", at=300)])) == 1


HEAD = "title: x\nlogsource: {product: okta}\ndetection:\n"
BASE = "title: b\nname: b\nlogsource: {product: okta}\ndetection:\n"
BASE += "  sel:\n    eventtype: user.session.start\n"
BASE += "  condition: sel\n"
CORR = "---\ntitle: c\ncorrelation:\n  type: event_count\n  rules: [b]\n  group-by: [actor.alternateid]\n"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ("title: [", "sigma"),
        (
            HEAD + "  sel:\n    displaymessage: x\n  condition: sel\n",
            "sigma.detection.displaymessage",
        ),
        (
            HEAD + "  sel:\n    eventtype|contains: x\n  condition: sel\n",
            "sigma.detection.eventtype",
        ),
        (
            "title: x\nlogsource: {product: okta}\ndetection:\n  a:\n    eventtype: a.b\n  f:\n    actor: x\n"
            "  condition: a and not f\n",
            "sigma.detection.condition",
        ),
        (
            "title: x\nlogsource: {product: okta}\ndetection:\n  a:\n    eventtype: a.b\n  f:\n    actor: x\n"
            "  condition: a or f\n",
            "sigma.detection.condition",
        ),
        (
            BASE + CORR + "  timespan: 2d\n  condition: {gte: 3}\n",
            "sigma.correlation.timespan",
        ),
        (
            BASE + CORR + "  timespan: 5m\n  condition: {lte: 3}\n",
            "sigma.correlation.condition",
        ),
        (
            BASE
            + "---\ntitle: c\ncorrelation:\n  type: temporal\n  rules: [b]\n  group-by: [actor.alternateid]\n"
            "  timespan: 5m\n",
            "sigma.correlation.type",
        ),
        (
            BASE + "---\ntitle: c\ncorrelation:\n  type: event_count\n  rules: [b]\n  group-by: [hostname]\n"
            "  timespan: 5m\n  condition: {gte: 3}\n",
            "sigma.correlation.group-by.hostname",
        ),
    ],
)
def test_unmappable_parts_are_refused_by_name(doc: str, field: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(sigma_to_rule(doc))
    assert info.value.field == field


def test_value_count_becomes_distinct() -> None:
    doc = BASE + (
        "---\ntitle: c\ncorrelation:\n  type: value_count\n  rules: [b]\n  group-by: [client.ipAddress]\n"
        "  timespan: 10m\n  condition: {gte: 10, field: actor.alternateid}\n"
    )
    rule = parse_rule(sigma_to_rule(doc))
    assert (rule.kind, rule.group_by, rule.distinct_field, rule.threshold) == (
        "distinct",
        ("actor.ip",),
        "actor.id",
        10,
    )
