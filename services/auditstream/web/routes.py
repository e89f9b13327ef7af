"""The viewer's pages and fragments.

Every read goes through the ``/v1`` route functions themselves (``list_events``,
``get_event``, ``stats``, ``suggest_actors``, ``live``, the export-job routes), called
with the session's key, the tenant from ``resolve_tenant`` and the filters from
``query_filters``: one code path for filters, cursors, tenancy, auditing and SQL. The
pages only turn their JSON into HTML (Jinja2, autoescaped).

Pages: ``/`` (events: histogram, filters, table), ``/events/{id}`` (detail),
``/exports`` (history and new export), ``/signin``, ``/signout``. Fragments for htmx:
``/ui/rows`` (Load more), ``/ui/actors`` (type-ahead), ``/ui/live`` (SSE of rendered rows).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.responses import RedirectResponse, Response, StreamingResponse

from auditstream.api.deps import query_filters, require_role, resolve_tenant
from auditstream.api.errors import ApiError
from auditstream.api.keys import ApiKey, Role
from auditstream.api.routes import actors as actors_route
from auditstream.api.routes import events as events_route
from auditstream.api.routes import exports as exports_route
from auditstream.api.routes import live as live_route
from auditstream.api.routes import stats as stats_route
from auditstream.events.catalog import ACTIVITY, CATEGORY_BY_PREFIX, categorize
from auditstream.web.render import Renderer
from auditstream.web.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SessionCodec,
    WebSession,
    csrf_ok,
    set_cookie,
)
from auditstream.web.viewstate import PRESETS, ViewState, parse_view

__all__ = ["PAGE_SIZE", "may_export", "may_switch_tenant", "router"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
AROUND = timedelta(hours=1)
# Operators may read any tenant. Until the Role.OPERATOR of the api-hardening work is
# merged, resolve_tenant lets admin keys pick a tenant, and the viewer follows it.
_TENANT_SWITCH_ROLE: Role = getattr(Role, "OPERATOR", Role.ADMIN)


def may_switch_tenant(key: ApiKey) -> bool:
    """Whether the viewer offers this key a tenant switch (resolve_tenant decides in the end)."""
    return key.role is _TENANT_SWITCH_ROLE


def may_export(key: ApiKey) -> bool:
    return key.role.allows(Role.EXPORTER)


def _renderer(request: Request) -> Renderer:
    return request.app.state.web_renderer


def _codec(request: Request) -> SessionCodec:
    return request.app.state.web_sessions


def _session(request: Request) -> WebSession | None:
    return _codec(request).open(request.cookies.get(SESSION_COOKIE), request.app.state.verifier)


def _to_signin(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": "/signin"})
    return RedirectResponse("/signin?" + _qs({"next": target}), status_code=303)


def _qs(params: dict[str, str]) -> str:
    return urlencode(params)


async def _reader(session: WebSession) -> ApiKey:
    return await require_role(Role.READER)(session.key)


async def _tenant(session: WebSession, view: ViewState) -> str:
    return await resolve_tenant(session.key, view.tenant)


def _json(response: Response) -> Any:
    return orjson.loads(bytes(response.body))


def _base_context(request: Request, session: WebSession, view: ViewState, tenant: str) -> dict[str, Any]:
    return {
        "request": request,
        "session": session,
        "key": session.key,
        "tenant": tenant,
        "view": view,
        "may_export": may_export(session.key),
        "may_switch_tenant": may_switch_tenant(session.key),
    }


# --- sign-in / sign-out ----------------------------------------------------------------


@router.get("/signin")
async def signin_page(request: Request, next: str = "/", error: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = _renderer(request).page(
        "signin.html",
        {"request": request, "csrf": token, "next": _safe_next(next), "error": error},
        status_code=401 if error else 200,
    )
    set_cookie(response, request, LOGIN_CSRF_COOKIE, token, 600)
    return response


def _safe_next(target: str) -> str:
    # Only a path of this app: "//evil" or "https://..." would be an open redirect.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 16384:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await _form(request)
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf_token")):
        return await signin_page(request, form.get("next", "/"), "The sign-in form expired; try again.")
    token = form.get("api_key", "").strip()
    key = request.app.state.verifier.verify(token) if token else None
    if key is None:
        return await signin_page(request, form.get("next", "/"), "That API key is not valid (or revoked).")
    codec = _codec(request)
    response = RedirectResponse(_safe_next(form.get("next", "/")), status_code=303)
    set_cookie(response, request, SESSION_COOKIE, codec.issue(token), codec.max_age)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    session = _session(request)
    form = await _form(request)
    if session is not None and not csrf_ok(session.csrf, form.get("csrf_token")):
        return Response("CSRF token missing or wrong", status_code=403, media_type="text/plain")
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --- the events page -------------------------------------------------------------------


def _action_groups() -> list[tuple[str, list[str]]]:
    """Action choices grouped by category: each prefix wildcard, then the catalog's actions."""
    groups: dict[str, list[str]] = {}
    for prefix, category in CATEGORY_BY_PREFIX.items():
        groups.setdefault(category, []).append(f"{prefix}.*")
    for action in sorted(ACTIVITY):
        groups.setdefault(categorize(action), []).append(action)
    return sorted(groups.items())


def _histogram(request: Request, session: WebSession, tenant: str, view: ViewState) -> dict[str, Any] | None:
    assert view.filters is not None
    settings = request.app.state.settings
    since, until = view.filters.resolve_window(
        datetime.now(UTC), settings.max_window_days, settings.retention_days
    )
    bucket = "hour" if until - since <= timedelta(days=3) else "day"
    body = _json(
        stats_route.stats(
            request.app.state.store,
            settings,
            session.key,
            tenant,
            view.filters,
            group_by="time",
            bucket=bucket,
            limit=10000,
        )
    )
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    peak = max((g["count"] for g in body["data"]), default=0)
    bars = []
    for g in body["data"]:
        start = datetime.fromisoformat(g["key"].replace("Z", "+00:00"))
        end = start + step
        bars.append(
            {
                "start": g["key"],
                "count": g["count"],
                "height": round(100 * g["count"] / peak, 1) if peak else 0,
                "end": _iso(end),
                "url": view.url("/", since=g["key"], until=_iso(end)),
            }
        )
    width = (until - since) / step
    return {
        "bars": bars,
        "total": body["total"],
        "bucket": bucket,
        "since": since,
        "until": until,
        "slots": max(width, 1),
        "step_seconds": step.total_seconds(),
    }


def _page_of_events(
    request: Request, session: WebSession, tenant: str, view: ViewState, cursor: str | None
) -> dict[str, Any]:
    assert view.filters is not None
    return _json(
        events_route.list_events(
            request.app.state.store,
            request.app.state.settings,
            session.key,
            tenant,
            view.filters,
            order="desc",
            limit=PAGE_SIZE,
            cursor=cursor,
        )
    )


@router.get("/")
async def events_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_signin(request)
    view = await parse_view(request.query_params)
    try:
        await _reader(session)
        tenant = await _tenant(session, view)
    except ApiError as exc:
        return _renderer(request).error(request, exc.status_code, exc.message)
    context = _base_context(request, session, view, tenant)
    context.update(
        presets=PRESETS,
        action_groups=_action_groups(),
        page=None,
        histogram=None,
        formats=["csv", "json", "ndjson"],
    )
    status = 200
    if view.filters is not None:
        try:
            context["histogram"] = await run_in_threadpool(_histogram, request, session, tenant, view)
            context["page"] = await run_in_threadpool(_page_of_events, request, session, tenant, view, None)
        except ApiError as exc:
            view.error, view.error_field, status = exc.message, exc.field, 400
    else:
        status = 400
    return _renderer(request).page("events.html", context, status_code=status)


@router.get("/ui/rows")
async def more_rows(request: Request, cursor: str | None = None) -> Response:
    session = _session(request)
    if session is None:
        return _to_signin(request)
    view = await parse_view(request.query_params)
    try:
        await _reader(session)
        tenant = await _tenant(session, view)
        if view.filters is None:
            raise ApiError(view.error or "invalid filters", field=view.error_field)
        page = await run_in_threadpool(_page_of_events, request, session, tenant, view, cursor)
    except ApiError as exc:
        return _renderer(request).fragment("error_row.html", {"message": exc.message}, status_code=200)
    return _renderer(request).fragment("rows.html", {"page": page, "view": view})


@router.get("/ui/actors")
async def actor_suggestions(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_signin(request)
    prefix = (request.query_params.get("actor") or "").strip()
    view = await parse_view(request.query_params)
    data: list[dict[str, Any]] = []
    if prefix and len(prefix) <= 128:
        try:
            await _reader(session)
            tenant = await _tenant(session, view)
            response = await run_in_threadpool(
                actors_route.suggest_actors,
                request.app.state.store,
                request.app.state.settings,
                session.key,
                tenant,
                prefix,
                10,
            )
            data = _json(response)["data"]
        except ApiError:
            data = []
    return _renderer(request).fragment("actors.html", {"actors": data})


@router.get("/ui/live")
async def live_rows(request: Request) -> Response:
    """``/v1/live`` for the viewer: the same stream, each event rendered as a table row."""
    session = _session(request)
    if session is None:
        return Response(status_code=401)
    view = await parse_view(request.query_params)
    try:
        await _reader(session)
        tenant = await _tenant(session, view)
        if view.filters is None:
            raise ApiError(view.error or "invalid filters", field=view.error_field)
        upstream = await live_route.live(
            request,
            request.app.state.store,
            session.key,
            tenant,
            view.filters,
            max_seconds=600,
            last_event_id=request.headers.get("last-event-id"),
        )
    except ApiError as exc:
        return Response(exc.message, status_code=exc.status_code, media_type="text/plain")
    renderer = _renderer(request)

    async def rendered() -> AsyncIterator[bytes]:
        async for chunk in upstream.body_iterator:
            raw = chunk if isinstance(chunk, bytes) else str(chunk).encode()
            yield renderer.sse_rows(raw, view)

    return StreamingResponse(rendered(), media_type="text/event-stream", headers=dict(upstream.headers))


# --- detail ---------------------------------------------------------------------------


async def _around(
    request: Request, session: WebSession, tenant: str, event: dict[str, Any], view: ViewState
) -> list[dict[str, Any]]:
    """Events of the same actor, and of the same resource, within an hour either side."""
    at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    window = {"since": _iso(at - AROUND), "until": _iso(at + AROUND)}
    sections: list[tuple[str, dict[str, Any]]] = [("the same user", {"actor": [event["actor"]["id"]]})]
    resource = event.get("resource") or {}
    if resource.get("type") and resource.get("id"):
        sections.append(
            ("the same resource", {"resource_type": resource["type"], "resource_id": resource["id"]})
        )
    out = []
    for title, extra in sections:
        sub = ViewState(raw={**window, **extra}, tenant=view.tenant)
        sub.filters = await query_filters(**sub.raw)
        page = await run_in_threadpool(_page_of_events, request, session, tenant, sub, None)
        out.append({"title": title, "page": page, "url": sub.url("/")})
    return out


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get("/events/{event_id}")
async def event_page(request: Request, event_id: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_signin(request)
    view = await parse_view(request.query_params)
    renderer = _renderer(request)
    try:
        await _reader(session)
        tenant = await _tenant(session, view)
        if len(event_id) > 64:
            raise ApiError("event_id: not a UUID", field="event_id")
        response = await run_in_threadpool(
            events_route.get_event, request.app.state.store, session.key, tenant, event_id
        )
        event = _json(response)
    except ApiError as exc:
        message = "Event not found in this tenant." if exc.status_code == 404 else exc.message
        return renderer.error(request, 404 if exc.status_code == 404 else exc.status_code, message, session)
    context = _base_context(request, session, view, tenant)
    context.update(
        event=event,
        raw_json=orjson.dumps(event, option=orjson.OPT_INDENT_2).decode(),
        around=await _around(request, session, tenant, event, view),
        category=categorize(event["action"]),
    )
    return renderer.page("event.html", context)


# --- exports --------------------------------------------------------------------------


async def _export_jobs(request: Request, session: WebSession, tenant: str) -> list[dict[str, Any]]:
    jobs = await exports_route.list_exports(request, session.key, tenant, limit=50, status=None)
    return [j.model_dump() for j in jobs.data]


@router.get("/exports")
async def exports_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_signin(request)
    view = await parse_view(request.query_params)
    renderer = _renderer(request)
    try:
        await require_role(Role.EXPORTER)(session.key)
        tenant = await _tenant(session, view)
        jobs = await _export_jobs(request, session, tenant)
    except ApiError as exc:
        return renderer.error(request, exc.status_code, exc.message, session)
    context = _base_context(request, session, view, tenant)
    context.update(jobs=jobs, active=any(j["status"] in ("pending", "running") for j in jobs))
    template = "exports_table.html" if request.headers.get("hx-request") else "exports.html"
    return renderer.page(template, context)


@router.post("/exports")
async def create_export(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_signin(request)
    form = await _form(request)
    if not csrf_ok(session.csrf, form.get("csrf_token")):
        return Response("CSRF token missing or wrong", status_code=403, media_type="text/plain")
    # The filters travel in the form as the query string of the view they came from.
    view = await parse_view(QueryParams(form.get("view", "")))
    renderer = _renderer(request)
    try:
        if view.filters is None:
            raise ApiError(view.error or "invalid filters", field=view.error_field)
        key = await require_role(Role.EXPORTER)(session.key)
        tenant = await _tenant(session, view)
        body = exports_route.ExportCreate.model_validate(
            {
                "name": form.get("name", "").strip() or "viewer export",
                "format": form.get("format", "csv"),
                "filters": {k: v for k, v in view.raw.items()},
            }
        )
        await exports_route.create_export(request, body, key, tenant, request.app.state.settings)
    except ApiError as exc:
        return renderer.error(request, exc.status_code, exc.message, session)
    except ValueError as exc:  # pydantic: name too long, unknown format
        return renderer.error(request, 400, f"export: {str(exc).splitlines()[0]}", session)
    return RedirectResponse(view.url("/exports", **{n: None for n in view.raw}), status_code=303)


@router.get("/exports/{export_id}/download")
async def download(request: Request, export_id: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_signin(request)
    view = await parse_view(request.query_params)
    try:
        key = await require_role(Role.EXPORTER)(session.key)
        tenant = await _tenant(session, view)
        # The API's own route: same checks, same export.downloaded audit record.
        return await exports_route.download_export(request, key, tenant, export_id[:64], gzip_file=False)
    except ApiError as exc:
        return _renderer(request).error(request, exc.status_code, exc.message, session)
