"""``POST /v1/events``: HTTP ingest for services that cannot speak Kafka.

The body is one JSON event (``application/json``) or an NDJSON batch
(``application/x-ndjson``, one event per line, blank lines ignored).

All or nothing, for validation: every event is checked with the processor's own
rules (``encode_event`` → ``parse_event``) before anything is published; if any
event is invalid the answer is 422 listing each problem as ``{index, field,
message}`` (index from 0, counting non-blank lines) and *nothing* is published.
Every event's ``tenant_id`` must be the key's tenant, else 403 naming
``tenant_id``, again publishing nothing.

Then the events are published in order and the answer (202, their ``event_ids``)
is sent once the broker acknowledged each one. Kafka has no all-or-nothing
publish without transactions: if the broker fails part-way the answer is 503 and
some events may already be stored. Send ``event_id`` in each event and retry the
same body: the processor drops duplicates by id.

Ingest needs a key of the ``ingest`` role, and that role only ingests: reader,
exporter and admin keys get 403, so a key handed out to read the log cannot add to
it. Events claiming to come from auditstream itself (``source.service`` =
``auditstream-api`` or ``auditstream-cli``, the trail of keys and exports) are
refused per event like any other invalid field: that trail is written by the API
and the CLI only, and must not be imitable.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from auditstream.api.deps import IngestKey, TenantDep
from auditstream.api.errors import ApiError, Forbidden
from auditstream.api.publisher import Publisher
from auditstream.api.schemas import ERROR_RESPONSES, ErrorBody
from auditstream.events.validation import InvalidEvent
from auditstream.producer import EncodedEvent, encode_event

__all__ = ["MAX_BODY_BYTES", "MAX_EVENTS", "router"]

router = APIRouter(prefix="/v1", tags=["ingest"])

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_EVENTS = 10_000
MAX_ERRORS_REPORTED = 100
# source.service values of the API's own audit trail (audit_trail.py): never accepted from outside.
RESERVED_SOURCES = frozenset({"auditstream-api", "auditstream-cli"})
_NDJSON = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class EventErrors(ApiError):
    """422 with one entry per problem; ``field`` of the envelope names the first one."""

    status_code = 422
    code = "validation_error"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        where = f"event {first['index']}" + (f": {first['field']}" if first["field"] else "")
        super().__init__(
            f"{len(errors)} problem(s) in the events; nothing was published. First, {where}: "
            f"{first['message']}",
            field=f"{first['index']}.{first['field']}" if first["field"] else str(first["index"]),
        )
        self.errors = errors


class IngestError(BaseModel):
    index: int = Field(description="Position of the event in the body (0-based, blank lines skipped).")
    field: str = Field(description="Dotted path in the event; empty for the whole event.")
    message: str


class IngestErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    errors: list[IngestError]


class IngestErrorBody(BaseModel):
    error: IngestErrorDetail


class IngestAccepted(BaseModel):
    accepted: int
    event_ids: list[str] = Field(description="In the order of the body; assigned (UUIDv7) when missing.")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading them all (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes; split the batch")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes; split the batch")
        chunks.append(chunk)
    return b"".join(chunks)


def split_body(body: bytes, content_type: str) -> list[bytes]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _NDJSON:
        return [line for line in body.splitlines() if line.strip()]
    if media in ("application/json", ""):
        return [body] if body.strip() else []
    raise UnsupportedMediaType(
        f"Content-Type {media[:64]!r}: send application/json (one event) or application/x-ndjson (a batch)",
        field="content-type",
    )


def encode_all(raws: list[bytes]) -> tuple[list[EncodedEvent], list[dict[str, Any]]]:
    encoded: list[EncodedEvent] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(raws):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            errors.append({"index": index, "field": "", "message": f"invalid JSON: {exc}"})
            continue
        if not isinstance(obj, dict):
            errors.append({"index": index, "field": "", "message": "expected a JSON object"})
            continue
        source = obj.get("source")
        service = source.get("service") if isinstance(source, dict) else None
        if isinstance(service, str) and service.strip().lower() in RESERVED_SOURCES:
            errors.append(
                {
                    "index": index,
                    "field": "source.service",
                    "message": f"{service.strip()[:32]!r} is reserved for auditstream's own audit trail",
                }
            )
        try:
            encoded.append(encode_event(obj))
        except InvalidEvent as exc:
            errors.extend({"index": index, "field": e["field"], "message": e["message"]} for e in exc.errors)
    return encoded, errors


@router.post(
    "/events",
    status_code=202,
    response_model=IngestAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
    responses={
        **ERROR_RESPONSES,
        413: {"model": ErrorBody, "description": f"The body exceeds {MAX_BODY_BYTES} bytes."},
        415: {"model": ErrorBody, "description": "Not JSON or NDJSON."},
        422: {"model": IngestErrorBody, "description": "Invalid events; nothing was published."},
        503: {"model": ErrorBody, "description": "The broker did not acknowledge; retry the same body."},
    },
    summary="Ingest one event (JSON) or an NDJSON batch (ingest role); 202 once the broker acknowledged them",
)
async def ingest_events(request: Request, key: IngestKey, tenant: TenantDep) -> Any:
    raws = split_body(await read_body(request), request.headers.get("content-type", ""))
    if not raws:
        return _unprocessable(EventErrors([{"index": 0, "field": "", "message": "the body holds no event"}]))
    if len(raws) > MAX_EVENTS:
        raise PayloadTooLarge(f"at most {MAX_EVENTS} events per request; split the batch")
    encoded, errors = encode_all(raws)
    if errors:
        return _unprocessable(EventErrors(errors[:MAX_ERRORS_REPORTED]))
    for index, record in enumerate(encoded):
        if record.key.decode() != tenant:
            raise Forbidden(
                f"event {index}: tenant_id is not the tenant of this key ({tenant}); nothing was published",
                field="tenant_id",
            )
    publisher: Publisher = request.app.state.publisher
    ids = await publisher.publish(encoded)
    return IngestAccepted(accepted=len(ids), event_ids=[str(i) for i in ids])


def _unprocessable(exc: EventErrors) -> Response:
    body = {"error": {"code": exc.code, "message": exc.message, "field": exc.field, "errors": exc.errors}}
    return Response(orjson.dumps(body), status_code=exc.status_code, media_type="application/json")
