"""categorize() and severity(): the catalog table."""

from __future__ import annotations

import pytest

from auditstream.events.catalog import SEVERITIES, categorize, severity, verb_class


@pytest.mark.parametrize(
    ("action", "category"),
    [
        ("user.login", "authentication"),
        ("user.login_failed", "authentication"),
        ("user.logout", "authentication"),
        ("user.password_reset", "authentication"),
        ("session.revoked", "authentication"),
        ("auth.token_refreshed", "authentication"),
        ("mfa.enabled", "authentication"),
        ("user.created", "user_management"),
        ("user.deleted", "user_management"),
        ("role.assigned", "access_control"),
        ("rbac.binding.created", "access_control"),
        ("permission.granted", "access_control"),
        ("group.member_added", "access_control"),
        ("access.denied", "access_control"),
        ("config.updated", "configuration"),
        ("settings.viewed", "configuration"),
        ("integration.connected", "configuration"),
        ("policy.changed", "configuration"),
        ("scan.created", "scan"),
        ("key.rotated", "key_management"),
        ("api_key.revoked", "key_management"),
        ("token.issued", "key_management"),
        ("export.created", "export"),
        ("billing.invoice_paid", "other"),
        ("users.created", "other"),
    ],
)
def test_categorize(action: str, category: str) -> None:
    assert categorize(action) == category
    assert categorize(action) == category  # memoised answer is the same


@pytest.mark.parametrize(
    ("action", "outcome", "expected"),
    [
        ("user.login", "success", "info"),
        ("user.login", "failure", "low"),
        ("user.login_failed", "success", "low"),  # failure spelt in the action name
        ("user.password_reset", "success", "medium"),
        ("role.viewed", "success", "low"),
        ("role.assigned", "success", "medium"),
        ("role.assigned", "failure", "high"),
        ("role.deleted", "success", "high"),
        ("role.deleted", "failure", "critical"),
        ("access.denied", "success", "medium"),
        ("api_key.created", "success", "medium"),
        ("api_key.revoked", "success", "high"),
        ("api_key.revoked", "failure", "high"),  # failures raise only auth and access control
        ("config.viewed", "success", "info"),
        ("config.updated", "success", "low"),
        ("config.deleted", "success", "medium"),
        ("scan.created", "failure", "info"),
        ("export.created", "success", "medium"),
        ("billing.invoice_paid", "unknown", "info"),
    ],
)
def test_severity(action: str, outcome: str, expected: str) -> None:
    assert severity(action, outcome, categorize(action)) == expected


def test_deletes_rank_above_reads_in_every_category() -> None:
    for prefix in ("user", "role", "config", "key", "export", "scan", "thing", "session"):
        category = categorize(f"{prefix}.viewed")
        read = SEVERITIES.index(severity(f"{prefix}.viewed", "success", category))
        delete = SEVERITIES.index(severity(f"{prefix}.deleted", "success", category))
        assert delete > read, prefix


def test_severity_values_are_in_the_scale() -> None:
    for action in ("a.b", "role.deleted", "user.login_failed", "key.revoked"):
        for outcome in ("success", "failure", "unknown"):
            assert severity(action, outcome, categorize(action)) in SEVERITIES


def test_verb_class() -> None:
    assert verb_class("user.login_failed") == ("read", True)
    assert verb_class("role.assign.denied") == ("change", True)
    assert verb_class("key.revoked") == ("destructive", False)
    assert verb_class("scan.created") == ("change", False)
