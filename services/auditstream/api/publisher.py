"""The API's one Kafka producer, started on first use and closed with the app.

HTTP ingest and the API's own audit trail (``audit_trail.py``) publish through it.
It is started lazily, not in the lifespan, so an API whose broker is down still
serves queries; only the routes that publish answer 503 until the broker is back.

Every publish waits for the broker's acknowledgement of *its own* records (one
future per record), so a 202 means "in Kafka", and a concurrent request's failure
is never reported to the wrong client.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace

from aiokafka.errors import KafkaError

from auditstream.api.errors import ApiError
from auditstream.events.attribution import Attributor
from auditstream.producer import AuditProducer, BrokerUnavailable, EncodedEvent, ProducerError

__all__ = ["PUBLISH_TIMEOUT_SECONDS", "PublishUnavailable", "Publisher"]

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 5.0
# No linger: every publish here waits for its own acknowledgement, so a linger only
# delays the answer (a feed.read record: p50 16 ms with the producer's default 10 ms,
# 1.8 ms without, bench/RESULTS.md issue 12). Batching does not need it: a request's
# records are queued without yielding to the event loop, and while a request to the
# broker is in flight the client holds what arrives for the next one.
LINGER_MS = 0
PUBLISH_TIMEOUT_SECONDS = 30.0


class PublishUnavailable(ApiError):
    """The broker did not take the records: 503, retry later."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "5"})


class Publisher:
    """A lazily started :class:`AuditProducer` bound to the app's event loop."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        attributor: Attributor,
        *,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.attributor = attributor
        self.start_timeout = start_timeout
        self._producer: AuditProducer | None = None
        self._lock: asyncio.Lock | None = None

    async def _started(self) -> AuditProducer:
        if self._producer is not None:
            return self._producer
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._producer is None:
                producer = AuditProducer(
                    self.bootstrap, self.topic, start_timeout=self.start_timeout, linger_ms=LINGER_MS
                )
                try:
                    await producer.start()
                except BrokerUnavailable as exc:
                    log.warning("ingest broker unavailable: %s", exc)
                    raise PublishUnavailable("the event broker is unavailable; retry shortly") from None
                self._producer = producer
        return self._producer

    async def publish(
        self, records: Sequence[EncodedEvent], *, channel: str, key_id: str = ""
    ) -> list[uuid.UUID]:
        """Send already validated records in order; return once the broker acknowledged all.

        Each record is labelled with how it arrived (``channel``: ``http`` for HTTP ingest
        with the sending ``key_id``, ``internal`` for the API's own trail), signed so the
        processor can tell the label from a forgery (events/attribution.py).
        """
        if not records:
            return []
        records = [
            replace(r, headers=self.attributor.headers(channel, r.value, key_id=key_id)) for r in records
        ]
        producer = await self._started()
        try:
            # _send_record keeps order (one await per record) and gives each record its own
            # future, so the acknowledgement we wait for is exactly ours.
            futures = [await producer._send_record(r) for r in records]
            results = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), PUBLISH_TIMEOUT_SECONDS
            )
        except (KafkaError, ProducerError, TimeoutError) as exc:
            log.error("publishing %d record(s) failed: %r", len(records), exc)
            raise PublishUnavailable("the event broker did not acknowledge the events; retry") from None
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.error("%d of %d record(s) not acknowledged: %r", len(failed), len(records), failed[0])
            raise PublishUnavailable("the event broker did not acknowledge the events; retry")
        return [r.event_id for r in records]

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.close()
            except ProducerError as exc:
                log.error("closing the API producer: %s", exc)
