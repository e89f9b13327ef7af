"""``/v1/stats``: counts of distinct events grouped by one dimension, with the event filters.

``group_by`` is one of action, actor, outcome, category, severity, or ``time`` with
``bucket=hour|day``. Groups come largest first (top ``limit``); time buckets come in
time order, and only non-empty buckets are listed. ``total`` counts every matching
event and ``groups`` every group, also those cut off by ``limit``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from auditstream.api.deps import FiltersDep, ReaderKey, SettingsDep, StoreDep, TenantDep
from auditstream.api.routes.events import json_response
from auditstream.api.schemas import ERROR_RESPONSES
from auditstream.events.stored import format_datetime

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["stats"])

GroupBy = Literal["action", "actor", "outcome", "category", "severity", "time"]


class StatsGroup(BaseModel):
    key: str = Field(description="The group's value; for time, the bucket start (RFC 3339 UTC).")
    count: int


class Stats(BaseModel):
    group_by: str
    bucket: str | None
    since: str
    until: str
    total: int = Field(description="Distinct events matching the filters.")
    groups: int = Field(description="Number of groups, including those beyond `limit`.")
    data: list[StatsGroup]


@router.get(
    "/stats",
    response_model=Stats,
    responses=ERROR_RESPONSES,
    summary="Counts of events grouped by action, actor, outcome, category, severity or time",
)
def stats(
    store: StoreDep,
    settings: SettingsDep,
    key: ReaderKey,
    tenant: TenantDep,
    filters: FiltersDep,
    group_by: Annotated[GroupBy, Query(description="The dimension to count by.")] = "action",
    bucket: Annotated[Literal["hour", "day"], Query(description="Bucket size when group_by=time.")] = "hour",
    limit: Annotated[int, Query(ge=1, le=10000, description="Top-N groups (time: first N buckets).")] = 100,
) -> Response:
    since, until = filters.resolve_window(
        datetime.now(UTC), settings.max_window_days, settings.retention_days
    )
    f = filters.to_event_filter(tenant, since, until)
    dimension = bucket if group_by == "time" else group_by
    groups, total, group_count = store.count_grouped(f, dimension, limit=limit)
    data: list[dict[str, Any]] = [
        {"key": format_datetime(k) if isinstance(k, datetime) else str(k), "count": n} for k, n in groups
    ]
    return json_response(
        {
            "group_by": group_by,
            "bucket": bucket if group_by == "time" else None,
            "since": format_datetime(since),
            "until": format_datetime(until),
            "total": total,
            "groups": group_count,
            "data": data,
        }
    )
