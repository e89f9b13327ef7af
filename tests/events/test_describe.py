"""Activity lines of the viewer, from the action catalog with a fallback for unknown actions."""

from __future__ import annotations

from auditstream.events.catalog import describe


def test_known_actions_read_like_the_product_docs() -> None:
    assert (
        describe("scan.created", "Azure Cloud Workload – Complete Vulnerability Assessment")
        == "Created new scan – Azure Cloud Workload – Complete Vulnerability Assessment"
    )
    assert describe("scan.initiated", "test-credit-2") == "Scan initiated – test-credit-2"
    assert describe("user.login_failed") == "Failed sign-in"


def test_unknown_actions_fall_back_to_their_words() -> None:
    assert describe("invoice.payment_sent", resource_id="inv-7") == "Invoice payment sent – inv-7"
    assert describe("a.b") == "A b"


def test_resource_name_wins_over_id() -> None:
    assert describe("scan.deleted", "nightly", "s-1") == "Deleted scan – nightly"
