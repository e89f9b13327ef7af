"""Rule validation: every refusal names the field (pure, no services)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from auditstream.alerts.model import RuleError, parse_rule
from auditstream.alerts.targets import check_url

SECRET = "s" * 24


def threshold(**over: object) -> dict:
    rule = {
        "name": "failed-login spike",
        "kind": "threshold",
        "filter": {"action": ["user.login_failed"]},
        "group_by": "actor.id",
        "threshold": 5,
        "window": "5m",
        "targets": [{"type": "webhook", "url": "https://hooks.example.com/x", "secret": SECRET}],
    }
    rule.update(over)
    return rule


def refused(raw: dict, **kw: object) -> str:
    with pytest.raises(RuleError) as info:
        parse_rule(raw, **kw)
    return info.value.field


def test_the_issue_example_is_accepted_and_round_trips() -> None:
    rule = parse_rule(threshold())
    assert rule.window == timedelta(minutes=5)
    assert rule.group_by == ("actor.id",)
    assert rule.filter.actions == ("user.login_failed",)
    assert parse_rule(rule.to_json()) == rule


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (threshold(colour="red"), "colour"),
        (threshold(filter={"actions": ["x.y"]}), "filter.actions"),
        (threshold(filter={"action": ["Not An Action"]}), "filter.action"),
        (threshold(filter={"ip": "10.0.0.0/33"}), "filter.ip"),
        (threshold(filter={"since": "-1h"}), "filter.since"),
        (threshold(filter={"outcome": "maybe"}), "filter.outcome"),
        (threshold(window="25h"), "window"),
        (threshold(window="5 minutes"), "window"),
        (threshold(window=None), "window"),
        (threshold(group_by="actor.shoe_size"), "group_by"),
        (threshold(threshold=None), "threshold"),
        (
            threshold(targets=[{"type": "webhook", "url": "ftp://x.example.com", "secret": SECRET}]),
            "targets.0.url",
        ),
        (threshold(targets=[{"type": "webhook", "url": "https://x.example.com"}]), "targets.0.secret"),
        (threshold(targets=[{"type": "pager", "url": "https://x.example.com"}]), "targets.0.type"),
        ({"name": "m", "kind": "match", "filter": {}, "window": "5m"}, "window"),
        ({"name": "d", "kind": "distinct", "filter": {}, "threshold": 3, "window": "5m"}, "distinct_field"),
        ({"name": "s", "kind": "sequence", "window": "5m", "sequence": [{"filter": {}}]}, "sequence"),
        (
            {
                "name": "s",
                "kind": "sequence",
                "window": "5m",
                "sequence": [{"filter": {}}, {"filter": {"x": "y"}}],
            },
            "sequence.1.filter.x",
        ),
        ({"name": "x", "kind": "bogus"}, "kind"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(raw: dict, field: str) -> None:
    assert refused(raw) == field


def test_filter_takes_the_events_vocabulary() -> None:
    rule = parse_rule(
        {
            "name": "m",
            "kind": "match",
            "filter": {
                "action": ["key.*", "user.role_changed"],
                "actor": "bob",
                "resource_type": "user",
                "outcome": "success",
                "ip": "10.1.2.3/8",
                "q": "  Admin ",
                "details.role": ["admin", "owner"],
            },
        }
    )
    f = rule.filter
    assert f.actions == ("key.*", "user.role_changed")
    assert f.actors == ("bob",)
    assert f.ip == "10.0.0.0/8"  # normalised as /v1/events does
    assert f.q == "Admin"
    assert f.details == (("role", ("admin", "owner")),)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://169.254.169.254/latest",
        "http://10.0.0.8/",
        "http://[::1]/",
    ],
)
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    raw = threshold(targets=[{"type": "webhook", "url": url, "secret": SECRET}])
    assert refused(raw, check_target=lambda u, p: check_url(u, p)) == "targets.0.url"
    parse_rule(raw, check_target=lambda u, p: check_url(u, p, allow_private=True))
