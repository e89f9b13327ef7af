"""Redaction of secret-looking values before an event is stored.

Services sometimes put a password, a bearer token or an API key into
``details`` or into a ``changes`` entry by accident. An audit log is read by
many people and exported to SIEMs, so such values are replaced by
``[REDACTED]`` at ingest, before anything is written: the key/field name stays
(that something secret changed is itself audit-relevant), the value goes.

A name is secret-looking when it contains, case-insensitively, one of
``password``, ``passwd``, ``passphrase``, ``token``, ``secret``,
``authorization``, ``api_key``/``apikey``/``api-key``, ``private_key``/``privatekey``
/``private-key`` — a substring match, so ``db_password``, ``X-Auth-Token`` and
``clientSecret`` are caught. False positives (``token_count``) are accepted:
losing a harmless value is cheaper than storing a secret.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from auditstream.events.model import Change

REDACTED: Final = "[REDACTED]"

_SECRET_RE: Final = re.compile(
    r"password|passwd|passphrase|token|secret|authorization|api[_-]?key|private[_-]?key", re.IGNORECASE
)

# Detail keys repeat from event to event; remember the verdict (bounded).
_MEMO_LIMIT: Final = 10_000
_memo: dict[str, bool] = {}


def is_secret_name(name: str) -> bool:
    """True when a details key or changed field name looks like it holds a secret."""
    try:
        return _memo[name]
    except KeyError:
        pass
    secret = _SECRET_RE.search(name) is not None
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    _memo[name] = secret
    return secret


def redact_details(details: dict[str, str]) -> dict[str, str]:
    """``details`` with the values of secret-looking keys replaced by ``[REDACTED]``.

    Never mutates its argument; returns the same dict when nothing needs redacting
    (the common case, and no copy per event).
    """
    for key in details:
        if is_secret_name(key):
            return {k: (REDACTED if is_secret_name(k) else v) for k, v in details.items()}
    return details


def redact_changes(changes: Sequence[Change]) -> list[dict[str, Any]]:
    """``changes`` as plain ``{field, old, new}`` dicts, old/new ``[REDACTED]`` for secret-looking fields."""
    out: list[dict[str, Any]] = []
    for change in changes:
        if is_secret_name(change.field):
            out.append({"field": change.field, "old": REDACTED, "new": REDACTED})
        else:
            out.append({"field": change.field, "old": change.old, "new": change.new})
    return out
