"""Secret-looking details keys and changed fields lose their values before storage."""

from __future__ import annotations

import pytest

from auditstream.events.model import Change
from auditstream.events.redaction import REDACTED, is_secret_name, redact_changes, redact_details


@pytest.mark.parametrize(
    "name",
    ["password", "db_password", "PASSWD", "X-Auth-Token", "refresh_token", "clientSecret", "Authorization",
     "api_key", "APIKEY", "api-key", "private_key", "privateKey", "ssh-private-key", "passphrase"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)
    assert redact_details({name: "hunter2", "plan": "pro"}) == {name: REDACTED, "plan": "pro"}


@pytest.mark.parametrize("name", ["plan", "region", "user", "key_id", "api", "pass", "author"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_redact_details_returns_same_dict_when_clean_and_never_mutates() -> None:
    clean = {"plan": "pro"}
    assert redact_details(clean) is clean
    dirty = {"token": "abc", "plan": "pro"}
    out = redact_details(dirty)
    assert out == {"token": REDACTED, "plan": "pro"}
    assert dirty == {"token": "abc", "plan": "pro"}
    assert list(out) == ["token", "plan"]  # key order kept


def test_redact_changes() -> None:
    changes = [
        Change(field="smtp_password", old="old-secret", new="new-secret"),
        Change(field="retention_days", old=30, new=90),
        Change(field="webhook.secret", old=None, new="s"),
    ]
    assert redact_changes(changes) == [
        {"field": "smtp_password", "old": REDACTED, "new": REDACTED},
        {"field": "retention_days", "old": 30, "new": 90},
        {"field": "webhook.secret", "old": REDACTED, "new": REDACTED},
    ]
    assert changes[0].old == "old-secret"
