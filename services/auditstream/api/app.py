"""The FastAPI application factory.

``create_app`` wires settings, an opened ``Store``, the key store, metrics and the
routers together and returns the app. It never opens or closes the store: the
caller owns it, because in embedded mode (chDB) the processor and the API share
one process and one engine, and only the caller knows when both are done::

    store = Store(settings.resolved_clickhouse_dsn, settings.clickhouse_database,
                  settings.retention_days)
    store.open()
    app = create_app(settings, store, readiness=processor.readiness)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port)
    store.close()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI

import auditstream
from auditstream.api.background import install_background
from auditstream.api.deps import reject_unknown_parameters
from auditstream.api.docs import install_docs
from auditstream.api.errors import ErrorMiddleware, install_error_handlers
from auditstream.api.keys import CachedVerifier, KeyStore
from auditstream.api.metrics import ApiMetrics, MetricsMiddleware
from auditstream.api.proxies import TrustedProxies, TrustedProxyMiddleware, parse_networks
from auditstream.api.routes import (
    actors,
    alerts,
    checkpoints,
    events,
    export,
    exports,
    feed,
    health,
    ingest,
    live,
    stats,
)
from auditstream.config import Settings
from auditstream.store import Store

__all__ = ["KEY_CACHE_SECONDS", "create_app"]

# How long a verified (or refused) key is remembered: the most a revoked key keeps working.
KEY_CACHE_SECONDS = 2.0


def create_app(
    settings: Settings,
    store: Store,
    *,
    readiness: Callable[[], dict[str, Any]] | None = None,
    query_routes: bool = True,
) -> FastAPI:
    """Build the query API over an opened ``store``.

    ``readiness`` is the processor's status callback in embedded mode, e.g.
    ``lambda: {"processor": "running", "ready": True}``; ``/readyz`` fails while it
    reports ``ready`` false. ``query_routes=False`` serves only /healthz, /readyz
    and /metrics: what a processor running alone exposes to its orchestrator.
    """
    app = FastAPI(
        title="auditstream",
        version=getattr(auditstream, "__version__", "0.1.0"),
        description="Query API of the auditstream audit log. Send `Authorization: Bearer <key>`.",
        # /docs and /redoc are served from local assets (install_docs), not a CDN.
        docs_url=None,
        redoc_url=None,
        # Every route: a query parameter it does not declare is a 400 naming it.
        dependencies=[Depends(reject_unknown_parameters)],
    )
    keys = KeyStore(settings.resolved_keys_path)
    metrics = ApiMetrics()
    app.state.settings = settings
    app.state.store = store
    app.state.keys = keys
    app.state.verifier = CachedVerifier(keys, ttl_seconds=KEY_CACHE_SECONDS)
    app.state.readiness = readiness
    app.state.metrics = metrics

    # Export jobs and the Kafka publisher (ingest, audit trail): started and stopped with the app.
    app.router.lifespan_context = install_background(app, settings, store, run_jobs=query_routes)

    install_error_handlers(app)
    # add_middleware wraps: the last added runs first. Metrics outside errors, so the
    # 500s that ErrorMiddleware produces are counted too.
    app.add_middleware(ErrorMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Outermost: every layer (metrics, logs, routes) sees the same client address.
    app.add_middleware(
        TrustedProxyMiddleware, proxies=TrustedProxies(parse_networks(settings.trusted_proxies))
    )

    if query_routes:
        app.include_router(events.router)
        app.include_router(export.router)
        app.include_router(stats.router)
        app.include_router(feed.router)
        app.include_router(live.router)
        app.include_router(exports.router)
        app.include_router(ingest.router)
        app.include_router(checkpoints.router)
        app.include_router(alerts.router)
        app.include_router(actors.router)
    app.include_router(health.router)
    install_docs(app)
    if query_routes:
        # The web viewer at / (imported here: a processor running alone never loads it).
        from auditstream.web import install_web

        install_web(app, settings)
    return app
