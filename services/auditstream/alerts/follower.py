"""The alert service: a feed follower that evaluates rules, plus its outbox and delivery tasks.

Started by ``run_services`` beside the processor, never inside its write path. Three tasks:

* **follow** — for each tenant with rules, read the next page of its stored events in ingest
  order through ``Store.feed_page`` (gap-free: a page never steps over an event), evaluate,
  and commit in *one* SQLite transaction the new feed position, the touched window state,
  the alerts fired and their deliveries (``AlertDB.commit_page``). A crash before the commit
  re-reads the same page from the old position with the old state and fires the same alerts
  with the same ids; a crash after it has nothing to redo. ``Store.feed_heads_all`` tells in
  one query which tenants have anything new, so an idle poll costs one read.
* **outbox** — publishes each new alert as ``alert.triggered`` to the input topic (the same
  way ``api/audit_trail.py`` publishes key and export events) and marks it published; after
  a crash it publishes the unmarked ones again (exact copies: the store drops them).
* **deliver** — the :class:`DeliveryWorker`.

A tenant is followed from the feed position it had when its first rule was created (set by
the API), or from the start of its feed when no position was recorded (rules written into
the database by other means).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from auditstream.alerts.audit_events import alert_triggered_event
from auditstream.alerts.delivery import DeliveryWorker
from auditstream.alerts.evaluator import Evaluator, to_ms
from auditstream.alerts.storage import AlertDB
from auditstream.config import Settings
from auditstream.store import Store

__all__ = ["AlertService", "alerts_db_path"]

log = logging.getLogger(__name__)

EVALUATED = Counter("auditstream_alerts_events_evaluated_total", "Stored events run through the alert rules.")
FIRED = Counter("auditstream_alerts_fired_total", "Alerts fired (new alert records).")
PUBLISHED = Counter("auditstream_alerts_published_total", "alert.triggered events published.")
PAGE_SECONDS = Histogram(
    "auditstream_alerts_page_seconds",
    "Time to evaluate and commit one feed page.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ACTIVE_RULES = Gauge("auditstream_alerts_active_rules", "Enabled alert rules, all tenants.")


def alerts_db_path(settings: Settings) -> Path:
    return settings.resolved_alerts_path


def _copy_state(state: dict[str, Any]) -> dict[str, Any]:
    # Entries are never mutated, only the list holding them: a shallow copy of it suffices.
    copy = {"e": list(state["e"]), "s": state["s"], "w": state["w"]}
    if "v" in state:
        copy["v"] = dict(state["v"])
    return copy


class AlertService:
    def __init__(self, settings: Settings, store: Store, db: AlertDB | None = None) -> None:
        self.settings = settings
        self.store = store
        self.db = db or AlertDB(settings.resolved_alerts_path)
        self.lateness = timedelta(seconds=settings.alert_lateness_seconds)
        self.worker = DeliveryWorker(
            self.db,
            allow_private=settings.allow_private_targets,
            timeout=settings.alert_delivery_timeout_seconds,
            base=settings.alert_retry_initial_seconds,
            cap=settings.alert_retry_max_seconds,
            give_up_seconds=settings.alert_give_up_seconds,
        )
        self._fingerprint: tuple[int, str] | None = None
        self._evaluators: dict[str, Evaluator] = {}
        # Window state as last committed, so a page reads only the groups it has not seen.
        # The database stays the truth: the cache is dropped on any rule change or failure.
        self._states: dict[tuple[str, str], dict[str, Any]] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: Any = None
        self._outbox_wake = asyncio.Event()

    async def start(self) -> None:
        from auditstream.api.publisher import Publisher
        from auditstream.events.attribution import attributor_for

        self._publisher = Publisher(
            self.settings.kafka_bootstrap, self.settings.topic, attributor_for(self.settings)
        )
        self._tasks = [
            asyncio.create_task(self._follow(), name="alerts-follow"),
            asyncio.create_task(self._outbox(), name="alerts-outbox"),
            asyncio.create_task(self.worker.run(self._stop), name="alerts-deliver"),
        ]
        log.info("alert service started", extra={"db": str(self.db.path)})

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 15)
        if self._publisher is not None:
            await self._publisher.close()

    # --- follow -------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                fired, more = await asyncio.to_thread(self.step)
            except Exception:  # store or file unavailable: the position is unchanged, try again
                log.exception("alert evaluation failed; retrying")
                await self._sleep(1.0)
                continue
            if fired:
                self._outbox_wake.set()
                self.worker.wake()
            if not more:
                await self._sleep(self.settings.alert_poll_seconds)

    def _reload(self) -> None:
        fingerprint = self.db.rules_fingerprint()
        if fingerprint == self._fingerprint:
            return
        rules = self.db.active_rules()
        self._evaluators = {t: Evaluator(rs, lateness=self.lateness) for t, rs in rules.items()}
        self._evaluators = {t: e for t, e in self._evaluators.items() if e.rules}
        self._states.clear()  # an edit or deletion reset some state in the database
        ACTIVE_RULES.set(sum(len(e.rules) for e in self._evaluators.values()))
        self._fingerprint = fingerprint

    def step(self) -> tuple[int, bool]:
        """Evaluate at most one page per tenant; (alerts fired, whether more is waiting)."""
        self._reload()
        if not self._evaluators:
            return 0, False
        heads = self.store.feed_heads_all()
        fired_total, more = 0, False
        for tenant, evaluator in self._evaluators.items():
            tenant_heads = heads.get(tenant)
            if not tenant_heads:
                continue
            cursor = self.db.cursor(tenant) or {}
            if not any(head > cursor.get(p, -1) for p, head in tenant_heads.items()):
                continue
            started = time.perf_counter()
            page = self.store.feed_page(tenant, cursor, limit=self.settings.alert_page_size)
            matches = evaluator.match(page.rows)
            keys = evaluator.state_keys(matches)
            missing = [k for k in keys if k not in self._states]
            if missing:
                self._states.update(self.db.load_states(missing))
            # Work on copies: the cache only takes the new states once they are committed.
            states = {k: _copy_state(self._states[k]) for k in keys if k in self._states}
            alerts = evaluator.apply(matches, states)
            stale = self._stale_horizons(evaluator, page.rows)
            versions = {c.rule.id: c.rule.version for c in evaluator.rules}
            try:
                new = self.db.commit_page(
                    tenant, page.positions, states, alerts, stale_before=stale, rule_versions=versions
                )
            except BaseException:
                self._states.clear()  # unknown whether it committed: read the truth back next time
                raise
            self._states.update(states)
            idle = [k for k, v in self._states.items() if (v.get("w") or 0) < stale.get(k[0], -1)]
            for key in idle:
                del self._states[key]
            PAGE_SECONDS.observe(time.perf_counter() - started)
            EVALUATED.inc(len(page.rows))
            FIRED.inc(len(new))
            fired_total += len(new)
            more = more or page.more
        return fired_total, more

    def _stale_horizons(self, evaluator: Evaluator, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Per windowed rule: groups idle since before (newest event - window - lateness) are dropped."""
        if not rows:
            return {}
        newest = max(to_ms(r["occurred_at"]) for r in rows)
        lateness_ms = int(self.lateness.total_seconds() * 1000)
        return {
            c.rule.id: newest - c.spec.window_ms - lateness_ms for c in evaluator.rules if c.spec is not None
        }

    # --- outbox -------------------------------------------------------------------------

    async def _outbox(self) -> None:
        from auditstream.events.attribution import CHANNEL_INTERNAL
        from auditstream.producer import encode_event

        while not self._stop.is_set():
            try:
                pending = await asyncio.to_thread(self.db.unpublished, 200)
                if pending:
                    # Labelled internal: alert.triggered is auditstream's own trail (auditstream-alerts).
                    await self._publisher.publish(
                        [encode_event(alert_triggered_event(a)) for a in pending], channel=CHANNEL_INTERNAL
                    )
                    await asyncio.to_thread(self.db.mark_published, [a["id"] for a in pending])
                    PUBLISHED.inc(len(pending))
                    continue
            except Exception as exc:  # broker down: the alerts stay unpublished and are sent later
                log.warning("publishing alert.triggered failed, will retry: %s", exc)
                await self._sleep(2.0)
                continue
            self._outbox_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_wake.wait(), 1.0)
