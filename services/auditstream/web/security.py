"""Security headers of the viewer's responses (pages, fragments, static files).

The Content-Security-Policy allows scripts, styles, images and connections from the
app's own origin only: no inline script or style, no eval, no plugins, no framing
(``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` for older browsers), forms
post only to the app. The API (``/v1``) and Swagger UI (``/docs``, which loads its
own assets) keep their own headers.

Pages and static files are also gzip-compressed here (the first view is mostly htmx
and the table): not the API, whose exports negotiate compression themselves, nor
the live stream and export downloads of the viewer.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "SecurityHeadersMiddleware", "is_web_path"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'none'; object-src 'none'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_NOT_WEB = ("/v1/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics")


def is_web_path(path: str) -> bool:
    return not path.startswith(_NOT_WEB)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_web_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in _HEADERS if n not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        path = scope["path"]
        plain = path.startswith("/ui/live") or path.endswith("/download")
        await (self.app if plain else self.gzip)(scope, receive, send_with_headers)
