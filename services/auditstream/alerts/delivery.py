"""Delivering alerts to their targets: its own task and its own queue, never the ingest path.

The queue is the ``deliveries`` table (``storage.py``): a delivery row is created in the same
transaction as its alert, so a crash between firing and sending loses nothing; on restart
the pending rows are simply due. Each attempt is an independent asyncio task with its own
timeout, at most ``concurrency`` at once, so a slow or failing receiver holds one slot and
never delays another target, another alert or the evaluator (which only inserts rows).

Retries: a non-2xx answer, a timeout or a connection error schedules the next attempt after
``min(cap, base * 2**(attempt-1))`` seconds times a random factor in [0.5, 1) ("equal
jitter": receivers recovering from an outage are not hit by every sender at once). Once the
first attempt is older than ``give_up_seconds`` the delivery is marked ``failed``. Every
attempt is logged (status code or error, duration) and shown with the alert.

Finished attempts are recorded together, one transaction per round of the loop.
Delivery is at least once: a crash after the receiver answered but before the attempt was
recorded sends it again. Receivers de-duplicate on ``alert.id`` (also ``X-Auditstream-Alert``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import httpx
import orjson
from prometheus_client import Counter, Histogram

from auditstream.alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from auditstream.alerts.storage import AlertDB
from auditstream.alerts.targets import Resolver, TargetRefused, resolve_target, system_resolve
from auditstream.retry import Backoff, backoff_delay

__all__ = ["DeliveryWorker", "backoff_seconds", "slack_payload", "webhook_payload"]

log = logging.getLogger(__name__)

DELIVERIES = Counter("auditstream_alert_deliveries_total", "Alert delivery attempts.", ["outcome"])
DELIVERY_SECONDS = Histogram(
    "auditstream_alert_delivery_seconds",
    "Duration of one delivery attempt.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The delay before delivery attempt ``attempt + 1``: the project's backoff with equal jitter."""
    return backoff_delay(attempt, Backoff(initial=base, maximum=cap), jitter=0.5, rng=rng)


def webhook_payload(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "alert.triggered",
        "alert": {
            "id": alert["id"],
            "tenant_id": alert["tenant_id"],
            "rule_id": alert["rule_id"],
            "rule_name": alert["rule_name"],
            "kind": alert["kind"],
            "severity": alert["severity"],
            "group": alert["group"],
            "window_start": alert["window_start"],
            "window_end": alert["window_end"],
            "event_ids": alert["event_ids"],
            "created_at": alert["created_at"],
        },
    }


def slack_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """An incoming-webhook message (``text`` plus a section block; mrkdwn)."""
    group = ", ".join(f"{k}={v}" for k, v in alert["group"].items()) or "-"
    text = (
        f":rotating_light: [{alert['severity']}] {alert['rule_name']} ({alert['kind']}) "
        f"in tenant {alert['tenant_id']}: {len(alert['event_ids'])} event(s), group {group}, "
        f"window {alert['window_start']} - {alert['window_end']}; alert {alert['id']}"
    )
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


class DeliveryWorker:
    def __init__(
        self,
        db: AlertDB,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        base: float = 1.0,
        cap: float = 300.0,
        give_up_seconds: float = 24 * 3600.0,
        concurrency: int = 16,
        poll_seconds: float = 0.2,
        resolve: Resolver = system_resolve,
    ) -> None:
        self.db = db
        self.allow_private = allow_private
        self.timeout = timeout
        self.base = base
        self.cap = cap
        self.give_up_seconds = give_up_seconds
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.resolve = resolve  # tests put a name of their own on a local address
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        # follow_redirects=False: a redirect could point at an address that was never checked.
        # No idle connections: each attempt connects to the address it checked (targets.py),
        # and a pooled connection made for one host name must not carry another's request.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, limits=limits) as client:
            self._client = client
            try:
                while not stop.is_set():
                    # Cleared before looking, so a wake-up during the look is not lost.
                    self._wake.clear()
                    await self._record_finished()
                    free = self.concurrency - len(self._in_flight)
                    if free > 0:
                        try:
                            due = await asyncio.to_thread(
                                self.db.due_deliveries, time.time(), free, set(self._in_flight)
                            )
                        except Exception:  # the file is busy or the disk full: try again next round
                            log.exception("reading due deliveries failed")
                            due = []
                        for d in due:
                            task = asyncio.create_task(self._attempt(d))
                            self._in_flight[d["id"]] = task
                            # A finished attempt wakes the loop, which records it (with any others).
                            task.add_done_callback(lambda _: self._wake.set())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            finally:
                for task in list(self._in_flight.values()):
                    task.cancel()
                await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self._record_finished()

    async def _record_finished(self) -> None:
        """Record every finished attempt in one transaction, then let their deliveries be due again.

        One commit per round instead of one per attempt: at tens of alerts a second the
        per-attempt commits (each an fsync, each taking the write lock the evaluator needs)
        were what held deliveries back. A delivery stays "in flight" until its attempt is
        recorded, so it is never sent twice because its record was late.
        """
        done = {i: t for i, t in self._in_flight.items() if t.done()}
        results = [r for t in done.values() if not t.cancelled() and (r := t.result()) is not None]
        if results:
            try:
                await asyncio.to_thread(self.db.record_attempts, results)
            except Exception:  # the file is busy: keep them in flight, record them next round
                log.exception("recording delivery attempts failed")
                return
        for i in done:
            self._in_flight.pop(i, None)

    async def _attempt(self, d: dict[str, Any]) -> dict[str, Any] | None:
        """Send one delivery; the attempt's record (``AlertDB.record_attempts``), None on error."""
        try:
            return await self._send(d)
        except Exception:  # a bug here must not stop the worker; the delivery stays due
            log.exception("alert delivery attempt crashed", extra={"delivery_id": d["id"]})
            return None

    async def _send(self, d: dict[str, Any]) -> dict[str, Any]:
        target = orjson.loads(d["target"])
        alert = d.get("alert")
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        if alert is None:
            error = "the alert is gone"
        else:
            payload = slack_payload(alert) if target["type"] == "slack" else webhook_payload(alert)
            body = orjson.dumps(payload)
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "auditstream-alerts",
                "X-Auditstream-Alert": alert["id"],
                "X-Auditstream-Delivery": str(d["id"]),
                TIMESTAMP_HEADER: str(ts),
            }
            if target.get("secret"):
                headers[SIGNATURE_HEADER] = sign(target["secret"], ts, body)
            try:
                # Resolved once, every address checked, and the connection made to that address.
                pinned = await asyncio.to_thread(
                    resolve_target, target["url"], allow_private=self.allow_private, resolve=self.resolve
                )
                assert self._client is not None
                response = await self._client.post(
                    pinned.request_url,
                    content=body,
                    headers={**headers, "Host": pinned.host_header},
                    extensions=pinned.extensions,
                )
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
            except TargetRefused as exc:
                error = exc.message
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        elapsed = time.monotonic() - started
        DELIVERY_SECONDS.observe(elapsed)
        if error is None:
            outcome, next_at = "delivered", None
        elif time.time() - d["created_at"] >= self.give_up_seconds or alert is None:
            outcome, next_at = "failed", None
        else:
            outcome = "pending"
            next_at = time.time() + backoff_seconds(d["attempts"] + 1, self.base, self.cap)
        DELIVERIES.labels(outcome=outcome if outcome != "pending" else "retry").inc()
        if outcome != "delivered":
            log.warning(
                "alert delivery %s",
                outcome,
                extra={"alert_id": d["alert_id"], "url": target["url"], "error": error},
            )
        return {
            "delivery_id": d["id"],
            "status_code": status_code,
            "error": error,
            "duration_ms": elapsed * 1000,
            "outcome": outcome,
            "next_attempt_at": next_at,
        }
