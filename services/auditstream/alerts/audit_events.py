"""The audit-log events of alerting: ``alert.triggered`` and the rule and status changes.

They are events of the tenant concerned, published to the input topic like every other
event (``api/audit_trail.py`` does the same for keys and exports), so they show in search,
the feed, exports and SIEMs. ``alert.triggered`` comes from the evaluator
(``source.service`` ``auditstream-alerts``); its ``event_id`` is derived from the alert id
and its ``occurred_at`` is the alert's creation time, so publishing it again after a crash
gives an exact copy, which the store drops as a harmless retry.
"""

from __future__ import annotations

import uuid
from typing import Any

from auditstream.alerts.evaluator import ALERT_NAMESPACE, SOURCE_SERVICE

__all__ = ["ALERTS_ACTOR", "alert_status_event", "alert_triggered_event", "rule_event"]

ALERTS_ACTOR: dict[str, str] = {"id": SOURCE_SERVICE, "type": "system", "name": "auditstream alerts"}
MAX_IDS_IN_DETAILS = 20
# What the API writes as its own actions (the value api/audit_trail.py uses too).
SOURCE_API = {"service": "auditstream-api"}


def alert_triggered_event(alert: dict[str, Any]) -> dict[str, Any]:
    ids = alert["event_ids"]
    details = {
        "alert_id": alert["id"],
        "kind": alert["kind"],
        "severity": alert["severity"],
        "window_start": alert["window_start"],
        "window_end": alert["window_end"],
        "event_count": str(len(ids)),
        "event_ids": ",".join(ids[:MAX_IDS_IN_DETAILS]),
    }
    for key, value in alert["group"].items():
        details[f"group.{key}"[:128]] = str(value)[:1024]
    return {
        "event_id": str(uuid.uuid5(ALERT_NAMESPACE, f"event\n{alert['id']}")),
        "occurred_at": alert["created_at"],
        "tenant_id": alert["tenant_id"],
        "action": "alert.triggered",
        "actor": dict(ALERTS_ACTOR),
        "resource": {"type": "alert_rule", "id": alert["rule_id"], "name": alert["rule_name"][:256]},
        "outcome": "success",
        "source": {"service": SOURCE_SERVICE},
        "details": details,
    }


def rule_event(action: str, tenant_id: str, actor: dict[str, str], rule: dict[str, Any]) -> dict[str, Any]:
    """``alert_rule.created|updated|deleted``: never contains target secrets."""
    spec = rule["spec"]
    details = {
        "kind": spec["kind"],
        "enabled": str(spec.get("enabled", True)).lower(),
        "version": str(rule["version"]),
    }
    details["targets"] = ",".join(t["url"] for t in spec.get("targets", []))[:1024]
    return {
        "occurred_at": rule["updated_at"],
        "tenant_id": tenant_id,
        "action": action,
        "actor": actor,
        "resource": {"type": "alert_rule", "id": rule["id"], "name": spec["name"][:256]},
        "outcome": "success",
        "source": dict(SOURCE_API),
        "details": details,
    }


def alert_status_event(action: str, actor: dict[str, str], alert: dict[str, Any]) -> dict[str, Any]:
    """``alert.acknowledged`` / ``alert.resolved`` (an analyst's action, from the API)."""
    return {
        "occurred_at": alert["resolved_at"] if action == "alert.resolved" else alert["acknowledged_at"],
        "tenant_id": alert["tenant_id"],
        "action": action,
        "actor": actor,
        "resource": {"type": "alert", "id": alert["id"], "name": alert["rule_name"][:256]},
        "outcome": "success",
        "source": dict(SOURCE_API),
        "details": {"rule_id": alert["rule_id"], "status": alert["status"]},
    }
