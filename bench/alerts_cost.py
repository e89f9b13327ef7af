"""Alert evaluation: ingest cost of 100 active rules, and produce -> webhook latency.

    .venv/bin/python -m bench.alerts_cost [--events 20000] [--rate 200] [--seconds 20]

Runs the real pipeline (``auditstream run`` child, local broker from deploy/kafka, chDB) twice
in the same run, on fresh topics: without rules and with 100 active rules (40 threshold,
30 match, 20 distinct, 10 sequence), each time producing ``--events`` events as fast as the
producer goes and timing until the processor has stored them all; with rules also until
the evaluator has evaluated them all. Then, with one match rule whose webhook is a local
receiver, produces at ``--rate`` events/s and reports produce -> webhook received p50/p99.
Reuses the test fixtures (tests/fixtures) to start the broker and the pipeline.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from auditstream.alerts.model import parse_rule
from auditstream.alerts.storage import AlertDB
from auditstream.api.keys import KeyStore, Role
from auditstream.bench.alerts import hundred_rules
from auditstream.producer import SyncAuditProducer
from tests.alerts.receiver import receiver
from tests.fixtures.kafka import LocalBroker, free_port, new_topics
from tests.fixtures.pipeline import PipelineProcess, running_pipeline

ACTIONS = [f"bench.action{i}" for i in range(50)] + ["user.login_failed", "user.login", "user.role_changed"]
ENV = {"AUDITSTREAM_ALLOW_PRIVATE_TARGETS": "true", "AUDITSTREAM_ALERT_POLL_SECONDS": "0.1"}


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def events(n: int, tenant: str) -> list[dict]:
    rng = random.Random(7)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return [
        {
            "tenant_id": tenant,
            "occurred_at": now,
            "action": rng.choice(ACTIONS),
            "actor": {
                "id": f"u{rng.randrange(500)}",
                "type": "user",
                "ip": f"10.0.{rng.randrange(4)}.{rng.randrange(250)}",
            },
        }
        for _ in range(n)
    ]


def _pipeline_env(bootstrap: str, topics, data_dir: Path) -> dict[str, str]:
    """The environment tests/fixtures/pipeline.running_pipeline gives its child."""
    return {
        **os.environ,
        "AUDITSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "AUDITSTREAM_TOPIC": topics.events,
        "AUDITSTREAM_DLQ_TOPIC": topics.dlq,
        "AUDITSTREAM_TOPIC_PARTITIONS": str(topics.partitions),
        "AUDITSTREAM_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
        "AUDITSTREAM_CLICKHOUSE_DSN": f"chdb://{data_dir / 'clickhouse'}",
        "AUDITSTREAM_CLICKHOUSE_DATABASE": "bench",
        "AUDITSTREAM_DATA_DIR": str(data_dir),
        "AUDITSTREAM_LOG_FORMAT": "json",
        **ENV,
    }


def ingest_run(bootstrap: str, n: int, with_rules: bool) -> dict:
    """Events already in the topic; the pipeline starts and drains them: steady-state rate."""
    topics = new_topics(bootstrap)
    with SyncAuditProducer(bootstrap, topics.events, linger_ms=20) as producer:
        for e in events(n, "bench"):
            producer.emit(e)
        producer.flush(timeout=300)
    data_dir = Path(tempfile.mkdtemp(prefix="alerts-bench-"))
    if with_rules:
        # Written before the start and without a feed position: evaluated from the first event.
        db = AlertDB(data_dir / "alerts.sqlite3")
        for rule in hundred_rules():
            db.create_rule("bench", parse_rule(rule).to_json(), "bench")
    p = PipelineProcess(_pipeline_env(bootstrap, topics, data_dir), free_port(), data_dir)
    try:
        p.start()
        samples: list[tuple[float, float]] = []
        while not samples or samples[-1][1] < n:
            samples.append((time.monotonic(), metric(p.url, "auditstream_processor_stored_total")))
            time.sleep(0.1)
        lo = next(s for s in samples if s[1] >= 0.1 * n)
        hi = next(s for s in samples if s[1] >= 0.9 * n)
        eps = (hi[1] - lo[1]) / (hi[0] - lo[0])
        evaluated_after = None
        if with_rules:
            while metric(p.url, "auditstream_alerts_events_evaluated_total") < n:
                time.sleep(0.1)
            evaluated_after = time.monotonic() - samples[-1][0]
    finally:
        p.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "events": n,
        "rules": 100 if with_rules else 0,
        "stored_eps_10_90": round(eps),
        "evaluation_done_after_stored_s": evaluated_after,
    }


def latency_run(bootstrap: str, dsn: str, rate: float, seconds: float) -> dict:
    topics = new_topics(bootstrap)
    with receiver() as hooks, running_pipeline(bootstrap, topics, dsn, **ENV) as p:
        token = KeyStore(p.data_dir / "keys.sqlite3").create("lat", Role.ADMIN, "bench").token
        http = httpx.Client(base_url=p.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        rule = {
            "name": "lat",
            "kind": "match",
            "filter": {"action": ["user.role_changed"]},
            "targets": [{"type": "webhook", "url": hooks.url + "/lat", "secret": "x" * 20}],
        }
        assert http.post("/v1/alerts/rules", json=rule).status_code == 201
        sent: dict[str, float] = {}
        total = int(rate * seconds)
        with SyncAuditProducer(bootstrap, topics.events, linger_ms=0) as producer:
            start = time.monotonic()
            for i in range(total):
                eid = str(uuid.uuid4())
                action = "user.role_changed" if i % 10 == 0 else "user.login"
                ev = {
                    "event_id": eid,
                    "tenant_id": "lat",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "action": action,
                    "actor": {"id": f"u{i % 50}", "type": "user"},
                }
                if action == "user.role_changed":
                    sent[eid] = time.time()
                producer.emit(ev)
                delay = start + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.flush(timeout=60)
        hooks.wait_for(lambda: len(hooks.on("/lat")) >= len(sent), "all alerts", timeout=120)
        lat, fire = [], []
        for r in hooks.on("/lat"):
            alert = orjson.loads(r.body)["alert"]
            t_sent = sent[alert["event_ids"][0]]
            created = datetime.fromisoformat(alert["created_at"].replace("Z", "+00:00")).timestamp()
            lat.append(r.at - t_sent)
            fire.append(created - t_sent)
        lat.sort()
    q = statistics.quantiles(lat, n=100)
    qf = statistics.quantiles(fire, n=100)
    return {
        "rate": rate,
        "alerts": len(lat),
        "p50_ms": round(q[49] * 1000),
        "p99_ms": round(q[98] * 1000),
        "max_ms": round(lat[-1] * 1000),
        "produce_to_fired_p50_ms": round(qf[49] * 1000),
        "produce_to_fired_p99_ms": round(qf[98] * 1000),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--only", choices=["ingest", "latency"], default=None)
    args = ap.parse_args()
    broker = LocalBroker()
    broker.start()
    dsn_dir = tempfile.mkdtemp(prefix="alerts-bench-")
    try:
        dsn = f"chdb://{dsn_dir}"
        for with_rules in (False, True, False, True) if args.only != "latency" else ():
            print(orjson.dumps(ingest_run(broker.bootstrap, args.events, with_rules)).decode(), flush=True)
        if args.only != "ingest":
            print(
                orjson.dumps(latency_run(broker.bootstrap, dsn, args.rate, args.seconds)).decode(), flush=True
            )
    finally:
        broker.stop()
        broker.remove()
        shutil.rmtree(dsn_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
