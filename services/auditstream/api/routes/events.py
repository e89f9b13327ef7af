"""``/v1/events``: range queries with keyset pagination, and the detail view.

Routes are plain ``def``: the store is synchronous (clickhouse-connect / chDB), so
FastAPI runs them in its thread pool and the event loop stays free.

Responses are serialised with orjson straight from ``row_to_event`` output; the
declared ``response_model`` documents the shape (tests validate against it) without
paying for a second pydantic pass over up to 1000 events per page.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from auditstream.api.cursor import Cursor, InvalidCursor, decode_cursor, encode_cursor, filter_hash
from auditstream.api.deps import FiltersDep, ReaderKey, SettingsDep, StoreDep, TenantDep, check_window
from auditstream.api.errors import BadRequest, NotFound
from auditstream.api.schemas import ERROR_RESPONSES, ErrorBody, Event, EventPage
from auditstream.api.timeparse import representable
from auditstream.events.stored import row_to_event

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["events"])


def json_response(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def row_position(row: dict[str, Any]) -> tuple[datetime, uuid.UUID]:
    """The keyset position (occurred_at, event_id) of a stored row, normalised."""
    occurred = row["occurred_at"]
    if isinstance(occurred, str):
        occurred = datetime.fromisoformat(occurred.replace("Z", "+00:00"))
    if occurred.tzinfo is None:  # the column is DateTime64(3, 'UTC'); a naive value is UTC
        occurred = occurred.replace(tzinfo=UTC)
    event_id = row["event_id"]
    return occurred, event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id))


def check_cursor_dates(c: Cursor, now: datetime, max_age_days: int) -> None:
    """400 for a cursor whose dates no page we issued could carry.

    The cursor is not signed, so its dates are re-checked: inside what the store can
    represent, the window no older than the retention (plus one window of slack for a
    walk begun near the horizon), and the last row inside its own window. A forged
    cursor dated in year 1 would otherwise reach ClickHouse as an unrepresentable
    DateTime64 parameter.
    """
    if not all(representable(t) for t in (c.occurred_at, c.since, c.until)):
        raise BadRequest("cursor: its dates are outside the range the store represents", field="cursor")
    if c.since < now - timedelta(days=max_age_days):
        raise BadRequest("cursor: its window is older than the retention; start a new query", field="cursor")
    if not c.since <= c.occurred_at <= c.until:
        raise BadRequest("cursor: malformed cursor", field="cursor")


@router.get(
    "/events",
    response_model=EventPage,
    responses=ERROR_RESPONSES,
    summary="Events in a time window, newest first by default",
)
def list_events(
    store: StoreDep,
    settings: SettingsDep,
    key: ReaderKey,
    tenant: TenantDep,
    filters: FiltersDep,
    order: Annotated[Literal["desc", "asc"], Query(description="By (occurred_at, event_id).")] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="`next_cursor` of the previous page.")
    ] = None,
) -> Response:
    fhash = filter_hash(tenant, order, filters.raw)
    after: tuple[datetime, uuid.UUID] | None = None
    if cursor is not None:
        try:
            c = decode_cursor(cursor)
        except InvalidCursor as exc:
            raise BadRequest(f"cursor: {exc}", field="cursor") from None
        if c.order != order:
            raise BadRequest("cursor: it was issued for the other order", field="cursor")
        if c.filter_hash != fhash:
            raise BadRequest(
                "cursor: it was issued for different filters; repeat them unchanged", field="cursor"
            )
        try:
            check_window(c.since, c.until, settings.max_window_days)
        except BadRequest:
            raise BadRequest("cursor: malformed cursor", field="cursor") from None
        check_cursor_dates(c, datetime.now(UTC), settings.retention_days + settings.max_window_days)
        since, until = c.since, c.until
        after = (c.occurred_at, c.event_id)
    else:
        since, until = filters.resolve_window(
            datetime.now(UTC), settings.max_window_days, settings.retention_days
        )

    f = filters.to_event_filter(tenant, since, until)
    # One extra row says whether another page exists, so the last page has
    # next_cursor=null instead of sending the client to an empty page.
    rows = store.query_events(f, order=order, limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        occurred, event_id = row_position(rows[-1])
        next_cursor = encode_cursor(Cursor(order, occurred, event_id, since, until, fhash))
    data = [row_to_event(r) for r in rows]
    return json_response({"data": data, "next_cursor": next_cursor, "count": len(data)})


@router.get(
    "/events/{event_id}",
    response_model=Event,
    responses={**ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "No such event in this tenant."}},
    summary="One event with every field",
)
def get_event(
    store: StoreDep,
    key: ReaderKey,
    tenant: TenantDep,
    event_id: Annotated[str, Path(max_length=64, description="The event's UUID.")],
) -> Response:
    try:
        eid = uuid.UUID(event_id)
    except ValueError:
        raise BadRequest("event_id: not a UUID", field="event_id") from None
    row = store.get_event(tenant, eid)
    # Another tenant's event is indistinguishable from a missing one: no existence oracle.
    if row is None:
        raise NotFound("no such event", field="event_id")
    return json_response(row_to_event(row))
