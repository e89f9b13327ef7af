"""The asyncio audit-event producer (the Python SDK).

Usage::

    from auditstream.producer import AuditProducer

    async with AuditProducer(bootstrap="127.0.0.1:9092", topic="audit.events") as producer:
        event_id = await producer.emit(
            {
                "occurred_at": "2026-03-10T15:43:21+05:30",
                "tenant_id": "acme",
                "action": "scan.created",
                "actor": {"id": "u-42", "type": "user", "email": "ana@acme.example"},
                "resource": {"type": "scan", "id": "scan-7", "name": "test-credit-2"},
            }
        )
        # ... many more emits; they are batched (linger_ms) and sent in the background.
    # leaving the block flushes: every emitted event is acknowledged by the broker or an error is raised.

Guarantees and why:

* every event is validated against the v1 contract *before* anything is sent:
  a bad event raises :class:`~auditstream.events.validation.InvalidEvent`
  naming the field, and never reaches the topic (or the DLQ);
* the record key is the tenant id, so the default (murmur2) partitioner puts
  all of a tenant's events in one partition, in emit order;
* ``event_id`` is assigned (UUIDv7) *before* the first send attempt and is part
  of the record value, so a retried record carries the same id and the
  processor can drop duplicates by id; the idempotent producer (``acks=all``)
  additionally prevents the broker from writing a retried batch twice;
* with ``spool_dir``, an event the broker cannot take (the client's buffer stays
  full for ``send_timeout`` seconds, or its delivery fails) is kept in a bounded
  on-disk spool (:mod:`~auditstream.producer.spool`) and sent when the broker
  answers again, in emit order; a full spool raises
  :class:`~auditstream.producer.errors.SpoolFull` from ``emit``. A record whose
  delivery was ambiguous may reach the topic twice: both copies carry the same
  ``event_id`` and the processor stores it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaConnectionError,
    KafkaError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
)
from pydantic import BaseModel

from auditstream.config import Settings
from auditstream.events.ids import uuid7
from auditstream.events.model import AuditEvent
from auditstream.events.validation import InvalidEvent, parse_event
from auditstream.producer.errors import BrokerUnavailable, DeliveryFailed, ProducerClosed
from auditstream.retry import Backoff, retry

if TYPE_CHECKING:
    from auditstream.producer.spool import Spool

log = logging.getLogger(__name__)

# Spooled events sent per round when the broker is back.
SPOOL_CHUNK = 500
# Waiting for a broker: to connect (short, start-up waits on it) and to send the spool.
_CONNECT_BACKOFF = Backoff(initial=0.2, maximum=2.0)
_SPOOL_BACKOFF = Backoff(initial=0.2, maximum=5.0)

# The idempotent producer's sequence state is broken: after batches expired during an
# outage, aiokafka keeps the old producer id and sequence numbers, and the broker refuses
# every later batch for good. Only a new client (new producer id) sends again.
_BROKEN_SEQUENCE = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
)

EventLike = Mapping[str, Any] | AuditEvent


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """A validated event ready for Kafka: its id, record key and record value.

    ``headers`` are record headers; only auditstream's own publishers set them (the
    signed ingest attribution of ``events/attribution.py``).
    """

    event_id: uuid.UUID
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def encode_event(event: EventLike, *, retention_days: int | None = None) -> EncodedEvent:
    """Validate ``event`` and encode it as the Kafka record the processor expects.

    The record value is compact JSON (orjson) of the event with ``event_id``
    assigned (UUIDv7) when missing, and it is *exactly the bytes that were
    validated* by :func:`~auditstream.events.validation.parse_event` — the
    function the processor runs on every message — so a record the SDK sends
    cannot be rejected by the processor (the same rules, the same bytes, the
    same 64 KiB limit). Validating the bytes also avoids a second
    serialisation of the validated model, which would cost about as much as
    the validation itself. Normalisation (UTC, milliseconds, canonical IP) is
    the processor's job, as for events from any other Kafka client.

    Raises :class:`InvalidEvent` naming the field when the event breaks the v1
    contract. Pure and thread-safe: the synchronous producer calls it on the
    caller's thread.
    """
    if isinstance(event, BaseModel):
        obj: Mapping[str, Any] = event.model_dump(mode="json", exclude_none=True)
    elif isinstance(event, Mapping):
        obj = event
    else:
        raise _invalid(
            "", f"an event must be a mapping or an AuditEvent, not {type(event).__name__}", "not_object"
        )
    if obj.get("event_id") is None:
        # Assigned here, once, so that every retry of this record carries the same id.
        obj = {**obj, "event_id": uuid7()}
    try:
        value = orjson.dumps(obj, default=_jsonable)
    except TypeError as exc:  # orjson.JSONEncodeError: NaN, non-str keys, unknown types
        raise _invalid("", f"not representable as JSON: {exc}", "not_serializable") from None
    validated = parse_event(value, retention_days=retention_days)
    assert validated.event_id is not None  # present in the bytes, so present after validation
    return EncodedEvent(event_id=validated.event_id, key=validated.tenant_id.encode(), value=value)


def _jsonable(value: Any) -> Any:
    """orjson fallback for what a caller may reasonably nest in an event dict."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def _invalid(field: str, message: str, type_: str) -> InvalidEvent:
    return InvalidEvent([{"field": field, "message": message, "type": type_}])


class AuditProducer:
    """Validates audit events and publishes them to Kafka (asyncio).

    Parameters default from :class:`~auditstream.config.Settings`
    (``AUDITSTREAM_KAFKA_BOOTSTRAP``, ``AUDITSTREAM_TOPIC``).

    * ``linger_ms`` — how long the client waits to fill a batch; a few
      milliseconds of latency buy much higher throughput.
    * ``max_batch_size`` — bytes per partition batch (aiokafka's default, 16 KiB,
      holds only a few dozen events).
    * ``start_timeout`` — how long ``start()`` keeps trying to reach the broker
      before raising :class:`BrokerUnavailable` (a broker that is still starting
      is normal in development and CI).
    * ``spool_dir`` — a folder for the on-disk spool used while the broker is
      unreachable (none by default: ``emit`` then waits for buffer space);
      ``spool_max_bytes`` bounds it; ``send_timeout`` is how long ``emit``
      waits for the client's buffer before spooling; ``close()`` waits up to
      ``spool_close_timeout`` for the spool to drain, and what is left stays on
      disk for the next producer on the same folder.

    One instance belongs to the event loop that started it. For plain
    synchronous code use :class:`~auditstream.producer.SyncAuditProducer`.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        topic: str | None = None,
        *,
        linger_ms: int = 10,
        max_batch_size: int = 256 * 1024,
        compression_type: str | None = None,
        client_id: str = "auditstream-producer",
        request_timeout_ms: int = 30_000,
        start_timeout: float = 60.0,
        spool_dir: Path | str | None = None,
        spool_max_bytes: int | None = None,
        send_timeout: float = 2.0,
        spool_close_timeout: float = 30.0,
        settings: Settings | None = None,
    ) -> None:
        if bootstrap is None or topic is None:
            settings = settings or Settings()
            bootstrap = bootstrap or settings.kafka_bootstrap
            topic = topic or settings.topic
        self.bootstrap: str = bootstrap
        self.topic: str = topic
        self._linger_ms = linger_ms
        self._max_batch_size = max_batch_size
        self._compression_type = compression_type
        self._client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._start_timeout = start_timeout
        self._producer: AIOKafkaProducer | None = None  # None until connected
        self._started = False
        self._closing = False
        self._retiring: set[asyncio.Task[None]] = set()  # replaced clients being stopped
        # Failures of records enqueued by emit(), reported by the next flush().
        self._failures: list[tuple[uuid.UUID, BaseException]] = []
        self._unacked = 0
        self._all_acked = asyncio.Event()  # set while no emitted record awaits its ack
        self._all_acked.set()
        self._spool_dir = Path(spool_dir) if spool_dir is not None else None
        self._spool_max_bytes = spool_max_bytes
        self._send_timeout = send_timeout
        self._spool_close_timeout = spool_close_timeout
        self._spool: Spool | None = None
        self._spooling = False  # while True, emit() appends to the spool instead of the client
        self._spool_drained = asyncio.Event()
        self._spool_drained.set()
        self._spool_wakeup = asyncio.Event()
        self._spool_task: asyncio.Task[None] | None = None
        self._seq = 0  # emit sequence: the spool sends in this order

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the broker, retrying until ``start_timeout`` has passed.

        Without a spool, a broker that does not answer in time raises
        :class:`BrokerUnavailable`. With ``spool_dir``, the producer starts anyway:
        events go to the spool and a background task keeps connecting, then sends them.
        """
        if self._started:
            return
        try:
            self._producer = await self._connect(self._start_timeout)
        except BrokerUnavailable as exc:
            if self._spool_dir is None:
                raise
            log.warning("%s; starting with the spool only, connecting in the background", exc)
        self._started = True
        self._open_spool()

    def _new_client(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            max_batch_size=self._max_batch_size,
            compression_type=self._compression_type,
            request_timeout_ms=self._request_timeout_ms,
        )

    async def _connect(self, within: float | None) -> AIOKafkaProducer:
        """A started client; retries with backoff for ``within`` seconds (None: forever)."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within

        async def attempt() -> AIOKafkaProducer:
            if self._closing:  # aiokafka may swallow a cancellation while it connects
                raise asyncio.CancelledError("the producer is closing")
            producer = self._new_client()
            remaining = 5.0 if deadline is None else deadline - loop.time()
            try:
                await asyncio.wait_for(producer.start(), timeout=max(remaining, 0.1))
            except BaseException:
                await producer.stop()
                raise
            return producer

        def on_retry(exc: BaseException, wait: float) -> None:
            log.info("broker at %s not reachable yet (%s); retrying in %.1f s", self.bootstrap, exc, wait)

        try:
            return await retry(
                attempt,
                retry_on=(KafkaConnectionError, TimeoutError),
                backoff=_CONNECT_BACKOFF,
                within=within,
                on_retry=on_retry,
            )
        except (KafkaConnectionError, TimeoutError) as exc:
            raise BrokerUnavailable(
                f"Kafka broker at {self.bootstrap} did not answer within {within:g} s: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _open_spool(self) -> None:
        if self._spool_dir is None:
            return
        from auditstream.producer.spool import DEFAULT_SPOOL_MAX_BYTES, Spool

        self._spool = Spool(self._spool_dir, max_bytes=self._spool_max_bytes or DEFAULT_SPOOL_MAX_BYTES)
        self._seq = self._spool.last_seq
        self._spool_task = asyncio.create_task(self._drain_spool(), name="auditstream-spool-drain")
        if self._spool.depth:
            # Left by an earlier producer: those events go first.
            log.info("spool holds %d events from before; sending them first", self._spool.depth)
            self._enter_spooling()
        elif self._producer is None:
            self._enter_spooling(BrokerUnavailable(f"no connection to {self.bootstrap} yet"))

    async def flush(self) -> None:
        """Wait until every emitted event is acknowledged by the broker.

        Raises :class:`DeliveryFailed` listing the events that were not (each
        failure is reported once).
        """
        self._require_started()
        if self._producer is not None:
            await self._producer.flush()
        # Batch futures resolve before the per-record callbacks have run; wait for those too.
        await self._all_acked.wait()
        await self._spool_drained.wait()
        self._raise_failures()

    async def close(self) -> None:
        """Flush, then disconnect. Raises :class:`DeliveryFailed` after disconnecting if a record failed."""
        if not self._started:
            return
        try:
            if self._spool is not None:
                await self._wait_spool_drained()
            await self.flush()
        finally:
            self._started = False
            self._closing = True
            if self._spool_task is not None:
                self._spool_task.cancel()
                # Bounded: the drain's connect loop sees _closing within one attempt.
                await asyncio.wait({self._spool_task}, timeout=15.0)
                if self._spool_task.done() and not self._spool_task.cancelled():
                    self._spool_task.exception()  # retrieved: never "exception was never retrieved"
                self._spool_task = None
            self._closing = False
            producer, self._producer = self._producer, None
            if producer is not None:
                await producer.stop()
            if self._retiring:  # replaced clients still stopping: bounded wait, then cancel
                _, late = await asyncio.wait(set(self._retiring), timeout=5.0)
                for task in late:
                    task.cancel()
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    async def _wait_spool_drained(self) -> None:
        """Give the spool ``spool_close_timeout`` to drain; what is left stays on disk for next time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._spool_close_timeout

        async def drained() -> None:
            if self._producer is not None:
                await self._producer.flush()
            await self._all_acked.wait()
            await self._spool_drained.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained(), timeout=max(deadline - loop.time(), 0.0))
        if self._spool is not None and self._spool.depth:
            log.warning(
                "closing with %d events still in the spool at %s; the next producer on it sends them",
                self._spool.depth,
                self._spool.path,
            )
            self._spool_drained.set()  # they are kept on disk: flush() must not wait for them

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
            return
        # An error is already propagating: still deliver what was emitted, but never mask that error.
        try:
            await self.close()
        except Exception:
            log.exception("closing the audit producer after an error failed")

    # -- emitting ----------------------------------------------------------------

    async def emit(self, event: EventLike) -> uuid.UUID:
        """Validate ``event`` and enqueue it; return its ``event_id`` (assigned when missing).

        Returns once the record is in the client's batch buffer (it waits only
        when that buffer is full — back-pressure). Delivery happens in the
        background; use :meth:`flush` (or leave the ``async with`` block) to
        wait for the acknowledgements, or :meth:`emit_and_wait` for one event.

        Raises :class:`InvalidEvent` (and sends nothing) when the event is invalid.
        """
        return await self._send_encoded(encode_event(event))

    async def emit_encoded(self, encoded: EncodedEvent) -> uuid.UUID:
        """Enqueue a record :func:`encode_event` built (auditstream's own publishers add headers)."""
        return await self._send_encoded(encoded)

    async def emit_and_wait(self, event: EventLike | EncodedEvent) -> uuid.UUID:
        """Like :meth:`emit`, but return only once the broker has acknowledged the record.

        Also takes an already encoded record. Raises :class:`DeliveryFailed` when the
        broker does not acknowledge it.
        """
        encoded = event if isinstance(event, EncodedEvent) else encode_event(event)
        future = await self._send_record(encoded)
        try:
            await future
        except KafkaError as exc:
            raise DeliveryFailed([(encoded.event_id, exc)]) from exc
        return encoded.event_id

    async def _send_record(self, encoded: EncodedEvent) -> asyncio.Future[Any]:
        """Enqueue an already validated record; the future resolves on the broker's ack.

        Private on purpose: it sends whatever bytes it is given. Only
        :func:`encode_event` output reaches it (here and in the sync producer).
        """
        self._require_started()
        if self._producer is None:
            raise BrokerUnavailable(f"not connected to the Kafka broker at {self.bootstrap} yet")
        return await self._producer.send(
            self.topic, encoded.value, key=encoded.key, headers=list(encoded.headers) or None
        )

    async def _send_encoded(self, encoded: EncodedEvent) -> uuid.UUID:
        """Enqueue a validated record; a delivery failure is reported by the next flush().

        With a spool, a record the client cannot take in ``send_timeout`` (or whose
        delivery fails) is spooled instead; ``SpoolFull`` is raised when it has no room.
        """
        if self._spool is None:
            future = await self._send_record(encoded)
            self._track(future, functools.partial(self._on_delivery, encoded.event_id))
            return encoded.event_id
        self._seq += 1
        seq = self._seq
        if self._spooling:
            self._spool.append(seq, encoded)
            return encoded.event_id
        try:
            future = await asyncio.wait_for(self._send_record(encoded), timeout=self._send_timeout)
        except (KafkaError, TimeoutError) as exc:
            self._enter_spooling(exc)
            self._spool.append(seq, encoded)
            return encoded.event_id
        self._track(future, functools.partial(self._on_spooled_delivery, seq, encoded))
        return encoded.event_id

    def _track(self, future: asyncio.Future[Any], callback: Any) -> None:
        self._unacked += 1
        self._all_acked.clear()
        future.add_done_callback(callback)

    def _settled(self) -> None:
        self._unacked -= 1
        if not self._unacked:
            self._all_acked.set()

    def _on_delivery(self, event_id: uuid.UUID, future: asyncio.Future[Any]) -> None:
        self._settled()
        if future.cancelled():
            self._failures.append((event_id, asyncio.CancelledError("send cancelled")))
            return
        exc = future.exception()  # retrieving it also silences "exception never retrieved"
        if exc is not None:
            log.error("audit event %s was not delivered: %r", event_id, exc)
            self._failures.append((event_id, exc))

    def _on_spooled_delivery(self, seq: int, encoded: EncodedEvent, future: asyncio.Future[Any]) -> None:
        """A direct send that failed goes to the spool at its emit position, not to the failures."""
        exc: BaseException | None = (
            asyncio.CancelledError("send cancelled") if future.cancelled() else future.exception()
        )
        try:
            if exc is not None and self._spool is not None:
                self._enter_spooling(exc)
                try:
                    self._spool.append(seq, encoded)
                except Exception as spool_exc:  # full: the next flush() reports it, never a silent drop
                    self._failures.append((encoded.event_id, spool_exc))
            elif exc is not None:
                self._failures.append((encoded.event_id, exc))
        finally:
            self._settled()

    # -- the spool ------------------------------------------------------------------

    def _enter_spooling(self, cause: BaseException | None = None) -> None:
        if not self._spooling:
            log.warning("broker unreachable (%r); spooling events to disk", cause)
        self._spooling = True
        self._spool_drained.clear()
        self._spool_wakeup.set()

    async def _drain_spool(self) -> None:
        """Send spooled events in emit order once the broker answers; leave spooling when empty."""
        while True:
            await self._spool_wakeup.wait()
            if self._producer is None and self._started:
                # Started while the broker was unreachable: keep trying until it answers.
                self._producer = await self._connect(None)
                log.info("connected to the broker at %s; sending the spool", self.bootstrap)
            spool = self._spool
            if spool is None or self._producer is None:
                return
            # Direct sends still in flight may fail and join the spool at an earlier position:
            # wait until they are settled, or they would be sent after younger events.
            await self._all_acked.wait()
            chunk = spool.peek(SPOOL_CHUNK)
            if not chunk:
                # Nothing awaits between this check and leaving the mode: no emit can slip in between.
                self._spooling = False
                self._spool_wakeup.clear()
                self._spool_drained.set()
                log.info("spool drained; sending directly again")
                continue

            def on_retry(exc: BaseException, wait: float) -> None:
                log.info("broker still unreachable (%r); spool retry in %.1f s", exc, wait)

            # Part of the chunk may have been written before a failure: sending it again is
            # safe (same event_id). Spooled records only join the end, so the chunk stays first.
            await retry(
                functools.partial(self._send_chunk, chunk),
                retry_on=(KafkaError, TimeoutError),
                backoff=_SPOOL_BACKOFF,
                on_retry=on_retry,
            )
            spool.remove([seq for seq, _ in chunk])

    async def _send_chunk(self, chunk: list[tuple[int, EncodedEvent]]) -> None:
        """Send one spooled chunk and wait for every ack; a refused sequence gets a new client."""
        while True:
            producer = self._producer
            if producer is None:
                raise KafkaConnectionError("no Kafka client")
            try:
                futures = [
                    await asyncio.wait_for(
                        producer.send(self.topic, e.value, key=e.key), timeout=self._send_timeout
                    )
                    for _, e in chunk
                ]
                results = await asyncio.gather(*futures, return_exceptions=True)
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is not None:
                    raise failed
            except _BROKEN_SEQUENCE as exc:
                # Not a wait: the broker answers, but not to this producer id.
                await self._replace_client(exc)
                continue
            return

    async def _replace_client(self, cause: BaseException) -> None:
        """Swap the Kafka client for a new one (new producer id, sequences from 0).

        Called by the drain only, when no direct send is in flight (it waits for them
        first), so nothing but the spooled chunk - kept on disk - was in the old client.
        """
        log.warning("the broker refuses this producer's sequence (%r); reconnecting with a new client", cause)
        old, self._producer = self._producer, None
        if old is not None:
            # Stopped aside: its stop() can take a long time (it may retry its broken batches
            # until they expire), and the spool must not wait for it.
            retiring = asyncio.create_task(old.stop(), name="auditstream-retired-client")
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retired)
        self._producer = await self._connect(None)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("stopping a replaced Kafka client failed: %r", task.exception())

    def _raise_failures(self) -> None:
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryFailed(failures)

    def _require_started(self) -> None:
        if not self._started:
            raise ProducerClosed(
                "the producer is not started: use 'async with AuditProducer(...)' or start()"
            )
