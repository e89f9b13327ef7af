"""``/v1/alerts``: alert rules (admin) and the alerts they fire.

Rules: ``POST/GET/PATCH/DELETE /v1/alerts/rules`` (admin role, own tenant; ``tenant=`` for
keys allowed to pick another). A body that is not a valid rule answers 422 naming the field
(``filter.action``, ``window``, ``targets.0.url``, ``sigma.detection.condition``, ...).
``kind: "sigma"`` with the YAML in ``sigma`` is converted (``alerts/sigma.py``) and stored as
the kind it maps to. Each change is written to the audit log first (``alert_rule.created``,
``alert_rule.updated``, ``alert_rule.deleted``): when that cannot be published the request
answers 503 and nothing changes. Target secrets are write-only: answers show ``"***"``.

``tenant`` is declared before the role so that a key picking a tenant it may not read is
refused for that (403 naming ``tenant``) before its role is considered.

Alerts: ``GET /v1/alerts`` (filters ``rule_id``, ``status``, ``since``/``until`` on the time
the alert fired) and ``GET /v1/alerts/{id}`` (with the delivery log) need the reader role;
``POST /v1/alerts/{id}/acknowledge`` and ``/resolve`` need admin and record who and when
(and are audited as ``alert.acknowledged`` / ``alert.resolved``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from auditstream.alerts import audit_events
from auditstream.alerts.model import RuleError, RuleIn, parse_rule
from auditstream.alerts.sigma import sigma_to_rule
from auditstream.alerts.storage import AlertDB, iso
from auditstream.alerts.targets import check_url
from auditstream.api import audit_trail
from auditstream.api.deps import AdminKey, ReaderKey, SettingsDep, StoreDep, TenantDep
from auditstream.api.errors import ApiError, BadRequest, NotFound
from auditstream.api.schemas import ERROR_RESPONSES, ErrorBody
from auditstream.api.timeparse import parse_time

__all__ = ["router"]

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


class Unprocessable(ApiError):
    status_code = 422
    code = "validation_error"


class RuleView(BaseModel):
    id: str
    tenant_id: str
    version: int
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    rule: dict[str, Any] = Field(description="The rule as stored (secrets shown as ***).")


class RuleList(BaseModel):
    data: list[RuleView]
    count: int


class DeliveryAttempt(BaseModel):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float


class Delivery(BaseModel):
    id: int
    target: dict[str, str]
    status: Literal["pending", "delivered", "failed"]
    attempts: list[DeliveryAttempt]
    last_status: int | None
    last_error: str | None


class AlertView(BaseModel):
    id: str
    tenant_id: str
    rule_id: str
    rule_name: str
    kind: str
    severity: str
    group: dict[str, str]
    window_start: str
    window_end: str
    event_ids: list[str] = Field(description="The events that triggered the alert (up to 100).")
    status: Literal["open", "acknowledged", "resolved"]
    created_at: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    resolved_by: str | None
    resolved_at: str | None
    deliveries: list[Delivery] | None = None


class AlertList(BaseModel):
    data: list[AlertView]
    count: int


def _db(request: Request) -> AlertDB:
    db = getattr(request.app.state, "alerts_db", None)
    if db is None:
        db = request.app.state.alerts_db = AlertDB(request.app.state.settings.resolved_alerts_path)
    return db


def _masked(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    out["targets"] = [{**t, "secret": "***"} if t.get("secret") else dict(t) for t in spec.get("targets", [])]
    return out


def _view(row: dict[str, Any]) -> RuleView:
    return RuleView(
        id=row["id"],
        tenant_id=row["tenant_id"],
        version=row["version"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        rule=_masked(orjson.loads(row["spec"])),
    )


def _validate(raw: dict[str, Any], allow_private: bool) -> dict[str, Any]:
    """Rule JSON -> the canonical stored spec; Unprocessable (422) naming the field."""
    try:
        if isinstance(raw, dict) and raw.get("kind") == "sigma":
            extra = set(raw) - {"kind", "sigma", "name", "description", "enabled", "severity", "targets"}
            if extra:
                raise RuleError(
                    sorted(extra)[0], "not allowed with kind sigma (the Sigma document defines it)"
                )
            raw = sigma_to_rule(
                raw.get("sigma") or "", {k: v for k, v in raw.items() if k not in ("kind", "sigma")}
            )
        rule = parse_rule(
            raw, check_target=lambda url, path: check_url(url, path, allow_private=allow_private)
        )
    except RuleError as exc:
        raise Unprocessable(exc.message, field=exc.field) from None
    return rule.to_json()


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


_NOT_FOUND = {404: {"model": ErrorBody, "description": "No such rule or alert in this tenant."}}
_WRITE = {
    **ERROR_RESPONSES,
    422: {"model": ErrorBody, "description": "Not a valid rule; `field` names the faulty part."},
    503: {"model": ErrorBody, "description": "The audit trail is down."},
}
RuleId = Annotated[str, PathParam(max_length=64)]


@router.post(
    "/rules",
    status_code=201,
    response_model=RuleView,
    responses=_WRITE,
    summary="Create an alert rule (admin)",
)
async def create_rule(
    request: Request,
    tenant: TenantDep,
    key: AdminKey,
    settings: SettingsDep,
    store: StoreDep,
    body: Annotated[RuleIn, Body(description="A rule; see the README for each kind.")],
) -> RuleView:
    raw = body.model_dump(exclude_unset=True)
    spec = await run_in_threadpool(_validate, raw, settings.allow_private_targets)
    db = _db(request)
    rule_id = str(uuid.uuid4())
    now = iso()
    preview = {"id": rule_id, "spec": spec, "version": 1, "updated_at": now}
    actor = audit_trail.api_actor(key, _client_ip(request))
    await audit_trail.record(
        request.app.state.publisher, audit_events.rule_event("alert_rule.created", tenant, actor, preview)
    )
    # Follow the tenant from what is stored now: a new rule judges new events, not history.
    heads = await run_in_threadpool(store.feed_watermark, tenant)
    await run_in_threadpool(db.ensure_cursor, tenant, heads)
    row = await run_in_threadpool(db.create_rule, tenant, spec, key.key_id, rule_id)
    return _view(row)


@router.get(
    "/rules", response_model=RuleList, responses=ERROR_RESPONSES, summary="The tenant's alert rules (admin)"
)
async def list_rules(request: Request, tenant: TenantDep, key: AdminKey) -> RuleList:
    rows = await run_in_threadpool(_db(request).list_rules, tenant)
    return RuleList(data=[_view(r) for r in rows], count=len(rows))


async def _rule(request: Request, tenant: str, rule_id: str) -> dict[str, Any]:
    row = await run_in_threadpool(_db(request).get_rule, rule_id, tenant)
    if row is None:
        raise NotFound("no such alert rule", field="rule_id")
    return row


@router.get(
    "/rules/{rule_id}",
    response_model=RuleView,
    responses={**ERROR_RESPONSES, **_NOT_FOUND},
    summary="One alert rule",
)
async def get_rule(request: Request, tenant: TenantDep, key: AdminKey, rule_id: RuleId) -> RuleView:
    return _view(await _rule(request, tenant, rule_id))


@router.patch(
    "/rules/{rule_id}",
    response_model=RuleView,
    responses={**_WRITE, **_NOT_FOUND},
    summary="Change an alert rule: the given fields replace the stored ones (admin)",
)
async def update_rule(
    request: Request,
    tenant: TenantDep,
    key: AdminKey,
    settings: SettingsDep,
    rule_id: RuleId,
    body: Annotated[
        dict[str, Any], Body(description="Any fields of a rule; `null` removes an optional one.")
    ],
) -> RuleView:
    row = await _rule(request, tenant, rule_id)
    merged = orjson.loads(row["spec"])
    if merged.get("sigma") and "sigma" not in body:
        merged.pop("sigma")  # an edited rule no longer is the Sigma rule it came from
    for name, value in body.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    spec = await run_in_threadpool(_validate, merged, settings.allow_private_targets)
    actor = audit_trail.api_actor(key, _client_ip(request))
    preview = {"id": rule_id, "spec": spec, "version": row["version"] + 1, "updated_at": iso()}
    await audit_trail.record(
        request.app.state.publisher, audit_events.rule_event("alert_rule.updated", tenant, actor, preview)
    )
    updated = await run_in_threadpool(_db(request).update_rule, rule_id, tenant, spec, key.key_id)
    if updated is None:
        raise NotFound("no such alert rule", field="rule_id")
    return _view(updated)


@router.delete(
    "/rules/{rule_id}",
    status_code=204,
    response_class=Response,
    responses={**_WRITE, **_NOT_FOUND},
    summary="Delete an alert rule; its alerts stay (admin)",
)
async def delete_rule(request: Request, tenant: TenantDep, key: AdminKey, rule_id: RuleId) -> Response:
    row = await _rule(request, tenant, rule_id)
    actor = audit_trail.api_actor(key, _client_ip(request))
    preview = {
        "id": rule_id,
        "spec": orjson.loads(row["spec"]),
        "version": row["version"],
        "updated_at": iso(),
    }
    await audit_trail.record(
        request.app.state.publisher, audit_events.rule_event("alert_rule.deleted", tenant, actor, preview)
    )
    await run_in_threadpool(_db(request).delete_rule, rule_id, tenant, key.key_id)
    return Response(status_code=204)


def _bound(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return iso(parse_time(value, now=datetime.now(UTC)))
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}", field=name) from None


@router.get(
    "", response_model=AlertList, responses=ERROR_RESPONSES, summary="Alerts of the tenant, newest first"
)
async def list_alerts(
    request: Request,
    tenant: TenantDep,
    key: ReaderKey,
    rule_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[Literal["open", "acknowledged", "resolved"] | None, Query()] = None,
    since: Annotated[
        str | None, Query(max_length=64, description="Fired at or after (RFC 3339 or -24h).")
    ] = None,
    until: Annotated[str | None, Query(max_length=64, description="Fired before.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    lo, hi = _bound(since, "since"), _bound(until, "until")
    rows = await run_in_threadpool(
        lambda: _db(request).list_alerts(
            tenant, rule_id=rule_id, status=status, since=lo, until=hi, limit=limit
        )
    )
    return AlertList(data=[AlertView(**r) for r in rows], count=len(rows))


AlertId = Annotated[str, PathParam(max_length=64)]


async def _alert(request: Request, tenant: str, alert_id: str) -> dict[str, Any]:
    alert = await run_in_threadpool(_db(request).get_alert, alert_id, tenant)
    if alert is None:
        raise NotFound("no such alert", field="alert_id")
    return alert


@router.get(
    "/{alert_id}",
    response_model=AlertView,
    responses={**ERROR_RESPONSES, **_NOT_FOUND},
    summary="One alert and its deliveries",
)
async def get_alert(request: Request, tenant: TenantDep, key: ReaderKey, alert_id: AlertId) -> AlertView:
    return AlertView(**await _alert(request, tenant, alert_id))


async def _set_status(request: Request, key: Any, tenant: str, alert_id: str, status: str) -> AlertView:
    await _alert(request, tenant, alert_id)
    updated = await run_in_threadpool(_db(request).set_status, alert_id, tenant, status, key.key_id)
    assert updated is not None
    action = "alert.acknowledged" if status == "acknowledged" else "alert.resolved"
    actor = audit_trail.api_actor(key, _client_ip(request))
    await audit_trail.record(
        request.app.state.publisher, audit_events.alert_status_event(action, actor, updated)
    )
    return AlertView(**updated)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertView,
    responses={**_WRITE, **_NOT_FOUND},
    summary="Acknowledge an alert (admin): records who and when",
)
async def acknowledge(request: Request, tenant: TenantDep, key: AdminKey, alert_id: AlertId) -> AlertView:
    return await _set_status(request, key, tenant, alert_id, "acknowledged")


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertView,
    responses={**_WRITE, **_NOT_FOUND},
    summary="Resolve an alert (admin): records who and when",
)
async def resolve(request: Request, tenant: TenantDep, key: AdminKey, alert_id: AlertId) -> AlertView:
    return await _set_status(request, key, tenant, alert_id, "resolved")
