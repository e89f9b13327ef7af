"""The stored form of an event: one ClickHouse row per event.

``COLUMNS`` is the column order of the ``audit_events`` table and of every row
tuple the processor builds; the DDL in ``schemas/clickhouse`` must match it.

This module converts both ways: :func:`enrich` turns a validated event into a
row (processor, per event, so it stays lean), :func:`row_to_event` turns a row
back into the JSON shape the API serves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from auditstream.events.catalog import categorize, severity
from auditstream.events.ids import uuid7_for
from auditstream.events.model import ActorType, AuditEvent, Outcome

if TYPE_CHECKING:
    from auditstream.events.fastpath import FastEvent
from auditstream.events.redaction import redact_changes, redact_details

COLUMNS: tuple[str, ...] = (
    "event_id",
    "tenant_id",
    "occurred_at",
    "received_at",
    "action",
    "category",
    "severity",
    "outcome",
    "reason",
    "actor_id",
    "actor_type",
    "actor_name",
    "actor_email",
    "actor_ip",
    "actor_user_agent",
    "resource_type",
    "resource_id",
    "resource_name",
    "source_service",
    "source_host",
    "source_request_id",
    "changes",
    "details",
    "schema_version",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    # First write wins (migration 0004): what an exact copy and a conflict are told apart by.
    "content_hash",
    # How the event arrived (events/attribution.py): kafka | http | internal, and the HTTP key.
    "ingest_channel",
    "ingest_key_id",
)

# Where the content ends in a row: the values before received_at, then those between it and
# the ingest position. The hash leaves out when and how the event arrived.
_RECEIVED_AT = COLUMNS.index("received_at")
_CONTENT_END = COLUMNS.index("kafka_topic")


# --- building a row (processor, per event: keep it lean) ----------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# An enum member's text by lookup: ``member.value`` goes through enum's descriptor, 127 ns
# against 19 ns for the dict, twice per event (bench/RESULTS.md, issue 12 stop 31).
_OUTCOME_TEXT: dict[Outcome, str] = {member: member.value for member in Outcome}
_ACTOR_TYPE_TEXT: dict[ActorType, str] = {member: member.value for member in ActorType}


def enrich(
    event: AuditEvent | FastEvent,
    *,
    topic: str,
    partition: int,
    offset: int,
    received_at: datetime,
    channel: str = "kafka",
    key_id: str = "",
) -> tuple[Any, ...]:
    """One ``audit_events`` row, in :data:`COLUMNS` order, for a validated event.

    Adds ``received_at``, ``category``, ``severity`` and the ingest position,
    redacts secret-looking details and changes, and spells absent optional
    strings as ``''`` (ClickHouse columns are not Nullable: cheaper to store and
    filter). ``changes`` becomes compact JSON text, ``details`` a dict for the
    ``Map(String, String)`` column.

    An event without ``event_id`` gets a UUIDv7 whose time is ``occurred_at``
    and whose random bits are a hash of ``topic/partition/offset``: processing
    the same Kafka message again (after a crash, before the commit) yields the
    same id, so the store's duplicate elimination by ``event_id`` still holds.

    ``content_hash`` (:func:`content_hash`) identifies what the event says; ``channel``
    and ``key_id`` say how it arrived (verified by the caller, never read from the event).
    """
    if received_at.tzinfo is not UTC or received_at.microsecond % 1000:
        received_at = utc_ms(received_at)
    occurred_at = event.occurred_at
    event_id = event.event_id
    if event_id is None:
        event_id = uuid7_for((occurred_at - _EPOCH) // _MS, f"{topic}/{partition}/{offset}".encode())
    action = event.action
    outcome = _OUTCOME_TEXT[event.outcome]
    category = categorize(action)
    actor = event.actor
    resource = event.resource
    source = event.source
    changes = event.changes
    details = event.details
    content = (
        event_id,
        event.tenant_id,
        occurred_at,
        action,
        category,
        severity(action, outcome, category),
        outcome,
        event.reason or "",
        actor.id,
        _ACTOR_TYPE_TEXT[actor.type],
        actor.name or "",
        actor.email or "",
        actor.ip or "",
        actor.user_agent or "",
        (resource.type or "") if resource is not None else "",
        (resource.id or "") if resource is not None else "",
        (resource.name or "") if resource is not None else "",
        (source.service or "") if source is not None else "",
        (source.host or "") if source is not None else "",
        (source.request_id or "") if source is not None else "",
        orjson.dumps(redact_changes(changes)).decode() if changes else "",
        redact_details(details) if details else {},
        event.schema_version,
    )
    return (
        *content[:_RECEIVED_AT],
        received_at,
        *content[_RECEIVED_AT:],
        topic,
        partition,
        offset,
        _hash(content),
        channel,
        key_id,
    )


def _hash(content: tuple[Any, ...]) -> bytes:
    # Sorted keys: details {"a","b"} and {"b","a"} are the same content.
    return hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def content_hash(row: tuple[Any, ...]) -> bytes:
    """The 16-byte hash of what a row's event says: every column but received_at and after.

    Two rows with the same ``(tenant_id, event_id)`` and the same hash are one event
    delivered twice (a retry); a different hash is a conflict. Redaction is applied
    before hashing, so the hash never depends on a secret the store does not hold.
    """
    return _hash(row[:_RECEIVED_AT] + row[_RECEIVED_AT + 1 : _CONTENT_END])


def utc_ms(value: datetime) -> datetime:
    """``value`` in UTC, truncated to milliseconds (what ``DateTime64(3, 'UTC')`` stores)."""
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive datetime would be read as local time: a bug in the caller, not data.
        raise ValueError("received_at must be timezone-aware")
    if value.tzinfo is not UTC:  # astimezone costs ~1 µs even when it changes nothing
        value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


# --- reading a row back (API) --------------------------------------------------------------


def format_datetime(value: datetime | str) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: ``2026-03-10T10:13:21.123Z``.

    Naive datetimes are taken as UTC (clickhouse-connect may return
    ``DateTime64(3, 'UTC')`` values without tzinfo); strings (e.g. from a
    ClickHouse text format) are parsed first.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def _optional(out: dict[str, Any], row: Mapping[str, Any], pairs: tuple[tuple[str, str], ...]) -> None:
    for key, column in pairs:
        value = row.get(column)
        if value:
            out[key] = value


def row_to_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row (column -> value) back to the nested JSON shape the API returns.

    The inverse of :func:`enrich` up to what storage normalised (UTC
    milliseconds, canonical IP, redaction): the input fields, plus
    ``received_at``, ``category``, ``severity`` and ``ingest: {topic,
    partition, offset, channel[, key_id]}``. Optional fields stored as ``''`` (and empty
    ``changes``/``details``) are omitted; ``event_id`` is a string.
    """
    event: dict[str, Any] = {
        "event_id": str(row["event_id"]),
        "tenant_id": row["tenant_id"],
        "occurred_at": format_datetime(row["occurred_at"]),
        "received_at": format_datetime(row["received_at"]),
        "action": row["action"],
        "category": row["category"],
        "severity": row["severity"],
        "outcome": row["outcome"],
    }
    if row.get("reason"):
        event["reason"] = row["reason"]
    actor: dict[str, Any] = {"id": row["actor_id"], "type": row.get("actor_type") or "user"}
    _optional(actor, row, _ACTOR_OPTIONAL)
    event["actor"] = actor
    resource: dict[str, Any] = {}
    _optional(resource, row, _RESOURCE)
    if resource:
        event["resource"] = resource
    source: dict[str, Any] = {}
    _optional(source, row, _SOURCE)
    if source:
        event["source"] = source
    changes = row.get("changes")
    if changes:
        event["changes"] = orjson.loads(changes)
    details = row.get("details")
    if details:
        event["details"] = dict(details)
    event["schema_version"] = row.get("schema_version") or "1"
    ingest: dict[str, Any] = {
        "topic": row["kafka_topic"],
        "partition": int(row["kafka_partition"]),
        "offset": int(row["kafka_offset"]),
        "channel": row.get("ingest_channel") or "kafka",
    }
    if row.get("ingest_key_id"):
        ingest["key_id"] = row["ingest_key_id"]
    event["ingest"] = ingest
    return event


_ACTOR_OPTIONAL = (
    ("name", "actor_name"),
    ("email", "actor_email"),
    ("ip", "actor_ip"),
    ("user_agent", "actor_user_agent"),
)
_RESOURCE = (("type", "resource_type"), ("id", "resource_id"), ("name", "resource_name"))
_SOURCE = (("service", "source_service"), ("host", "source_host"), ("request_id", "source_request_id"))
