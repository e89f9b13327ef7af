"""Response models: the documented shape of every JSON the API returns.

Events come out of ``auditstream.events.stored.row_to_event`` already in their JSON
shape; these models describe that shape for OpenAPI and for tests. Models allow
extra keys so a field added to the event contract shows up in responses before the
docs catch up, instead of being silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "Event",
    "EventPage",
    "Health",
    "Readiness",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class EventActor(_Open):
    id: str
    type: str | None = None
    name: str | None = None
    email: str | None = None
    ip: str | None = None
    user_agent: str | None = None


class EventResource(_Open):
    type: str | None = None
    id: str | None = None
    name: str | None = None


class EventSource(_Open):
    service: str | None = None
    host: str | None = None
    request_id: str | None = None


class EventChange(_Open):
    field: str
    old: Any = None
    new: Any = None


class IngestPosition(_Open):
    topic: str
    partition: int
    offset: int


class Event(_Open):
    """One stored event: the input fields plus enrichment. Times are RFC 3339 UTC with ms and ``Z``."""

    event_id: str
    tenant_id: str
    occurred_at: str
    received_at: str
    action: str
    category: str
    severity: Literal["info", "low", "medium", "high", "critical"] | str
    outcome: Literal["success", "failure", "unknown"]
    reason: str | None = None
    actor: EventActor
    resource: EventResource | None = None
    source: EventSource | None = None
    changes: list[EventChange] | None = None
    details: dict[str, str] | None = None
    schema_version: str = "1"
    ingest: IngestPosition


class EventPage(BaseModel):
    data: list[Event]
    next_cursor: str | None = Field(
        description="Pass as `cursor` with the same filters for the next page; null on the last page."
    )
    count: int = Field(description="Number of events in `data`.")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any] = Field(description="Each dependency and what it reported.")
    reasons: list[str] = Field(description="Why the service is not ready; empty when ready.")


# Documented on every route so OpenAPI shows the shared error envelope.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid parameter (see `error.field`)."},
    401: {"model": ErrorBody, "description": "Missing, malformed, unknown or revoked API key."},
    403: {"model": ErrorBody, "description": "The key's role or tenant does not allow this."},
}
