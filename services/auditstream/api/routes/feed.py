"""``/v1/feed``: the SIEM pull, in ingest order, gap-free across late events.

Order is the Kafka ingest position (partition, offset), not event time: an event whose
``occurred_at`` is hours old when it arrives is appended at the end of the feed, so a
client that follows ``next_cursor`` receives it, once. The cursor is the last offset
delivered per partition (opaque, base64 JSON, bound to the tenant); see
``Store.feed_page`` for why this never skips: the positions index is written one
processor batch per part, and pages are per-partition prefixes.

Why (partition, offset) rather than a global ingest sequence: the offset already is a
dense, monotonic, durable sequence per partition that the processor stores with every
row, and it survives re-delivery (a re-processed batch lands on the same positions and
collapses). A global sequence would have to be assigned by a single writer and
persisted across processor restarts: more moving parts for nothing the feed needs.

The cursor never ends: on an empty page ``next_cursor`` is the same position, to be
polled again later. ``watermark`` reports, per partition, the highest offset stored for
the tenant when the page was read (the same read that bounds the page, one query; see
``Store.feed_watermark``), and the processor's consumer lag when this process runs the processor
(embedded mode; otherwise ``lag`` is null: read it from the processor's /metrics).

Who may read it, and the trace it leaves: the feed is a bulk pull of everything, so it
needs the ``exporter`` role (an operator may name another tenant). Reading is audited per
*cursor session*, not per page: a request without a cursor starts a session, writes one
``feed.read`` event to the tenant's log (acknowledged by the broker before any page is
served; no record, no page: 503 like an export; the page is read while the broker
acknowledges, so the two waits overlap) and carries the session id inside ``next_cursor``; pages that
continue it write nothing. The session id is bound to the tenant with an HMAC under a
key of this process, because the cursor itself is not signed: a cursor whose session does
not verify (forged, edited, or issued before a restart) starts a new, audited session
instead of reading silently.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from prometheus_client import REGISTRY
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from auditstream.api import audit_trail
from auditstream.api.deps import ExporterKey, StoreDep, TenantDep
from auditstream.api.errors import BadRequest
from auditstream.api.routes.events import json_response
from auditstream.api.schemas import ERROR_RESPONSES, ErrorBody, Event
from auditstream.events.stored import row_to_event
from auditstream.store.store import MAX_FEED_PARTITIONS, FeedPage, Store

__all__ = [
    "FeedCursor",
    "InvalidFeedCursor",
    "decode_feed_cursor",
    "encode_feed_cursor",
    "parse_feed_cursor",
    "router",
]

router = APIRouter(prefix="/v1", tags=["feed"])

MAX_PAGE = 10000
_LAG_METRIC = "auditstream_processor_consumer_lag"


class InvalidFeedCursor(ValueError):
    pass


def _tenant_tag(tenant_id: str) -> str:
    return hashlib.sha256(f"feed:{tenant_id}".encode()).hexdigest()[:12]


# Partition numbers as the cursor writes them. Not str.isdigit(): that accepts "²" or
# "٣", which int() then refuses (a 500 before this check existed).
_PARTITION_RE = re.compile(r"^[0-9]{1,5}$")
_SESSION_RE = re.compile(r"^[0-9a-f]{16}$")
# Binds a session id to a tenant; per process, so a restart starts new (audited) sessions.
_SESSION_KEY = secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class FeedCursor:
    positions: dict[int, int]
    session: str | None = None  # a verified session id, else None


def _session_mac(tenant_id: str, session: str) -> str:
    return hmac.new(_SESSION_KEY, f"{tenant_id}:{session}".encode(), hashlib.sha256).hexdigest()[:16]


def new_session() -> str:
    return secrets.token_hex(8)


def encode_feed_cursor(tenant_id: str, positions: dict[int, int], session: str | None = None) -> str:
    payload: dict[str, Any] = {
        "v": 1,
        "t": _tenant_tag(tenant_id),
        "p": {str(k): v for k, v in sorted(positions.items())},
    }
    if session is not None:
        payload["s"] = session
        payload["m"] = _session_mac(tenant_id, session)
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def parse_feed_cursor(tenant_id: str, text: str) -> FeedCursor:
    """Positions and (verified) session of a cursor; InvalidFeedCursor if it is not one we issue."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise InvalidFeedCursor("malformed cursor") from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("p"), dict):
        raise InvalidFeedCursor("malformed cursor")
    if data.get("t") != _tenant_tag(tenant_id):
        raise InvalidFeedCursor("this cursor belongs to another tenant")
    positions: dict[int, int] = {}
    if len(data["p"]) > MAX_FEED_PARTITIONS:
        raise InvalidFeedCursor("malformed cursor")
    for k, v in data["p"].items():
        if not (_PARTITION_RE.match(k) and isinstance(v, int) and not isinstance(v, bool)):
            raise InvalidFeedCursor("malformed cursor")
        partition = int(k)
        if not (0 <= partition < 65536 and 0 <= v < 2**63):
            raise InvalidFeedCursor("malformed cursor")
        positions[partition] = v
    session, mac = data.get("s"), data.get("m")
    verified = (
        isinstance(session, str)
        and isinstance(mac, str)
        and _SESSION_RE.match(session) is not None
        and hmac.compare_digest(mac, _session_mac(tenant_id, session))
    )
    return FeedCursor(positions, session if verified else None)


def decode_feed_cursor(tenant_id: str, text: str) -> dict[int, int]:
    """The positions of a cursor (``/v1/live``'s ``Last-Event-ID``); InvalidFeedCursor if malformed."""
    return parse_feed_cursor(tenant_id, text).positions


def consumer_lag() -> dict[int, int] | None:
    """Per-partition consumer lag from the processor's gauge, if it runs in this process."""
    lag: dict[int, int] = {}
    for metric in REGISTRY.collect():
        if metric.name != _LAG_METRIC:
            continue
        for sample in metric.samples:
            partition = sample.labels.get("partition")
            if partition is not None and partition.isdigit():
                lag[int(partition)] = int(sample.value)
    return lag or None


class PartitionWatermark(BaseModel):
    partition: int
    offset: int = Field(description="Highest Kafka offset stored for this tenant in this partition.")
    lag: int | None = Field(None, description="Consumer lag (messages not yet stored), when known.")


class Watermark(BaseModel):
    partitions: list[PartitionWatermark]
    lag: int | None = Field(description="Total consumer lag over all partitions; null when unknown.")
    caught_up: bool = Field(description="True when this page reached the end of what is stored.")


class FeedPageModel(BaseModel):
    data: list[Event]
    count: int
    next_cursor: str = Field(description="Always set: pass it to continue (poll again when count is 0).")
    watermark: Watermark


@router.get(
    "/feed",
    response_model=FeedPageModel,
    responses={
        **ERROR_RESPONSES,
        503: {"model": ErrorBody, "description": "The audit trail (feed.read) or the store is down."},
    },
    summary="Every event of the tenant in ingest order, exactly once when following next_cursor"
    " (exporter role; audited once per cursor session)",
)
async def feed(
    request: Request,
    store: StoreDep,
    key: ExporterKey,
    tenant: TenantDep,
    cursor: Annotated[
        str | None, Query(max_length=16384, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    start: Annotated[
        Literal["earliest", "latest"],
        Query(description="Without a cursor: from the oldest stored event, or from now on."),
    ] = "earliest",
) -> Response:
    parsed: FeedCursor | None = None
    if cursor is not None:
        try:
            parsed = parse_feed_cursor(tenant, cursor)
        except InvalidFeedCursor as exc:
            raise BadRequest(f"cursor: {exc}", field="cursor") from None
    session = parsed.session if parsed is not None else None
    recorded: asyncio.Task[None] | None = None
    if session is None:
        # A new session (or one we cannot vouch for): its record is sent now and the page
        # is read while the broker acknowledges it, but no byte of the page leaves before
        # the acknowledgement (no record, no page: 503). The two waits overlap instead of
        # adding up; what is served and what is audited are exactly as before.
        session = new_session()
        begun = "cursor" if parsed is not None else start
        actor = audit_trail.api_actor(key, request.client.host if request.client else None)
        recorded = asyncio.ensure_future(
            audit_trail.record(
                request.app.state.publisher, audit_trail.feed_event(tenant, actor, session, begun)
            )
        )
    try:
        response = await run_in_threadpool(_read_page, store, tenant, parsed, start, limit, session)
    except BaseException:
        if recorded is not None:
            # The read failed: its error is the answer. The record in flight is still
            # awaited (never cancelled half-sent); its own failure is only logged.
            with contextlib.suppress(Exception):
                await asyncio.shield(recorded)
        raise
    if recorded is not None:
        await recorded  # PublishUnavailable -> 503; the page read is discarded
    return response


def _read_page(
    store: Store, tenant: str, parsed: FeedCursor | None, start: str, limit: int, session: str
) -> Response:
    """The page after ``parsed`` (or the first one, by ``start``), encoded; on a worker thread."""
    if parsed is not None:
        page = store.feed_page(tenant, parsed.positions, limit=limit)
    elif start == "latest":
        # "From now on": the position is the watermark itself, the page empty by
        # definition; what is stored after this query comes with the next poll.
        heads = store.feed_watermark(tenant)
        page = FeedPage([], dict(heads), more=False, watermark=heads)
    else:
        page = store.feed_page(tenant, {}, limit=limit)
    return _page_response(tenant, page, session)


def _page_response(tenant: str, page: FeedPage, session: str) -> Response:
    # On a worker thread (_read_page): encoding up to MAX_PAGE events must not block the event loop.
    data = [row_to_event(r) for r in page.rows]
    lags = consumer_lag()
    partitions: list[dict[str, Any]] = [
        {"partition": p, "offset": o, "lag": None if lags is None else lags.get(p, 0)}
        for p, o in sorted(page.watermark.items())
    ]
    return json_response(
        {
            "data": data,
            "count": len(data),
            "next_cursor": encode_feed_cursor(tenant, page.positions, session),
            "watermark": {
                "partitions": partitions,
                "lag": None if lags is None else sum(lags.values()),
                "caught_up": not page.more,
            },
        }
    )
