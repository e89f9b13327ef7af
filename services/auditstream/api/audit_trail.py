"""The API's own audit trail: exports, feed reads and key changes written to the audit log.

Creating or downloading an export, starting a SIEM feed session and creating or
revoking a key are events of the tenant concerned (``export.created``,
``export.downloaded``, ``feed.read``, ``key.created``, ``key.revoked``), published to
the same topic as every other event, so analysts find them with the same queries.

Failure policy (documented in the README of issue 4):

* **API — fail closed.** The event is acknowledged by the broker *before* the
  action takes effect or the file is served. When the broker is down, creating an
  export or downloading one answers 503: no export leaves without its record.
* **CLI — fail open, loudly.** ``auditstream keys create|revoke`` is an operator
  with access to the key file; refusing the change would not stop them. The key
  change is made, the event is published with :class:`SyncAuditProducer` when a
  broker answers within a few seconds, and otherwise a warning naming the missed
  event goes to stderr; the exit status stays 0 (the change itself succeeded).

Builders are pure (``dict`` events of the v1 contract); only ``record_sync``
imports the producer, lazily, so the CLI stays quick.
"""

from __future__ import annotations

import contextlib
import ipaddress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditstream.api.keys import ApiKey
    from auditstream.api.publisher import Publisher
    from auditstream.config import Settings

__all__ = [
    "CLI_ACTOR",
    "api_actor",
    "export_event",
    "feed_event",
    "key_event",
    "record",
    "record_sync",
]

SOURCE_API = {"service": "auditstream-api"}
SOURCE_CLI = {"service": "auditstream-cli"}
CLI_ACTOR: dict[str, str] = {"id": "cli", "type": "system", "name": "auditstream CLI"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_actor(key: ApiKey, ip: str | None = None) -> dict[str, str]:
    """The actor of an API action: the key that made the request."""
    actor = {"id": key.key_id, "type": "api_key"}
    if key.name:
        actor["name"] = key.name[:256]
    if ip:
        with contextlib.suppress(ValueError):  # a test client or a unix socket peer has no address
            actor["ip"] = str(ipaddress.ip_address(ip))
    return actor


def export_event(
    action: str,
    tenant_id: str,
    actor: dict[str, str],
    job: dict[str, Any],
    *,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``export.created`` / ``export.downloaded`` for one export job."""
    details = {"format": str(job["format"]), "status": str(job["status"])}
    if job.get("rows_written") is not None:
        details["rows_written"] = str(job["rows_written"])
    details.update(extra or {})
    return {
        "occurred_at": _now(),
        "tenant_id": tenant_id,
        "action": action,
        "actor": actor,
        "resource": {"type": "export", "id": str(job["id"]), "name": str(job["name"])[:256]},
        "outcome": "success",
        "source": dict(SOURCE_API),
        "details": details,
    }


def feed_event(tenant_id: str, actor: dict[str, str], session: str, start: str) -> dict[str, Any]:
    """``feed.read``: a SIEM feed cursor session began (one event per session, not per page).

    ``start`` is how it began: ``earliest``/``latest`` (no cursor) or ``cursor`` (a cursor
    whose session this process cannot vouch for, e.g. issued before a restart).
    """
    return {
        "occurred_at": _now(),
        "tenant_id": tenant_id,
        "action": "feed.read",
        "actor": actor,
        "resource": {"type": "feed_session", "id": session},
        "outcome": "success",
        "source": dict(SOURCE_API),
        "details": {"start": start},
    }


def key_event(action: str, key: ApiKey, actor: dict[str, str], *, via_cli: bool = True) -> dict[str, Any]:
    """``key.created`` / ``key.revoked`` of ``key``, in the key's tenant. Never contains the secret."""
    resource = {"type": "api_key", "id": key.key_id}
    if key.name:
        resource["name"] = key.name[:256]
    return {
        "occurred_at": _now(),
        "tenant_id": key.tenant_id,
        "action": action,
        "actor": actor,
        "resource": resource,
        "outcome": "success",
        "source": dict(SOURCE_CLI if via_cli else SOURCE_API),
        "details": {"role": key.role.value},
    }


async def record(publisher: Publisher, event: dict[str, Any]) -> None:
    """Publish one audit-trail event from the API and wait for the broker (503 on failure)."""
    from auditstream.producer import encode_event

    await publisher.publish([encode_event(event)])


def record_sync(settings: Settings, events: list[dict[str, Any]], *, timeout: float) -> str | None:
    """Publish from the CLI; None on success, else why it was not recorded (never raises)."""
    try:
        from auditstream.producer import SyncAuditProducer

        with SyncAuditProducer(
            settings.kafka_bootstrap, settings.topic, start_timeout=timeout, linger_ms=0
        ) as producer:
            for event in events:
                producer.emit(event)
            producer.flush(timeout=timeout + 10)
    except Exception as exc:  # broker down, delivery failed: reported by the caller as a warning
        return f"{type(exc).__name__}: {exc}"
    return None
