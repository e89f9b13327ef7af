"""The viewer's pages and fragments.

Every read goes through the ``/v1`` route functions themselves (``list_events``,
``get_event``, ``stats``, ``suggest_actors``, ``live``, the export-job routes), called
with the session's key, the tenant from ``resolve_tenant`` and the filters from
``query_filters``: one code path for filters, cursors, tenancy, auditing and SQL. The
pages only turn their JSON into HTML (Jinja2, autoescaped).

Pages: ``/`` (events: histogram, filters, table), ``/events/{id}`` (detail),
``/exports`` (history and new export), ``/signin``, ``/signout``. Fragments for htmx:
``/ui/rows`` (Load more), ``/ui/histogram`` (counts, loaded after the table), ``/ui/actors``
(type-ahead), ``/ui/live`` (SSE of rendered rows).
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.responses import RedirectResponse, Response, StreamingResponse

from auditstream.api.deps import query_filters, require_role, resolve_tenant
from auditstream.api.errors import ApiError, BadRequest
from auditstream.api.keys import ApiKey, Role
from auditstream.api.routes import actors as actors_route
from auditstream.api.routes import events as events_route
from auditstream.api.routes import exports as exports_route
from auditstream.api.routes import live as live_route
from auditstream.api.routes import stats as stats_route
from auditstream.events.catalog import ACTIVITY, CATEGORY_BY_PREFIX, categorize
from auditstream.integrity.service import origin, public_key, shared_ledger
from auditstream.integrity.status import EventIntegrity, event_integrity
from auditstream.store.errors import StoreError
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

__all__ = ["PAGE_SIZE", "NotSignedIn", "may_export", "may_switch_tenant", "router", "signin_redirect"]


async def _view_parameters(
    since: str | None = None,
    until: str | None = None,
    actor: Annotated[list[str] | None, Query()] = None,
    action: Annotated[list[str] | None, Query()] = None,
    outcome: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    ip: str | None = None,
    q: str | None = None,
    tenant: str | None = None,
    cursor: str | None = None,
) -> None:
    """Declares the query parameters of the viewer's URLs (the values are read by ``parse_view``).

    The app rejects any query parameter a route does not declare (``reject_unknown_parameters``);
    declared here once, a misspelt one in a viewer URL is refused like in the API.
    """


router = APIRouter(include_in_schema=False, dependencies=[Depends(_view_parameters)])

PAGE_SIZE = 50
# A live stream ends after this long; EventSource reconnects with Last-Event-ID by itself.
LIVE_SECONDS = 600
AROUND = timedelta(hours=1)


def may_switch_tenant(key: ApiKey) -> bool:
    """Whether the viewer offers this key a tenant switch: the rule resolve_tenant applies."""
    return key.role.any_tenant


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


class NotSignedIn(Exception):
    """No valid session: the app answers with the sign-in page (see ``signin_redirect``)."""


@dataclass(frozen=True, slots=True)
class _Visit:
    """A signed-in request: its session, the view in its URL, the key (role checked) and tenant."""

    session: WebSession
    view: ViewState
    key: ApiKey
    tenant: str


async def _visit(
    request: Request, role: Role = Role.READER, *, query: QueryParams | None = None, filters: bool = False
) -> _Visit:
    """Session, role and tenant of a request, checked by the API's own dependencies.

    NotSignedIn without a valid session; ApiError for a role or tenant the key lacks, or
    (``filters=True``) for filters that do not validate.
    """
    session = _session(request)
    if session is None:
        raise NotSignedIn
    view = await parse_view(query if query is not None else request.query_params)
    key = await require_role(role)(session.key)
    tenant = await resolve_tenant(session.key, view.tenant)
    if filters and view.filters is None:
        raise BadRequest(view.error or "invalid filters", field=view.error_field)
    return _Visit(session, view, key, tenant)


async def signin_redirect(request: Request, exc: Exception) -> Response:
    """The exception handler of NotSignedIn: to the sign-in page, back here afterwards."""
    return _to_signin(request)


def _json(response: Response) -> Any:
    return orjson.loads(bytes(response.body))


def _base_context(request: Request, visit: _Visit) -> dict[str, Any]:
    return {
        "request": request,
        "session": visit.session,
        "key": visit.session.key,
        "tenant": visit.tenant,
        "view": visit.view,
        "may_export": may_export(visit.session.key),
        "may_switch_tenant": may_switch_tenant(visit.session.key),
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
    if not key.role.allows(Role.READER):
        return await signin_page(
            request, form.get("next", "/"), f"This key ({key.role.value}) cannot read the audit log."
        )
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


def _histogram(request: Request, visit: _Visit) -> dict[str, Any]:
    """Matching events per hour (windows up to 3 days) or day, from the /v1/stats route."""
    view = visit.view
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
            visit.key,
            visit.tenant,
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
    # The axis covers whole buckets (ClickHouse floors to the hour or day): from the start of
    # the bucket holding `since` to the end of the one holding `until`, so the first and the
    # current bucket are drawn whole. An axis ending at `until` drew the current bucket
    # mostly right of the chart, out of sight and out of reach of a click.
    axis = _bucket_start(since, bucket)
    axis_end = _bucket_start(until, bucket)
    if axis_end < until:
        axis_end += step
    return {
        "bars": bars,
        "total": body["total"],
        "bucket": bucket,
        "since": axis,
        "until": axis_end,
        "slots": max(round((axis_end - axis) / step), 1),
        "step_seconds": step.total_seconds(),
    }


def _bucket_start(moment: datetime, bucket: str) -> datetime:
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if bucket == "day" else start


def _page_of_events(request: Request, visit: _Visit, view: ViewState, cursor: str | None) -> dict[str, Any]:
    assert view.filters is not None
    return _json(
        events_route.list_events(
            request.app.state.store,
            request.app.state.settings,
            visit.key,
            visit.tenant,
            view.filters,
            order="desc",
            limit=PAGE_SIZE,
            cursor=cursor,
        )
    )


@router.get("/")
async def events_page(request: Request) -> Response:
    try:
        visit = await _visit(request)
    except ApiError as exc:
        return _renderer(request).error(request, exc.status_code, exc.message)
    view = visit.view
    context = _base_context(request, visit)
    context.update(
        presets=PRESETS,
        action_groups=_action_groups(),
        page=None,
        formats=["csv", "json", "ndjson"],
    )
    status = 400  # invalid filters: the form comes back with the message naming the field
    if view.filters is not None:
        try:
            context["page"] = await run_in_threadpool(_page_of_events, request, visit, view, None)
            status = 200
        except ApiError as exc:
            view.error, view.error_field = exc.message, exc.field
    return _renderer(request).page("events.html", context, status_code=status)


@router.get("/ui/rows")
async def more_rows(request: Request, cursor: str | None = None) -> Response:
    try:
        visit = await _visit(request, filters=True)
        page = await run_in_threadpool(_page_of_events, request, visit, visit.view, cursor)
    except ApiError as exc:
        return _renderer(request).fragment("error_row.html", {"message": exc.message})
    return _renderer(request).fragment("rows.html", {"page": page, "view": visit.view})


@router.get("/ui/histogram")
async def histogram(request: Request) -> Response:
    try:
        visit = await _visit(request, filters=True)
        counts = await run_in_threadpool(_histogram, request, visit)
    except ApiError as exc:
        return _renderer(request).fragment("histogram_error.html", {"message": exc.message})
    return _renderer(request).fragment("histogram.html", {"histogram": counts, "view": visit.view})


@router.get("/ui/actors")
async def actor_suggestions(request: Request) -> Response:
    prefix = (request.query_params.get("actor") or "").strip()
    data: list[dict[str, Any]] = []
    visit = None
    with contextlib.suppress(ApiError):  # a type-ahead offers nothing rather than an error
        visit = await _visit(request)
    if visit is not None and prefix and len(prefix) <= 128:
        response = await run_in_threadpool(
            actors_route.suggest_actors,
            request.app.state.store,
            request.app.state.settings,
            visit.key,
            visit.tenant,
            prefix,
            10,
        )
        data = _json(response)["data"]
    return _renderer(request).fragment("actors.html", {"actors": data})


@router.get("/ui/live")
async def live_rows(request: Request) -> Response:
    """``/v1/live`` for the viewer: the same stream, each event rendered as a table row."""
    try:
        visit = await _visit(request, filters=True)
        assert visit.view.filters is not None
        upstream = await live_route.live(
            _as_bearer(request, visit.session),
            request.app.state.store,
            visit.key,
            visit.tenant,
            visit.view.filters,
            max_seconds=LIVE_SECONDS,
            last_event_id=request.headers.get("last-event-id"),
        )
    except NotSignedIn:
        return Response(status_code=401)  # EventSource cannot follow a redirect to a page
    except ApiError as exc:
        return Response(exc.message, status_code=exc.status_code, media_type="text/plain")
    renderer = _renderer(request)

    async def rendered() -> AsyncIterator[bytes]:
        async for chunk in upstream.body_iterator:
            raw = chunk if isinstance(chunk, bytes) else str(chunk).encode()
            yield renderer.sse_rows(raw, visit.view)

    return StreamingResponse(rendered(), media_type="text/event-stream", headers=dict(upstream.headers))


def _as_bearer(request: Request, session: WebSession) -> Request:
    """The same request as if it carried ``Authorization: Bearer <the session's key>``.

    ``/v1/live`` re-verifies the bearer key every second and ends the stream once it is
    revoked; handing it the session's key keeps that rule for the viewer's live mode.
    """
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"]
    headers.append((b"authorization", b"Bearer " + session.token.encode()))
    return Request({**request.scope, "headers": headers}, request.receive)


# --- detail ---------------------------------------------------------------------------


async def _around(request: Request, visit: _Visit, event: dict[str, Any]) -> list[dict[str, Any]]:
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
        sub = ViewState(raw={**window, **extra}, tenant=visit.view.tenant)
        sub.filters = await query_filters(**sub.raw)
        page = await run_in_threadpool(_page_of_events, request, visit, sub, None)
        out.append({"title": title, "page": page, "url": sub.url("/")})
    return out


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _integrity(request: Request, tenant: str, event_id: str) -> EventIntegrity:
    """The event's integrity badge: leaf recomputed from the stored row, checked like ``verify``."""
    store = request.app.state.store
    settings = request.app.state.settings
    try:
        row = store.get_event(tenant, uuid.UUID(event_id))
        if row is None:
            return EventIntegrity("unknown", "cannot check: the event is gone")
        return event_integrity(
            shared_ledger(request.app.state, store),
            public_key(settings),
            origin(settings, tenant),
            tenant,
            row,
        )
    except StoreError as exc:
        return EventIntegrity("unknown", f"cannot check now: {exc}")


@router.get("/events/{event_id}")
async def event_page(request: Request, event_id: str) -> Response:
    renderer = _renderer(request)
    visit = None
    try:
        visit = await _visit(request)
        if len(event_id) > 64:
            raise BadRequest("event_id: not a UUID", field="event_id")
        response = await run_in_threadpool(
            events_route.get_event, request.app.state.store, visit.key, visit.tenant, event_id
        )
        event = _json(response)
        around = await _around(request, visit, event)
        integrity = await run_in_threadpool(_integrity, request, visit.tenant, event_id)
    except ApiError as exc:
        # Another tenant's event is "not found", exactly like the API says.
        message = "Event not found in this tenant." if exc.status_code == 404 else exc.message
        return renderer.error(request, exc.status_code, message, visit.session if visit else None)
    context = _base_context(request, visit)
    context.update(
        event=event,
        raw_json=orjson.dumps(event, option=orjson.OPT_INDENT_2).decode(),
        around=around,
        category=categorize(event["action"]),
        integrity=integrity,
    )
    return renderer.page("event.html", context)


# --- exports --------------------------------------------------------------------------


@router.get("/exports")
async def exports_page(request: Request) -> Response:
    renderer = _renderer(request)
    session = _session(request)
    try:
        visit = await _visit(request, Role.EXPORTER)
        history = await exports_route.list_exports(request, visit.key, visit.tenant, limit=50, status=None)
    except ApiError as exc:
        return renderer.error(request, exc.status_code, exc.message, session)
    jobs = [j.model_dump() for j in history.data]
    # "Created by": the key's name where the key is known (the job stores its key_id).
    keys = request.app.state.keys
    names = await run_in_threadpool(lambda: {k: keys.get(k) for k in {j["created_by"] for j in jobs}})
    for j in jobs:
        known = names.get(j["created_by"])
        j["created_by_name"] = known.name if known is not None and known.name else j["created_by"]
    context = _base_context(request, visit)
    context.update(jobs=jobs, active=any(j["status"] in ("pending", "running") for j in jobs))
    # htmx polls the table alone while a job is pending or running.
    template = "exports_table.html" if request.headers.get("hx-request") else "exports.html"
    return renderer.page(template, context)


@router.post("/exports")
async def create_export(request: Request) -> Response:
    session = _session(request)
    if session is None:
        raise NotSignedIn
    form = await _form(request)
    if not csrf_ok(session.csrf, form.get("csrf_token")):
        return Response("CSRF token missing or wrong", status_code=403, media_type="text/plain")
    renderer = _renderer(request)
    try:
        # The filters travel in the form as the query string of the view they came from.
        visit = await _visit(request, Role.EXPORTER, query=QueryParams(form.get("view", "")), filters=True)
        body = exports_route.ExportCreate.model_validate(
            {
                "name": form.get("name", "").strip() or "viewer export",
                "format": form.get("format", "csv"),
                "filters": dict(visit.view.raw),
            }
        )
        await exports_route.create_export(request, body, visit.key, visit.tenant, request.app.state.settings)
    except ApiError as exc:
        return renderer.error(request, exc.status_code, exc.message, session)
    except ValidationError as exc:  # a name too long, an unknown format
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "export"
        return renderer.error(request, 400, f"{field}: {err['msg']}", session)
    view = visit.view
    return RedirectResponse(view.url("/exports", **dict.fromkeys(view.raw)), status_code=303)


@router.get("/exports/{export_id}/download")
async def download(request: Request, export_id: str) -> Response:
    try:
        visit = await _visit(request, Role.EXPORTER)
        # The API's own route: same checks, same export.downloaded audit record.
        return await exports_route.download_export(
            request, visit.key, visit.tenant, export_id[:64], gzip_file=False
        )
    except ApiError as exc:
        return _renderer(request).error(request, exc.status_code, exc.message, _session(request))
