"""``/v1/live``: new matching events as server-sent events (``text/event-stream``).

The server polls the feed index (ingest order, see ``feed.py``) every
``POLL_SECONDS`` from the position the connection started at, and sends each new
event that passes the filters as ``event: audit`` with the event JSON as ``data``.
Each message's ``id`` is a feed cursor: a client reconnecting with ``Last-Event-ID``
resumes right after the last event it received. A comment line (``: keepalive``) goes
out every ``HEARTBEAT_SECONDS`` so proxies keep the connection open. The stream ends
when the client disconnects, after ``max_seconds`` (bounded, so no connection and
no poller lives forever; clients reconnect with ``Last-Event-ID``), or when its key is
revoked: the key is verified again every ``KEY_CHECK_SECONDS`` through the same cache as
every request, so a revoked key's stream ends within about ``KEY_CHECK_SECONDS`` plus
the cache TTL (2 s), with a last ``event: error`` saying why.

The time filters (``since``/``until``) do not apply: live mode is "from now on".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from auditstream.api.deps import FiltersDep, ReaderKey, StoreDep, TenantDep, key_still_valid
from auditstream.api.errors import BadRequest
from auditstream.api.routes.feed import InvalidFeedCursor, decode_feed_cursor, encode_feed_cursor
from auditstream.api.schemas import ERROR_RESPONSES
from auditstream.events.stored import row_to_event
from auditstream.store import EventFilter, Store

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["live"])

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
KEY_CHECK_SECONDS = 1.0
PAGE = 1000
_REVOKED = (
    b"event: error\ndata: "
    + orjson.dumps({"error": {"code": "unauthorized", "message": "the API key was revoked", "field": None}})
    + b"\n\n"
)


def _sse(event_cursor: str, payload: dict) -> bytes:
    return b"id: " + event_cursor.encode() + b"\nevent: audit\ndata: " + orjson.dumps(payload) + b"\n\n"


async def _stream(
    request: Request, store: Store, tenant: str, f: EventFilter, positions: dict[int, int], max_seconds: float
) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + max_seconds
    last_sent = time.monotonic()
    key_checked = time.monotonic()
    yield b": connected\n\n"
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        if time.monotonic() - key_checked >= KEY_CHECK_SECONDS:
            if not await run_in_threadpool(key_still_valid, request):
                yield _REVOKED
                return
            key_checked = time.monotonic()
        page = await run_in_threadpool(store.feed_page, tenant, positions, limit=PAGE, f=f)
        # Positions advance per row so each message's id resumes right after it.
        for row in page.rows:
            positions[int(row["kafka_partition"])] = int(row["kafka_offset"])
            if row["_matched"]:
                yield _sse(encode_feed_cursor(tenant, positions), row_to_event(row))
                last_sent = time.monotonic()
        positions = page.positions
        if page.more:
            continue
        if time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))


@router.get(
    "/live",
    response_class=StreamingResponse,
    responses={
        **ERROR_RESPONSES,
        200: {"description": "Server-sent events", "content": {"text/event-stream": {}}},
    },
    summary="Server-sent events of new events matching the filters",
)
async def live(
    request: Request,
    store: StoreDep,
    key: ReaderKey,
    tenant: TenantDep,
    filters: FiltersDep,
    max_seconds: Annotated[
        float, Query(gt=0, le=3600, description="Close the stream after this long; reconnect to go on.")
    ] = 3600,
    last_event_id: Annotated[str | None, Header(max_length=16384)] = None,
) -> StreamingResponse:
    f = EventFilter(
        tenant_id=tenant,
        actors=list(filters.actors),
        actions=list(filters.actions),
        resource_type=filters.resource_type,
        resource_id=filters.resource_id,
        outcome=filters.outcome,
        ip=filters.ip,
        text=filters.q,
        details=filters.details,
    )
    if last_event_id:
        try:
            positions = decode_feed_cursor(tenant, last_event_id)
        except InvalidFeedCursor as exc:
            raise BadRequest(f"Last-Event-ID: {exc}", field="Last-Event-ID") from None
    else:
        positions = await run_in_threadpool(store.feed_watermark, tenant)
    return StreamingResponse(
        _stream(request, store, tenant, f, positions, max_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
