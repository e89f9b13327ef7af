"""The analyst's web console, served by the API process at ``/`` (the API stays under ``/v1``).

Server-rendered Jinja2 pages with htmx (vendored under ``static/vendor``), reading
through the ``/v1`` route functions (see ``routes.py``). ``install_web`` mounts it.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from auditstream.config import Settings
from auditstream.web.render import STATIC_DIR, Renderer
from auditstream.web.routes import NotSignedIn, router, signin_redirect
from auditstream.web.security import SecurityHeadersMiddleware
from auditstream.web.session import SessionCodec, load_secret

__all__ = ["install_web"]


def install_web(app: FastAPI, settings: Settings) -> None:
    """Routes, static files, session codec and security headers of the viewer."""
    app.state.web_renderer = Renderer()
    app.state.web_sessions = SessionCodec(
        load_secret(settings.data_dir), max_age_seconds=int(settings.web_session_hours * 3600)
    )
    app.include_router(router)
    app.add_exception_handler(NotSignedIn, signin_redirect)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeadersMiddleware)
