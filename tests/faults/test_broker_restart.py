"""The broker stopped for 20 s while the SDK keeps emitting, then restarted.

The SDK (``AuditProducer`` with a spool) keeps taking events during the outage: they go
to its on-disk spool (the spool depth metric rises) and are sent when the broker is back
(the depth returns to 0). The pipeline, running all along, reconnects by itself. Every
event_id emitted is read back exactly once through the API, and reconcile finds no gap.

Needs the session's own local broker (``local_broker``): the test stops and restarts it,
and waits until it serves again before finishing, because later tests share it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from auditstream.producer import AuditProducer
from tests.faults.support import all_committed, exported_ids, reconcile, until, valid_events
from tests.fixtures.kafka import LocalBroker, new_topics
from tests.fixtures.pipeline import running_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline, pytest.mark.faults]

OUTAGE_SECONDS = 20.0
EVENTS_PER_SECOND = 200
MAX_EVENTS = 20_000  # the emitter stops here at the latest, whatever happens


def _spool_depth() -> float:
    return REGISTRY.get_sample_value("auditstream_producer_spool_events") or 0.0


class Emitter(threading.Thread):
    """The application: emits at a steady pace, through the outage, until told to stop."""

    def __init__(self, bootstrap: str, topic: str, spool_dir: Path) -> None:
        super().__init__(daemon=True, name="emitter")
        self.bootstrap, self.topic, self.spool_dir = bootstrap, topic, spool_dir
        self.events = valid_events(MAX_EVENTS, seed=33)
        self.emitted: list[str] = []
        self.stop_emitting = threading.Event()
        self.closed = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._go())
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.closed.set()

    async def _go(self) -> None:
        async with AuditProducer(
            bootstrap=self.bootstrap,
            topic=self.topic,
            spool_dir=self.spool_dir,
            send_timeout=1.0,
            request_timeout_ms=10_000,
            spool_close_timeout=120.0,
        ) as sdk:
            started = time.monotonic()
            for event in self.events:
                if self.stop_emitting.is_set():
                    break
                event_id = await sdk.emit(event)
                self.emitted.append(str(event_id))
                ahead = len(self.emitted) / EVENTS_PER_SECOND - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing, not synchronisation


@pytest.mark.timeout(420)
def test_broker_restart_loses_nothing_and_doubles_nothing(
    local_broker: LocalBroker | None, kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path
) -> None:
    if local_broker is None:
        pytest.skip(
            "needs the session's own local broker to stop and restart it; this session uses "
            "AUDITSTREAM_TEST_KAFKA_BOOTSTRAP or a testcontainers broker"
        )
    topics = new_topics(kafka_bootstrap)
    with running_pipeline(kafka_bootstrap, topics, clickhouse_dsn) as pipeline:
        emitter = Emitter(kafka_bootstrap, topics.events, tmp_path / f"spool-{uuid.uuid4().hex[:6]}")
        emitter.start()
        broker_up = True
        try:
            until(lambda: len(emitter.emitted) >= 500, "events emitted before the outage", 60)
            local_broker.stop()
            broker_up = False
            stopped = time.monotonic()
            emitted_at_stop = len(emitter.emitted)
            until(lambda: _spool_depth() > 0, "the spool to fill during the outage", OUTAGE_SECONDS)
            until(lambda: time.monotonic() - stopped >= OUTAGE_SECONDS, "the end of the outage", 30)
            peak_depth = _spool_depth()
            emitted_in_outage = len(emitter.emitted) - emitted_at_stop
            outage = time.monotonic() - stopped
            local_broker.start()  # returns once the broker answers on its port
            broker_up = True
            until(lambda: _spool_depth() == 0, "the spool to drain after the restart", 120)
            drained_after = time.monotonic() - stopped - outage
            time.sleep(0.2)  # a few more emits straight to the broker after the drain
        finally:
            emitter.stop_emitting.set()
            if not broker_up:  # later tests share the broker: never leave it stopped
                local_broker.start()
        until(emitter.closed.is_set, "the SDK to flush and close", 150)
        assert emitter.error is None, repr(emitter.error)
        assert _spool_depth() == 0
        emitted = emitter.emitted
        until(lambda: all_committed(kafka_bootstrap, pipeline), "every offset committed", 180, pipeline.tail)

        ids = exported_ids(pipeline)
        counts = Counter(ids)
        doubled = {i: n for i, n in counts.items() if n > 1}
        missing = set(emitted) - set(counts)
        assert not doubled, f"{len(doubled)} event_ids read more than once"
        assert not missing, f"{len(missing)} of {len(emitted)} emitted events not stored"
        assert set(counts) == set(emitted)
        assert pipeline.stop() == 0
        code, report, output = reconcile(pipeline)
        assert code == 0 and report is not None, output
        print(
            f"\nbroker restart: stopped {outage:.1f}s, {emitted_in_outage} events emitted during the outage "
            f"(spool depth up to {peak_depth:.0f}, back to 0 {drained_after:.1f}s after the restart); "
            f"{len(emitted)} emitted, {len(ids)} read back ({len(counts)} distinct, 0 doubled); "
            f"on the topic {report['rows']}; reconcile: no gap"
        )
