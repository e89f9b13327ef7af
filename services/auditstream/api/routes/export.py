"""``/v1/export``: stream every matching event, in constant memory.

``store.export.EventExport`` produces the file: one streamed query whose rows
ClickHouse encodes itself (NDJSON, JSON or CSV), read in pieces of about
``AUDITSTREAM_EXPORT_READ_BYTES`` (1 MiB). A dedicated thread iterates it, passing the
pieces to the response through a queue of two. So:

* memory stays at the engine's blocks in flight plus a few pieces, however many rows
  match;
* the whole iteration runs on one thread, the one whose client holds the stream;
* the event loop never encodes anything, and Python never builds an object per row;
* a client that disconnects stops the thread at the next piece.

The first slice is fetched before the response starts, so a query that fails
outright still gets a proper JSON error status instead of a broken 200.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from auditstream.api.deps import ExporterKey, FiltersDep, SettingsDep, StoreDep, TenantDep
from auditstream.api.errors import BadRequest
from auditstream.api.formats import FORMATS, file_extension, media_type
from auditstream.api.routes.checkpoints import LedgerDep
from auditstream.api.schemas import ERROR_RESPONSES
from auditstream.integrity.bundle import proof_trailer
from auditstream.integrity.service import public_key
from auditstream.store.export import EventExport

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["export"])

_POLL_SECONDS = 0.25  # how often a blocked side re-checks whether the other gave up
# A consumer that stops reading for this long (a stuck client, a response never
# started) is abandoned, so the thread and its store connection are not held forever.
_IDLE_LIMIT_SECONDS = 300.0
_END = object()


class _Pump:
    """Run a byte iterator on its own thread; hand items over through a bounded queue."""

    def __init__(self, produce: Callable[[], Iterator[bytes]], maxsize: int = 2) -> None:
        self._produce = produce
        self._queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditstream-export", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        waited = 0.0
        while not self._stop.is_set() and waited < _IDLE_LIMIT_SECONDS:
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                waited += _POLL_SECONDS
        self._stop.set()
        return False

    def _run(self) -> None:
        items = self._produce()
        try:
            for item in items:
                if not self._put(item):
                    return  # the consumer is gone
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which logs or reports it
            self._put(exc)
        finally:
            # Close the generator chain now (not at garbage collection) so the store
            # iterator's cleanup runs on this thread, the one that used its client.
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def get(self) -> object:
        """Blocking: the next bytes, ``_END``, or the exception the producer raised."""
        while True:
            try:
                return self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    return _END
                if self._stop.is_set():
                    return _END

    def stop(self) -> None:
        self._stop.set()


async def _body(pump: _Pump, first: bytes) -> AsyncIterator[bytes]:
    try:
        yield first
        while True:
            item = await run_in_threadpool(pump.get)
            if item is _END:
                return
            if isinstance(item, BaseException):
                # Too late for an error status: log, then fail the transfer so the client
                # sees a truncated body rather than a short file that looks complete.
                log.error("export failed after the response started", exc_info=item)
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        pump.stop()


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "description": "ndjson: one event per line; json: one array; csv: RFC 4180 with a header,"
            " nested fields flattened to dotted columns.",
            "content": {"application/x-ndjson": {}, "application/json": {}, "text/csv": {}},
        },
    },
    summary="Stream every matching event (exporter role)",
)
async def export_events(
    store: StoreDep,
    settings: SettingsDep,
    key: ExporterKey,
    tenant: TenantDep,
    filters: FiltersDep,
    ledger: LedgerDep,
    format: Annotated[str, Query(max_length=16, description="ndjson (default), json or csv.")] = "ndjson",
    order: Annotated[Literal["desc", "asc"], Query()] = "desc",
    include_proof: Annotated[
        bool, Query(description="ndjson only: end with a proof line (checkpoint, leaf indices, audit paths).")
    ] = False,
) -> StreamingResponse:
    if include_proof and format != "ndjson":
        raise BadRequest("include_proof: only with format=ndjson", field="include_proof")
    if format not in FORMATS:
        raise BadRequest(
            f"format: {format[:16]!r} is not supported; use {', '.join(FORMATS)}", field="format"
        )
    now = datetime.now(UTC)
    since, until = filters.resolve_window(now, settings.max_window_days, settings.retention_days)
    f = filters.to_event_filter(tenant, since, until)

    def produce() -> Iterator[bytes]:
        events = EventExport(store, f, format, order=order, slice_bytes=settings.export_read_bytes)
        rows = _logged(events, tenant)
        if not include_proof:
            return rows
        verifier = public_key(settings)
        return itertools.chain(rows, _lazy(lambda: proof_trailer(ledger, f, key=verifier and str(verifier))))

    pump = _Pump(produce)
    first = await run_in_threadpool(pump.get)
    if isinstance(first, BaseException):
        pump.stop()
        raise first
    head = b"" if first is _END else first
    assert isinstance(head, bytes)

    stamp = "%Y%m%dT%H%M%SZ"
    filename = (
        f"auditstream-{tenant}-{since.strftime(stamp)}-{until.strftime(stamp)}.{file_extension(format)}"
    )
    return StreamingResponse(
        _body(pump, head) if first is not _END else _single(head),
        media_type=media_type(format),
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def _logged(events: EventExport, tenant: str) -> Iterator[bytes]:
    """The export's bytes, then one log line of what it handed out (rows, bytes, largest piece)."""
    yield from events
    log.info(
        "export streamed",
        extra={
            "tenant": tenant,
            "format": events.format,
            "rows": events.rows,
            "bytes": events.bytes,
            "largest_item_bytes": events.largest_item,
            "read_bytes": events.slice_bytes,
        },
    )


def _lazy(make: Callable[[], bytes]) -> Iterator[bytes]:
    """One item, computed when the consumer gets there (after the events)."""
    yield make()


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data
