"""Stored-row dicts for the pure alert tests (the shape ``Store.feed_page`` returns)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def stored(
    action: str = "user.login_failed", actor: str = "alice", at: float = 0.0, **extra: Any
) -> dict[str, Any]:
    """A row ``at`` seconds after T0."""
    row: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "tenant_id": "acme",
        "occurred_at": T0 + timedelta(seconds=at),
        "action": action,
        "outcome": "failure" if action.endswith("failed") else "success",
        "reason": "",
        "actor_id": actor,
        "actor_type": "user",
        "actor_name": "",
        "actor_email": "",
        "actor_ip": "",
        "resource_type": "",
        "resource_id": "",
        "resource_name": "",
        "source_service": "",
        "source_host": "",
        "details": {},
    }
    row.update(extra)
    return row
