"""Jinja2 rendering for the viewer: pages, htmx fragments, and live rows as SSE.

Autoescaping is on for every template, so any event field (``<script>``, quotes,
``javascript:`` text) is rendered as text. No template writes an event value into
an attribute that the browser would execute (no ``href``/``on*`` from event data):
links are built from our own URLs, with event values only in their query string.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from auditstream.events.catalog import describe

__all__ = ["STATIC_DIR", "Renderer"]

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _as_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _jsonish(value: Any) -> str:
    """A ``changes`` value as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _activity(event: dict[str, Any]) -> str:
    resource = event.get("resource") or {}
    return describe(event["action"], resource.get("name", ""), resource.get("id", ""))


class Renderer:
    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["activity"] = _activity
        self.env.filters["human_bytes"] = _human_bytes
        self.env.filters["as_datetime"] = _as_datetime
        self.env.filters["jsonish"] = _jsonish
        self.env.globals["static"] = self._static_url
        self._versions: dict[str, str] = {}

    def _static_url(self, name: str) -> str:
        """``/static/<name>?v=<content hash>``: cacheable for long, renewed when the file changes."""
        version = self._versions.get(name)
        if version is None:
            version = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
            self._versions[name] = version
        return f"/static/{name}?v={version}"

    def page(self, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    fragment = page

    def error(self, request: Request, status_code: int, message: str, session: Any = None) -> HTMLResponse:
        return self.page(
            "error.html",
            {"request": request, "session": session, "status": status_code, "message": message},
            status_code=status_code,
        )

    def sse_rows(self, chunk: bytes, view: Any) -> bytes:
        """Re-encode a ``/v1/live`` SSE chunk: each ``audit`` message becomes a rendered row.

        Comments (``: keepalive``) pass through; the ``id`` (a feed cursor) is kept so
        the browser's ``Last-Event-ID`` resumes where it stopped.
        """
        out: list[bytes] = []
        for message in chunk.split(b"\n\n"):
            if not message.strip():
                continue
            fields: dict[bytes, bytes] = {}
            for line in message.split(b"\n"):
                name, _, value = line.partition(b": ")
                fields[name] = value
            if b"data" not in fields:
                out.append(message + b"\n\n")
                continue
            event = orjson.loads(fields[b"data"])
            html = self.env.get_template("row.html").render(e=event, view=view)
            data = b"".join(b"data: " + line.encode() + b"\n" for line in html.strip().splitlines())
            out.append(b"id: " + fields.get(b"id", b"") + b"\nevent: row\n" + data + b"\n")
        return b"".join(out)
