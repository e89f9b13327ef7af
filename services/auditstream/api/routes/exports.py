"""``/v1/exports``: asynchronous export jobs — create, history, status, download.

Exporter role (an operator key may pick another tenant with ``tenant=``). A job id of
another tenant answers 404 exactly like an id that does not exist, never 403, so
ids cannot be probed. Creating a job and downloading its file are written to the
audit log first (``export.created``, ``export.downloaded``; see ``audit_trail.py``):
when that record cannot be published the request answers 503 and nothing happens.

``filters`` takes the parameters of ``GET /v1/events`` (the model is derived from
``deps.query_filters``, so a filter added there is accepted here too), and ``details``
as an object ``{"KEY": "VALUE" | ["VALUE", ...]}`` for the ``details.KEY=VALUE``
parameters (checked by the same ``deps.details_filters``); the time window is resolved
when the job is created and kept with it.
"""

from __future__ import annotations

import typing
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.params import Param
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response, StreamingResponse

from auditstream.api import audit_trail
from auditstream.api.deps import (
    DETAILS_PREFIX,
    ExporterKey,
    QueryFilters,
    SettingsDep,
    TenantDep,
    details_filters,
    query_filters,
)
from auditstream.api.errors import ApiError, BadRequest, NotFound
from auditstream.api.formats import FORMATS, media_type
from auditstream.api.jobs import ExportRunner, JobStore, job_file
from auditstream.api.schemas import ERROR_RESPONSES, ErrorBody

__all__ = ["ExportFilters", "build_filter", "router"]

router = APIRouter(prefix="/v1", tags=["exports"])

Status = Literal["pending", "running", "completed", "failed"]
_GZIP_CHUNK = 256 * 1024


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


def _filter_fields() -> dict[str, Any]:
    """The query parameters of ``query_filters`` as pydantic fields (same constraints)."""
    hints = typing.get_type_hints(query_filters, include_extras=True)
    fields: dict[str, Any] = {}
    for name, hint in hints.items():
        if name == "return" or typing.get_origin(hint) is not Annotated:
            continue
        if any(isinstance(m, Param) for m in typing.get_args(hint)[1:]):
            fields[name] = (hint, None)
    # details.KEY=VALUE is not one declarable parameter: in a JSON body it is an object.
    fields["details"] = (
        dict[str, str | list[str]] | None,
        Field(default=None, description='details.KEY=VALUE filters: {"KEY": "VALUE" or ["VALUE", ...]}.'),
    )
    return fields


async def _parse_filters(raw: dict[str, Any]) -> QueryFilters:
    """A job's stored filters -> QueryFilters, through the same checks as the query string."""
    rest = dict(raw)
    details = rest.pop("details", None) or {}
    pairs = [
        (DETAILS_PREFIX + key, value)
        for key, values in details.items()
        for value in (values if isinstance(values, list) else [values])
    ]
    return await query_filters(**rest, details=details_filters(pairs))


ExportFilters: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ExportFilters", __config__=ConfigDict(extra="forbid"), **_filter_fields()
)


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="A label shown in the history.")
    format: Literal["ndjson", "json", "csv"] = "ndjson"
    filters: ExportFilters = Field(  # type: ignore[valid-type]
        default_factory=ExportFilters, description="The parameters of GET /v1/events."
    )
    include_proof: bool = Field(
        default=False,
        description="ndjson only: end the file with a proof line (checkpoint, leaf indices, audit paths),"
        " as GET /v1/export?include_proof=true, so the file verifies alone with `auditstream verify`.",
    )


class ExportWindow(BaseModel):
    since: str
    until: str


class ExportJob(BaseModel):
    id: str
    tenant_id: str
    name: str
    format: str
    filters: dict[str, Any]
    window: ExportWindow = Field(description="The time window, resolved when the job was created.")
    status: Status
    rows_written: int
    rows_total: int | None = Field(description="Matching rows, counted when the job started.")
    progress: float = Field(ge=0, le=1)
    size_bytes: int | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    created_by: str = Field(description="key_id of the key that created the job.")
    include_proof: bool = Field(description="The file ends with a proof line (see POST /v1/exports).")


class ExportJobList(BaseModel):
    data: list[ExportJob]
    count: int


def build_filter(raw: dict[str, Any], tenant_id: str, since: datetime, until: datetime) -> Any:
    """A stored job's filters -> ``EventFilter`` (runs on a worker thread)."""
    from auditstream.api.jobs import run_coroutine

    parsed = run_coroutine(_parse_filters(raw))
    return parsed.to_event_filter(tenant_id, since, until)


def to_view(job: dict[str, Any]) -> ExportJob:
    total = job["rows_total"]
    if job["status"] == "completed":
        progress = 1.0
    elif total:
        progress = min(job["rows_written"] / total, 0.99)
    else:
        progress = 0.0
    return ExportJob(
        id=job["id"],
        tenant_id=job["tenant_id"],
        name=job["name"],
        format=job["format"],
        filters=job["filters"],
        window=ExportWindow(since=job["window_since"], until=job["window_until"]),
        status=job["status"],
        rows_written=job["rows_written"],
        rows_total=total,
        progress=round(progress, 4),
        size_bytes=job["size_bytes"],
        error=job["error"],
        created_at=job["created_at"],
        started_at=job["started_at"],
        finished_at=job["finished_at"],
        created_by=job["created_by"],
        include_proof=job["include_proof"],
    )


def _jobs(request: Request) -> JobStore:
    return request.app.state.export_jobs


def _runner(request: Request) -> ExportRunner:
    return request.app.state.export_runner


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


_NOT_FOUND = {404: {"model": ErrorBody, "description": "No such export job in this tenant."}}


@router.post(
    "/exports",
    status_code=202,
    response_model=ExportJob,
    responses={**ERROR_RESPONSES, 503: {"model": ErrorBody, "description": "The audit trail is down."}},
    summary="Create an asynchronous export job (exporter role)",
)
async def create_export(
    request: Request, body: ExportCreate, key: ExporterKey, tenant: TenantDep, settings: SettingsDep
) -> ExportJob:
    if body.include_proof and body.format != "ndjson":
        # The same answer as GET /v1/export: only NDJSON can carry the proof line.
        raise BadRequest("include_proof: only with format=ndjson", field="include_proof")
    raw = body.filters.model_dump(exclude_none=True)
    try:
        parsed = await _parse_filters(raw)
        # Same retention check as GET /v1/export: a window reaching past it is refused,
        # not silently answered with less than was asked for.
        since, until = parsed.resolve_window(
            datetime.now(UTC), settings.max_window_days, settings.retention_days
        )
    except ApiError as exc:
        field = f"filters.{exc.field}" if exc.field else "filters"
        raise BadRequest(f"filters.{exc.message}", field=field, code=exc.code) from None
    jobs = _jobs(request)
    job = await run_in_threadpool(
        lambda: jobs.create(
            tenant_id=tenant,
            name=body.name,
            fmt=body.format,
            filters=raw,
            since=since,
            until=until,
            created_by=key.key_id,
            include_proof=body.include_proof,
        )
    )
    try:
        event = audit_trail.export_event(
            "export.created", tenant, audit_trail.api_actor(key, _client_ip(request)), job
        )
        await audit_trail.record(request.app.state.publisher, event)
    except ApiError:
        # No export without its audit record: the job never runs.
        await run_in_threadpool(
            lambda: jobs.update(
                job["id"],
                status="failed",
                error="the audit trail was unavailable",
                finished_at=job["created_at"],
            )
        )
        raise
    _runner(request).submit(job["id"])
    return to_view(job)


@router.get(
    "/exports",
    response_model=ExportJobList,
    responses=ERROR_RESPONSES,
    summary="Export job history of the tenant, newest first (exporter role)",
)
async def list_exports(
    request: Request,
    key: ExporterKey,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    status: Annotated[Status | None, Query()] = None,
) -> ExportJobList:
    jobs = _jobs(request)
    rows = await run_in_threadpool(lambda: jobs.list(tenant, limit=limit, status=status))
    return ExportJobList(data=[to_view(j) for j in rows], count=len(rows))


JobId = Annotated[str, PathParam(max_length=64, description="The job id from POST /v1/exports.")]


async def _get_job(request: Request, tenant: str, export_id: str) -> dict[str, Any]:
    jobs = _jobs(request)
    job = await run_in_threadpool(lambda: jobs.get(export_id, tenant))
    if job is None:  # unknown, or another tenant's: the same answer
        raise NotFound("no such export job", field="export_id")
    return job


@router.get(
    "/exports/{export_id}",
    response_model=ExportJob,
    responses={**ERROR_RESPONSES, **_NOT_FOUND},
    summary="One export job: status, progress, rows written",
)
async def get_export(request: Request, key: ExporterKey, tenant: TenantDep, export_id: JobId) -> ExportJob:
    return to_view(await _get_job(request, tenant, export_id))


def _gzip_stream(path: Path) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    with path.open("rb") as src:
        while block := src.read(_GZIP_CHUNK):
            out = compressor.compress(block)
            if out:
                yield out
    yield compressor.flush()


def _wants_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in ("gzip", "x-gzip"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@router.get(
    "/exports/{export_id}/download",
    response_class=Response,
    responses={
        **ERROR_RESPONSES,
        **_NOT_FOUND,
        200: {
            "description": "The file (`Accept-Encoding: gzip`: compressed transfer; `gzip=true`: a .gz).",
            "content": {"application/x-ndjson": {}, "application/json": {}, "text/csv": {}},
        },
        409: {"model": ErrorBody, "description": "The job is not completed (yet)."},
        503: {"model": ErrorBody, "description": "The audit trail is down."},
    },
    summary="Download the file of a completed export job",
)
async def download_export(
    request: Request,
    key: ExporterKey,
    tenant: TenantDep,
    export_id: JobId,
    gzip_file: Annotated[bool, Query(alias="gzip", description="Serve a .gz file.")] = False,
) -> Response:
    job = await _get_job(request, tenant, export_id)
    if job["status"] != "completed":
        detail = f": {job['error']}" if job["status"] == "failed" and job["error"] else ""
        raise Conflict(
            f"the export job is {job['status']}{detail}; download once it is completed", field="export_id"
        )
    path = job_file(_runner(request).exports_dir, job)
    if not path.is_file():
        raise NotFound("the export file is gone", field="export_id")
    event = audit_trail.export_event(
        "export.downloaded",
        tenant,
        audit_trail.api_actor(key, _client_ip(request)),
        job,
        extra={"compression": "gzip" if gzip_file or _wants_gzip(request) else "none"},
    )
    await audit_trail.record(request.app.state.publisher, event)

    filename = f"auditstream-export-{job['id']}.{path.suffix.lstrip('.')}"
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if gzip_file:
        headers["Content-Disposition"] = f'attachment; filename="{filename}.gz"'
        return StreamingResponse(_gzip_stream(path), media_type="application/gzip", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    if _wants_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return StreamingResponse(_gzip_stream(path), media_type=media_type(job["format"]), headers=headers)
    return FileResponse(path, media_type=media_type(job["format"]), headers=headers)


assert set(FORMATS) == {"ndjson", "json", "csv"}, "ExportCreate.format lists the formats of formats.py"
