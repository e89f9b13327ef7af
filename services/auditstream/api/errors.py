"""One error shape for every failure the API reports.

Every error body is ``{"error": {"code": ..., "message": ..., "field": ... | null}}``.
Clients (SIEM connectors, the CLI) branch on ``code`` and show ``field`` next to the
offending parameter, so FastAPI's own validation errors and Starlette's HTTP errors
are translated into the same shape instead of leaking their native formats.

Exception tree::

    Exception
    └── ApiError                 -- any error the API reports on purpose
        ├── BadRequest           400 invalid_parameter (names the parameter)
        ├── Unprocessable        422 validation_error (names the parameter)
        ├── Unauthorized         401 unauthorized
        ├── Forbidden            403 forbidden
        └── NotFound             404 not_found

``auditstream.store.StoreUnavailable`` (ClickHouse down or overloaded) answers 503
``unavailable`` with ``Retry-After``: a transient outage, not a bug in the request.
``auditstream.store.QueryRejected`` (the engine refused a value of the request, e.g. a
date it cannot represent) answers 400 ``invalid_parameter``: retrying cannot help.
The engine's own message is logged, not echoed.
Anything else that escapes a route is a bug: ``ErrorMiddleware`` logs it with its
traceback and answers 500 with a generic message, never the traceback itself.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditstream.store import QueryRejected, StoreUnavailable

__all__ = [
    "ApiError",
    "BadRequest",
    "ErrorMiddleware",
    "Forbidden",
    "NotFound",
    "Unauthorized",
    "Unprocessable",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

# Starlette raises HTTPException for routing failures (404 unknown path, 405 method);
# these codes keep them in the same vocabulary as our own errors.
_HTTP_CODES: dict[int, str] = {
    400: "invalid_parameter",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the API reports on purpose, with its HTTP status and stable code."""

    status_code: int = 400
    code: str = "invalid_parameter"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.headers = headers


class BadRequest(ApiError):
    status_code = 400
    code = "invalid_parameter"


class Unprocessable(ApiError):
    status_code = 422
    code = "validation_error"


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        # RFC 6750: a 401 for bearer auth names the scheme so clients know what to send.
        super().__init__(message, field=field, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


def error_response(
    status_code: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message, "field": field}})
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def _validation_field(loc: tuple[Any, ...] | list[Any]) -> str | None:
    # loc is e.g. ("query", "limit") or ("body", "actor", "id"): drop the location kind.
    parts = (
        [str(p) for p in loc[1:]] if loc and loc[0] in {"query", "path", "header", "cookie", "body"} else []
    )
    return ".".join(parts) or None


async def _api_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.field, exc.headers)


async def _validation_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = tuple(first.get("loc", ()))
    field = _validation_field(loc)
    # A malformed query/path/header parameter is a bad request (400); a body that parses
    # but breaks the schema is unprocessable (422), the usual REST split.
    if loc and loc[0] == "body":
        status, code = 422, "validation_error"
    else:
        status, code = 400, "invalid_parameter"
    message = str(first.get("msg", "invalid value"))
    if field:
        message = f"{field}: {message}"
    return error_response(status, code, message, field)


async def _http_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, detail, None, dict(exc.headers or {}))


async def _store_unavailable_handler(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "unavailable", "the event store is unavailable; retry shortly", None, {"Retry-After": "5"}
    )


async def _query_rejected_handler(request: Request, exc: Exception) -> Response:
    log.info("store refused the values of %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        400,
        "invalid_parameter",
        "the event store cannot evaluate this request with these values; check the parameters",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(QueryRejected, _query_rejected_handler)
    app.add_exception_handler(StoreUnavailable, _store_unavailable_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)


class ErrorMiddleware:
    """Turn an unexpected exception into a logged, generic 500.

    Starlette's ``ServerErrorMiddleware`` would also answer 500, but it re-raises
    afterwards (and in debug mode renders the traceback); a pure ASGI middleware lets
    us log once and keep internals out of the body. If the response already started
    (a streamed export failing midway) nothing can be sent any more: we re-raise so
    the server drops the connection and the client sees a truncated transfer rather
    than a silently short, seemingly complete file.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(500, "internal_error", "internal server error")
            await response(scope, receive, send)
