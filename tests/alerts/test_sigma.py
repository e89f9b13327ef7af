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
    assert rule.kind in ("match", "threshold", "sequence")
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


SPEC_EXAMPLE = "sigma_spec_failed_logins_then_success.yml"


def test_specification_example_is_a_sequence_of_ten_failures_then_a_success() -> None:
    rule = imported(SPEC_EXAMPLE)
    assert (rule.kind, rule.window, rule.group_by, rule.severity) == (
        "sequence",
        timedelta(minutes=10),
        ("actor.id",),
        "high",
    )
    # EventID 529/4625 and 528/4624 through the Windows Security value mapping, duplicates merged.
    assert [(f.actions, n) for f, n in rule.steps] == [(("user.login_failed",), 10), (("user.login",), 1)]
    failures = [stored(action="user.login_failed", actor="admin", at=i * 30) for i in range(10)]
    success = stored(action="user.login", actor="admin", at=320)
    assert fire(rule, [*failures[:9], success]) == []  # nine failures: below the threshold
    assert fire(rule, [success, *failures]) == []  # the success must come after the failures
    fired = fire(rule, [*failures, success])
    assert len(fired) == 1 and fired[0].group == {"actor.id": "admin"}
    other = stored(action="user.login", actor="someone-else", at=320)
    assert fire(rule, [*failures, other]) == []  # another user's success is another group


SPEC_BASE = "title: f\nname: f\nlogsource: {product: windows, service: security}\ndetection:\n"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        # A value outside the table is refused by name, never guessed.
        (SPEC_BASE + "  sel:\n    EventID: 4688\n  condition: sel\n", "sigma.detection.EventID"),
        # EventID means nothing under another log source.
        (
            "title: f\nlogsource: {product: linux}\ndetection:\n"
            "  sel:\n    EventID: 4625\n  condition: sel\n",
            "sigma.detection.EventID",
        ),
        # A chained event_count step grouping by other fields than the sequence.
        (
            SPEC_BASE + "  sel:\n    EventID: 4625\n  condition: sel\n"
            "---\ntitle: c\nname: c\ncorrelation:\n  type: event_count\n  rules: [f]\n"
            "  group-by: [client.ipAddress]\n"
            "  timespan: 5m\n  condition: {gte: 3}\n"
            "---\ntitle: s\ncorrelation:\n  type: temporal_ordered\n  rules: [c, f]\n  group-by: [User]\n"
            "  timespan: 10m\n",
            "sigma.rules.0.group-by",
        ),
        # ... or with a longer timespan than the sequence's.
        (
            SPEC_BASE + "  sel:\n    EventID: 4625\n  condition: sel\n"
            "---\ntitle: c\nname: c\ncorrelation:\n  type: event_count\n  rules: [f]\n  group-by: [User]\n"
            "  timespan: 1h\n  condition: {gte: 3}\n"
            "---\ntitle: s\ncorrelation:\n  type: temporal_ordered\n  rules: [c, f]\n  group-by: [User]\n"
            "  timespan: 10m\n",
            "sigma.rules.0.timespan",
        ),
    ],
)
def test_value_mapping_and_chains_refuse_what_they_cannot_say(doc: str, field: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(sigma_to_rule(doc))
    assert info.value.field == field
