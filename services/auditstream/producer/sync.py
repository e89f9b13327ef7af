"""A synchronous facade over :class:`AuditProducer` for code without an event loop.

Usage::

    from auditstream.producer import SyncAuditProducer

    with SyncAuditProducer() as producer:  # bootstrap and topic from Settings
        event_id = producer.emit(
            {
                "occurred_at": "2026-03-10T10:13:21Z",
                "tenant_id": "acme",
                "action": "user.login_failed",
                "actor": {"id": "u-42", "type": "user", "ip": "203.0.113.7"},
                "outcome": "failure",
                "reason": "bad password",
            }
        )
    # leaving the block flushes and closes: every event is acknowledged or an error is raised.

How it works, and why: the asyncio producer runs on a private event loop in a
daemon thread. ``emit`` validates and encodes the event on the *caller's*
thread (so an invalid event raises right there, and the CPU work of several
callers does not serialise on the loop), then hands the encoded record to the
loop through a FIFO drained by one task — one cross-thread wake-up per event and
no round trip, which keeps a synchronous caller close to the async producer's
throughput. The FIFO keeps each thread's events in emit order; a semaphore
bounds it (``max_pending``), so a caller faster than the broker blocks instead
of growing memory without limit.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from aiokafka.errors import KafkaError

from auditstream.config import Settings
from auditstream.producer.errors import DeliveryFailed, ProducerClosed
from auditstream.producer.producer import AuditProducer, EncodedEvent, EventLike, encode_event

log = logging.getLogger(__name__)

# A queued record, and for emit_and_wait the future to resolve on the broker's ack.
_Item = tuple[EncodedEvent, concurrent.futures.Future[uuid.UUID] | None]


class SyncAuditProducer:
    """Thread-safe, blocking audit-event producer.

    Takes the same options as :class:`AuditProducer` (``bootstrap``, ``topic``,
    ``linger_ms``, ``start_timeout``, ...), plus ``max_pending``: how many
    events may wait between the callers and the Kafka client before ``emit``
    blocks. The constructor connects (raising
    :class:`~auditstream.producer.errors.BrokerUnavailable` after
    ``start_timeout``); ``close()`` (or the ``with`` block, or interpreter exit)
    flushes and disconnects.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        topic: str | None = None,
        *,
        max_pending: int = 50_000,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        self._async = AuditProducer(bootstrap, topic, settings=settings, **options)
        self.bootstrap = self._async.bootstrap
        self.topic = self._async.topic
        self._slots = threading.Semaphore(max_pending)
        # Guards the closed flag: no record may be handed to a loop that is stopping.
        self._lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="auditstream-producer", daemon=True
        )
        self._thread.start()
        self._queue: asyncio.Queue[_Item] | None = None
        self._drainer: asyncio.Task[None] | None = None
        try:
            self._call(self._start(), timeout=None)
        except BaseException:
            self._stop_loop()
            raise
        # A daemon thread dies silently at exit; flush what was emitted first.
        atexit.register(self.close)

    # -- public API ----------------------------------------------------------------

    def emit(self, event: EventLike) -> uuid.UUID:
        """Validate ``event``, enqueue it and return its ``event_id`` (assigned when missing).

        Raises :class:`~auditstream.events.validation.InvalidEvent` (nothing is
        sent) when the event is invalid. Delivery failures are raised by the next
        :meth:`flush` or :meth:`close`.
        """
        encoded = encode_event(event)
        self._hand_over((encoded, None))
        return encoded.event_id

    def emit_encoded(self, encoded: EncodedEvent) -> uuid.UUID:
        """Enqueue a record :func:`encode_event` built (auditstream's own publishers add headers)."""
        self._hand_over((encoded, None))
        return encoded.event_id

    def emit_and_wait(self, event: EventLike, timeout: float | None = None) -> uuid.UUID:
        """Like :meth:`emit`, but return only once the broker has acknowledged the event."""
        encoded = encode_event(event)
        waiter: concurrent.futures.Future[uuid.UUID] = concurrent.futures.Future()
        self._hand_over((encoded, waiter))
        return waiter.result(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every event emitted so far is acknowledged; raise DeliveryFailed otherwise."""
        self._check_open()
        self._call(self._flush(), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, disconnect and stop the background thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        try:
            self._call(self._close(), timeout)
        finally:
            self._stop_loop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception:
            log.exception("closing the audit producer after an error failed")

    # -- caller-thread side ----------------------------------------------------------

    def _hand_over(self, item: _Item) -> None:
        self._slots.acquire()  # back-pressure: released once the Kafka client has the record
        with self._lock:
            if self._closed:
                self._slots.release()
                raise ProducerClosed("the producer is closed")
            self._loop.call_soon_threadsafe(self._enqueue, item)

    def _check_open(self) -> None:
        if self._closed:
            raise ProducerClosed("the producer is closed")

    def _call(self, coro: Any, timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    # -- loop side ---------------------------------------------------------------------

    async def _start(self) -> None:
        self._queue = asyncio.Queue()
        await self._async.start()
        self._drainer = asyncio.create_task(self._drain(), name="auditstream-producer-drain")

    def _enqueue(self, item: _Item) -> None:
        assert self._queue is not None
        self._queue.put_nowait(item)

    async def _drain(self) -> None:
        """Send the queued records in order (one task, so order across the queue is kept)."""
        assert self._queue is not None
        while True:
            encoded, waiter = await self._queue.get()
            try:
                if waiter is None:
                    await self._async._send_encoded(encoded)
                else:
                    future = await self._async._send_record(encoded)
                    future.add_done_callback(_resolver(waiter, encoded.event_id))
            except Exception as exc:
                # Not even enqueued (e.g. no metadata for the topic in time): report like a failed delivery.
                if waiter is None:
                    self._async._failures.append((encoded.event_id, exc))
                else:
                    waiter.set_exception(DeliveryFailed([(encoded.event_id, exc)]))
            finally:
                self._slots.release()
                self._queue.task_done()

    async def _flush(self) -> None:
        assert self._queue is not None
        await self._queue.join()
        await self._async.flush()

    async def _close(self) -> None:
        try:
            if self._queue is not None:
                await self._queue.join()
        finally:
            if self._drainer is not None:
                self._drainer.cancel()
            await self._async.close()


def _resolver(
    waiter: concurrent.futures.Future[uuid.UUID], event_id: uuid.UUID
) -> Callable[[asyncio.Future[Any]], None]:
    """The done-callback that carries a Kafka ack (or failure) over to a caller's thread."""

    def resolve(future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            waiter.set_exception(DeliveryFailed([(event_id, asyncio.CancelledError("send cancelled"))]))
            return
        exc = future.exception()
        if exc is None:
            waiter.set_result(event_id)
        elif isinstance(exc, KafkaError):
            waiter.set_exception(DeliveryFailed([(event_id, exc)]))
        else:
            waiter.set_exception(exc)

    return resolve
