"""The stored form of an event: one ClickHouse row per event.

``COLUMNS`` is the column order of the ``audit_events`` table and of every row
tuple the processor builds; the DDL in ``schemas/clickhouse`` must match it.
"""

from __future__ import annotations

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
)
