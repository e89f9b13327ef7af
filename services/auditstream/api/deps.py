"""FastAPI dependencies, exposed as ``Annotated`` aliases.

Dependencies that only compute are ``async def``: FastAPI runs a sync dependency in
the thread pool, and a pool hop per dependency per request is measurable latency.
Only ``current_key`` (which may read SQLite) stays a plain ``def``.

Routes declare what they need (``store: StoreDep``, ``key: ReaderKey``,
``tenant: TenantDep``) and never reach into ``app.state`` themselves. Everything a
dependency hands out was put on ``app.state`` by ``create_app``: the app owns no
global state, so several apps (tests, embedded mode) can live in one process.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Query, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from auditstream.api.errors import BadRequest, Forbidden, Unauthorized, Unprocessable
from auditstream.api.keys import ApiKey, CachedVerifier, Role
from auditstream.api.timeparse import parse_time
from auditstream.config import Settings
from auditstream.store import EventFilter, Store

__all__ = [
    "DETAILS_KEY_RE",
    "DETAILS_PREFIX",
    "AdminKey",
    "CurrentKey",
    "DetailsFilters",
    "ExporterKey",
    "FiltersDep",
    "IngestKey",
    "QueryFilters",
    "ReaderKey",
    "SettingsDep",
    "StoreDep",
    "TenantDep",
    "details_filters",
    "key_still_valid",
    "reject_unknown_parameters",
    "require_role",
]


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_verifier(request: Request) -> CachedVerifier:
    return request.app.state.verifier


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
VerifierDep = Annotated[CachedVerifier, Depends(get_verifier)]


# Declares the bearer scheme in OpenAPI (every route that authenticates lists it, so
# "Authorize" in /docs works). auto_error=False: the header is parsed below, so a
# missing or malformed one gets our own 401 body rather than FastAPI's.
_BEARER = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="An API key: `ask_<key_id>_<secret>`."
)


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <api key>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("malformed Authorization header; expected 'Bearer <api key>'")
    return token


def current_key(
    request: Request,
    verifier: VerifierDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> ApiKey:
    """The key from ``Authorization: Bearer <key>``; 401 when absent, malformed, unknown or revoked.

    A plain ``def`` so FastAPI runs it in the thread pool: a cache miss reads SQLite.
    The messages do not distinguish unknown from revoked keys on purpose.
    """
    key = verifier.verify(_bearer_token(request))
    if key is None:
        raise Unauthorized("invalid or revoked API key")
    request.state.api_key = key  # for access logs
    return key


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def key_still_valid(request: Request) -> bool:
    """Whether the key that opened this request still verifies (not revoked since).

    For long-lived responses (``/v1/live``): re-checks through the same short cache as
    every request, so a revoked key is noticed within ``KEY_CACHE_SECONDS`` of a call.
    Reads SQLite on a cache miss: call it from a worker thread.
    """
    try:
        token = _bearer_token(request)
    except Unauthorized:
        return False
    verifier: CachedVerifier = request.app.state.verifier
    return verifier.verify(token) is not None


def require_role(role: Role) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency passing the current key on when its role includes the right ``role``, else 403."""

    async def dependency(key: CurrentKey) -> ApiKey:
        if not key.role.allows(role):
            raise Forbidden(f"this operation needs the {role.value} role; the key has {key.role.value}")
        return key

    dependency.__name__ = f"require_{role.value}"
    return dependency


ReaderKey = Annotated[ApiKey, Depends(require_role(Role.READER))]
IngestKey = Annotated[ApiKey, Depends(require_role(Role.INGEST))]
ExporterKey = Annotated[ApiKey, Depends(require_role(Role.EXPORTER))]
AdminKey = Annotated[ApiKey, Depends(require_role(Role.ADMIN))]


_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


async def resolve_tenant(
    key: CurrentKey,
    tenant: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Operator keys only: act on another tenant. Defaults to the key's tenant.",
        ),
    ] = None,
) -> str:
    """The tenant a request acts on: always the key's, unless an operator key picks another one.

    A tenant admin administers its own tenant only; reaching into another one needs
    the ``operator`` role, created on purpose (``auditstream keys create --role operator``).
    """
    if tenant is None or tenant == key.tenant_id:
        return key.tenant_id
    if not key.role.any_tenant:
        raise Forbidden(
            f"tenant: this key ({key.role.value}) may only act on its own tenant "
            f"{key.tenant_id}; other tenants need an operator key",
            field="tenant",
        )
    if not _TENANT_RE.match(tenant):
        raise BadRequest("tenant: not a valid tenant id", field="tenant")
    return tenant


TenantDep = Annotated[str, Depends(resolve_tenant)]


# --- event filters shared by /v1/events and /v1/export -----------------------

# The event contract's action rule, and its prefix-wildcard form (`config.*`, `user.login.*`).
_ACTION_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_ACTION_PREFIX_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*\.\*$")
MAX_VALUES = 100  # per repeatable parameter: keeps the generated SQL small
# details.KEY=VALUE: the key names producers use (method, region, github.org, ...). Anything
# else - quotes, brackets, spaces, SQL - is refused by name; the key is a bound parameter anyway.
DETAILS_PREFIX = "details."
DETAILS_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_DETAILS_KEYS = 16
MAX_DETAILS_VALUE = 1024
# (key, values) pairs, sorted: a details value must be one of the values (strings, exact).
DetailsFilters = tuple[tuple[str, tuple[str, ...]], ...]
DEFAULT_WINDOW = timedelta(days=7)

Outcome = Literal["success", "failure", "unknown"]


@dataclass(frozen=True, slots=True)
class QueryFilters:
    """The filter parameters of one request, validated but with the time window unresolved.

    The window stays as text until a route resolves it, because a cursor may pin it
    to the window of the first page (see ``cursor.py``); ``raw`` is what the
    cursor's filter hash covers.
    """

    since: str | None
    until: str | None
    actors: list[str]
    actions: list[str]
    resource_type: str | None
    resource_id: str | None
    outcome: str | None
    ip: str | None = None
    q: str | None = None
    details: DetailsFilters = ()

    @property
    def raw(self) -> dict[str, str | list[str] | None]:
        return {
            "since": self.since,
            "until": self.until,
            "actor": self.actors,
            "action": self.actions,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "outcome": self.outcome,
            "ip": self.ip,
            "q": self.q,
            # Only when set: a cursor of a query without details keeps the hash it had.
            **({"details": [f"{k}={v}" for k, vs in self.details for v in vs]} if self.details else {}),
        }

    def resolve_window(
        self, now: datetime, max_window_days: int, retention_days: int | None = None
    ) -> tuple[datetime, datetime]:
        """(since, until) in UTC; default: the 7 days up to now. 400 naming the faulty bound.

        With ``retention_days``, a ``since`` before the retention horizon is refused
        with a message saying how long data is kept, rather than silently answering
        with less than was asked for.
        """
        try:
            until = parse_time(self.until, now=now) if self.until else now
        except ValueError as exc:
            raise BadRequest(f"until: {exc}", field="until") from None
        try:
            since = parse_time(self.since, now=now) if self.since else until - DEFAULT_WINDOW
        except ValueError as exc:
            raise BadRequest(f"since: {exc}", field="since") from None
        if retention_days is not None and since < now - timedelta(days=retention_days):
            raise BadRequest(
                f"since: events are kept {retention_days} days; since may be at most "
                f"{retention_days} days ago ({(now - timedelta(days=retention_days)).isoformat()})",
                field="since",
                code="out_of_retention",
            )
        check_window(since, until, max_window_days)
        return since, until

    def to_event_filter(self, tenant_id: str, since: datetime, until: datetime) -> EventFilter:
        return EventFilter(
            tenant_id=tenant_id,
            since=since,
            until=until,
            actors=list(self.actors),
            actions=list(self.actions),
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            outcome=self.outcome,
            ip=self.ip,
            text=self.q,
            details=self.details,
        )


def check_window(since: datetime, until: datetime, max_window_days: int) -> None:
    if since >= until:
        raise BadRequest("since: must be earlier than until", field="since")
    if until - since > timedelta(days=max_window_days):
        raise BadRequest(
            f"since: the time window may span at most {max_window_days} days; narrow since/until",
            field="since",
        )


def _check_count(name: str, values: list[str]) -> None:
    if len(values) > MAX_VALUES:
        raise BadRequest(f"{name}: at most {MAX_VALUES} values", field=name)


def details_filters(pairs: Iterable[tuple[str, str]]) -> DetailsFilters:
    """``details.KEY=VALUE`` pairs (repeat one for several values, any of them) -> DetailsFilters.

    Pairs whose name does not start with ``details.`` are ignored. A bad key, an empty or
    overlong value, or too many keys/values is a 422 naming the parameter. Values are
    compared exactly, as strings (no wildcards, no comma splitting: a value may hold commas).
    Shared by the query parameters of /v1/events (and /v1/stats, /v1/export) and alert rules.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if not name.startswith(DETAILS_PREFIX):
            continue
        key = name[len(DETAILS_PREFIX) :]
        shown = name[:64]
        if not DETAILS_KEY_RE.match(key):
            raise Unprocessable(
                f"{shown}: not a valid details key (1-128 of A-Z a-z 0-9 _ . : -)", field=shown
            )
        if not isinstance(value, str) or not value or len(value) > MAX_DETAILS_VALUE:
            raise Unprocessable(
                f"{shown}: expected a value of 1 to {MAX_DETAILS_VALUE} characters", field=shown
            )
        grouped.setdefault(key, []).append(value)
        _check_count(shown, grouped[key])
    if len(grouped) > MAX_DETAILS_KEYS:
        raise Unprocessable(f"details: at most {MAX_DETAILS_KEYS} keys", field="details")
    return tuple(sorted((k, tuple(sorted(set(v)))) for k, v in grouped.items()))


async def details_params(request: Request) -> DetailsFilters:
    """The ``details.KEY`` query parameters of a request (not declarable one by one)."""
    return details_filters(request.query_params.multi_items())


async def query_filters(
    since: Annotated[
        str | None,
        Query(max_length=64, description="RFC 3339 with offset, relative (-24h, -30m, -7d) or `now`."),
    ] = None,
    until: Annotated[
        str | None, Query(max_length=64, description="Same forms as `since`; default now.")
    ] = None,
    actor: Annotated[list[str] | None, Query(description="Actor id; repeat for several.")] = None,
    action: Annotated[
        list[str] | None,
        Query(description="Exact (`user.login`) or prefix (`config.*`); repeat or comma-separate."),
    ] = None,
    resource_type: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    resource_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    ip: Annotated[
        str | None,
        Query(max_length=64, description="Source IP (actor.ip): an address or a CIDR, IPv4 or IPv6."),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=256,
            description="Free text: case-insensitive substring of actor id/name/email, action, "
            "resource type/id/name, reason or a details value.",
        ),
    ] = None,
    # details.KEY=VALUE query parameters (see details_filters); a caller that is not FastAPI
    # (alert rules, export jobs) passes them already parsed, or not at all.
    details: Annotated[DetailsFilters, Depends(details_params)] = (),
) -> QueryFilters:
    actors = [a for a in (actor or []) if a]
    _check_count("actor", actors)
    for a in actors:
        if len(a) > 256:
            raise BadRequest("actor: at most 256 characters", field="actor")
    actions = [part.strip() for value in (action or []) for part in value.split(",") if part.strip()]
    _check_count("action", actions)
    for a in actions:
        if len(a) > 128 or not (_ACTION_RE.match(a) or _ACTION_PREFIX_RE.match(a)):
            raise BadRequest(
                f"action: {a[:40]!r} is neither an action (scan.created) nor a prefix (config.*)",
                field="action",
            )
    if ip is not None:
        try:
            network = ipaddress.ip_network(ip.strip(), strict=False)
        except ValueError:
            raise BadRequest("ip: expected an IP address or a CIDR network", field="ip") from None
        ip = str(network) if "/" in ip else str(network.network_address)
    if q is not None:
        q = q.strip() or None
        if q is not None and any(ord(ch) < 32 for ch in q):
            raise BadRequest("q: control characters are not allowed", field="q")
    return QueryFilters(
        since=since,
        until=until,
        # Sorted and deduplicated: the same filter written in another order is the same query.
        actors=sorted(set(actors)),
        actions=sorted(set(actions)),
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        ip=ip,
        q=q,
        details=details,
    )


FiltersDep = Annotated[QueryFilters, Depends(query_filters)]


# --- unknown query parameters ------------------------------------------------------


# Stands in the declared names for the details.KEY parameters of routes that take them.
_DETAILS_WILDCARD = DETAILS_PREFIX + "*"


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    if dependant.call is details_params:
        names.add(_DETAILS_WILDCARD)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


# id(route) -> (route, names): routes are not hashable; the identity check keeps an id
# reused by another app's route (tests build many apps) from answering with stale names.
_DECLARED: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def _declared_query_parameters(route: APIRoute) -> frozenset[str]:
    """Every query parameter the route and its dependencies declare (by alias, as sent)."""
    hit = _DECLARED.get(id(route))
    if hit is not None and hit[0] is route:
        return hit[1]
    names = frozenset(_query_names(route.dependant))
    if len(_DECLARED) > 10_000:  # bounded whatever creates apps
        _DECLARED.clear()
    _DECLARED[id(route)] = (route, names)
    return names


async def reject_unknown_parameters(request: Request) -> None:
    """400 naming the first query parameter the route does not declare.

    Installed once for the whole app (``create_app``), driven by each route's declared
    parameters, so a new route or filter needs nothing here. Why: a misspelt filter
    (``?actions=``, ``?ouctome=``) would otherwise be ignored and answer *unfiltered*
    data that looks like a filtered result.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared_query_parameters(route)
    for name in request.query_params:
        if name.startswith(DETAILS_PREFIX) and _DETAILS_WILDCARD in declared:
            continue  # checked by details_params, by name
        if name not in declared:
            shown = name[:64]
            accepted = ", ".join(sorted(declared)) or "none"
            raise BadRequest(
                f"{shown}: unknown query parameter; this route accepts: {accepted}",
                field=shown,
                code="unknown_parameter",
            )
