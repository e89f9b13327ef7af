"""Liveness, readiness and metrics: unauthenticated, for orchestrators and Prometheus."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from auditstream.api.deps import StoreDep
from auditstream.api.metrics import CONTENT_TYPE_LATEST
from auditstream.api.schemas import Health, Readiness

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    # Deliberately checks nothing else: a liveness probe that fails when ClickHouse is
    # down would get a healthy process restarted for someone else's outage.
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready; `reasons` says why."}},
    summary="The store answers and the processor (if embedded) is running",
)
def readyz(request: Request, store: StoreDep) -> Response:
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    try:
        store_ok = bool(store.ping())
    except Exception as exc:  # a failing probe is a "not ready" answer, not a 500
        log.warning("store ping failed: %s", exc)
        store_ok = False
    checks["store"] = "ok" if store_ok else "unreachable"
    if not store_ok:
        reasons.append("store: ClickHouse does not answer")

    readiness = request.app.state.readiness
    if readiness is not None:
        try:
            state = dict(readiness())
        except Exception as exc:
            log.warning("readiness callback failed: %s", exc)
            state = {"ready": False, "error": type(exc).__name__}
        checks["processor"] = state
        if not state.get("ready"):
            detail = state.get("processor") or state.get("error") or "not ready"
            reasons.append(f"processor: {detail}")

    body = Readiness(ready=not reasons, checks=checks, reasons=reasons)
    return Response(
        body.model_dump_json(), status_code=200 if not reasons else 503, media_type="application/json"
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
