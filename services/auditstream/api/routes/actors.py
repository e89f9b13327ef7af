"""``/v1/actors``: the tenant's actors whose id, name or email starts with a prefix.

The type-ahead of the viewer's user filter. Reader role, scoped to the key's tenant
like every read. Only the last ``max_window_days`` are searched (the longest window
one query may cover anyway), so a suggestion never scans the whole history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from auditstream.api.deps import ReaderKey, SettingsDep, StoreDep, TenantDep
from auditstream.api.errors import BadRequest
from auditstream.api.routes.events import json_response
from auditstream.api.schemas import ERROR_RESPONSES
from auditstream.store import EventFilter

__all__ = ["router", "suggest_actors"]

router = APIRouter(prefix="/v1", tags=["actors"])


class Actor(BaseModel):
    id: str
    name: str | None
    email: str | None
    events: int


class ActorList(BaseModel):
    data: list[Actor]
    count: int


@router.get(
    "/actors",
    response_model=ActorList,
    responses=ERROR_RESPONSES,
    summary="Actors whose id, name or email starts with `prefix` (type-ahead), most active first",
)
def suggest_actors(
    store: StoreDep,
    settings: SettingsDep,
    key: ReaderKey,
    tenant: TenantDep,
    prefix: Annotated[
        str, Query(min_length=1, max_length=128, description="Case-insensitive start of id, name or email.")
    ],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Response:
    prefix = prefix.strip()
    if not prefix or any(ord(ch) < 32 for ch in prefix):
        raise BadRequest("prefix: expected visible characters", field="prefix")
    now = datetime.now(UTC)
    f = EventFilter(tenant_id=tenant, since=now - timedelta(days=settings.max_window_days), until=now)
    rows = store.suggest_actors(f, prefix, limit=limit)
    data = [
        {
            "id": r["actor_id"],
            "name": r["last_name"] or None,
            "email": r["last_email"] or None,
            "events": int(r["n"]),
        }
        for r in rows
    ]
    return json_response({"data": data, "count": len(data)})
