"""Prometheus metrics for the API: request count and latency per route.

Each app gets its own ``CollectorRegistry`` so that several apps in one process
(tests, or the embedded mode next to the processor's own metrics) never collide on
metric names. The route label is the route *template* (``/v1/events/{event_id}``),
never the raw path, so cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "ApiMetrics", "MetricsMiddleware"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "auditstream_api_requests",
            "HTTP requests handled, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "auditstream_api_request_duration_seconds",
            "Time to the end of the response body (streamed exports included), by route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        # The app's own metrics, then the process-wide ones: the processor's counters
        # (embedded mode) and the process collectors (CPU, memory, open files).
        return generate_latest(self.registry) + generate_latest(REGISTRY)


class MetricsMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware) so streamed bodies are timed to their end."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before responding, the server answers 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router stores the matched route in the (shared) scope dict.
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
