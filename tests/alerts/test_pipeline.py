"""Alert rules on the real pipeline: broker, processor, chDB store, API, and a real receiver.

One pipeline (``auditstream run`` as a child process) serves the module; each test uses its
own tenant, so they do not see each other's events. The SIGKILL test has its own pipeline.
A *sentinel* match rule per tenant tells when the evaluator has passed every earlier event:
a tenant's events share one partition (keyed by tenant), so once the alert of an event
produced last exists, everything produced before it was evaluated.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from auditstream.api.keys import KeyStore, Role
from auditstream.producer import SyncAuditProducer
from tests.alerts.receiver import Receiver, receiver
from tests.fixtures.kafka import Topics, new_topics
from tests.fixtures.pipeline import PipelineProcess, running_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline]

SECRET = "test-secret-0123456789"
EXAMPLES = Path(__file__).resolve().parents[2] / "services" / "auditstream" / "alerts" / "sigma_examples"
ENV = {
    "AUDITSTREAM_ALLOW_PRIVATE_TARGETS": "true",
    "AUDITSTREAM_ALERT_POLL_SECONDS": "0.1",
    "AUDITSTREAM_ALERT_RETRY_INITIAL_SECONDS": "0.2",
    "AUDITSTREAM_ALERT_RETRY_MAX_SECONDS": "2",
    "AUDITSTREAM_BATCH_MAX_SECONDS": "0.2",
    "AUDITSTREAM_ALERT_GIVE_UP_SECONDS": "8",
}


@pytest.fixture(scope="module")
def topics_m(kafka_bootstrap: str) -> Topics:
    return new_topics(kafka_bootstrap)


@pytest.fixture(scope="module")
def pipe(kafka_bootstrap: str, topics_m: Topics, clickhouse_dsn: str) -> Iterator[PipelineProcess]:
    with running_pipeline(kafka_bootstrap, topics_m, clickhouse_dsn, **ENV) as process:
        yield process


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


class Tenant:
    def __init__(self, pipe: PipelineProcess, bootstrap: str, topic: str, hooks: Receiver) -> None:
        self.id = f"t{uuid.uuid4().hex[:10]}"
        self.pipe = pipe
        self.bootstrap = bootstrap
        self.topic = topic
        self.hooks = hooks
        token = KeyStore(pipe.data_dir / "keys.sqlite3").create(self.id, Role.ADMIN, "alerts test").token
        self.token = token
        self.http = httpx.Client(base_url=pipe.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.path = f"/{self.id}"
        self.sentinels = 0
        self.sentinel_rule = self.rule(
            {"name": "sentinel", "kind": "match", "filter": {"action": ["test.sentinel"]}}, target=False
        )["id"]

    def rule(self, body: dict[str, Any], *, target: bool = True, path: str | None = None) -> dict[str, Any]:
        if target:
            body = {
                **body,
                "targets": [
                    {"type": "webhook", "url": self.hooks.url + (path or self.path), "secret": SECRET}
                ],
            }
        r = self.http.post("/v1/alerts/rules", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def produce(self, events: list[dict[str, Any]]) -> None:
        with SyncAuditProducer(self.bootstrap, self.topic, linger_ms=0) as producer:
            for e in events:
                producer.emit({"tenant_id": self.id, **e})
            producer.flush(timeout=30)

    def event(self, action: str, actor: str, at: datetime, **extra: Any) -> dict[str, Any]:
        return {
            "occurred_at": at.isoformat(timespec="milliseconds"),
            "action": action,
            "actor": {"id": actor, "type": "user"},
            **extra,
        }

    def alerts(self, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get("/v1/alerts", params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def until(self, predicate: Any, what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.pipe.tail()}")

    def settle(self) -> None:
        """Produce a sentinel and wait for its alert: every earlier event was evaluated."""
        self.sentinels += 1
        n = self.sentinels
        self.produce([self.event("test.sentinel", f"sentinel-{n}", datetime.now(UTC))])
        self.until(lambda: len(self.alerts(rule_id=self.sentinel_rule)) >= n, "the sentinel alert")


@pytest.fixture
def tenant(pipe: PipelineProcess, kafka_bootstrap: str, topics_m: Topics, hooks: Receiver) -> Tenant:
    return Tenant(pipe, kafka_bootstrap, topics_m.events, hooks)


def failed_login(t: Tenant, actor: str, at: datetime) -> dict[str, Any]:
    return t.event("user.login_failed", actor, at, outcome="failure")


SPIKE = {
    "name": "failed-login spike",
    "kind": "threshold",
    "filter": {"action": ["user.login_failed"]},
    "group_by": "actor.id",
    "threshold": 5,
    "window": "5m",
}


def test_threshold_five_fire_once_four_do_not_ten_fire_once_per_window(tenant: Tenant) -> None:
    rule = tenant.rule(SPIKE)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    events = [failed_login(tenant, "alice", t0 + timedelta(seconds=50 * i)) for i in range(4)]
    events += [failed_login(tenant, "bob", t0 + timedelta(seconds=50 * i)) for i in range(5)]
    events += [failed_login(tenant, "carol", t0 + timedelta(seconds=20 * i)) for i in range(10)]
    # dave: ten in two windows ten minutes apart -> two alerts
    events += [failed_login(tenant, "dave", t0 + timedelta(seconds=10 * i)) for i in range(5)]
    events += [failed_login(tenant, "dave", t0 + timedelta(minutes=10, seconds=10 * i)) for i in range(5)]
    tenant.produce(events)
    tenant.settle()
    fired = tenant.alerts(rule_id=rule["id"])
    by_actor: dict[str, int] = {}
    for a in fired:
        by_actor[a["group"]["actor.id"]] = by_actor.get(a["group"]["actor.id"], 0) + 1
    assert by_actor == {"bob": 1, "carol": 1, "dave": 2}
    bob = next(a for a in fired if a["group"]["actor.id"] == "bob")
    assert len(bob["event_ids"]) == 5
    # Delivered once each, and the alert is in the tenant's own audit log.
    tenant.hooks.wait_for(lambda: len(tenant.hooks.on(tenant.path)) >= 4, "four deliveries")
    ids = [orjson.loads(r.body)["alert"]["id"] for r in tenant.hooks.on(tenant.path)]
    assert sorted(ids) == sorted(a["id"] for a in fired)

    def triggered() -> list[dict[str, Any]]:
        params = {"action": "alert.triggered", "since": "-2h"}
        found = [e for e in tenant.http.get("/v1/events", params=params).json()["data"]]
        found = [e for e in found if e["resource"]["id"] == rule["id"]]
        return found if len(found) >= 4 else []

    logged = tenant.until(triggered, "alert.triggered in the audit log")
    assert sorted(e["details"]["alert_id"] for e in logged) == sorted(a["id"] for a in fired)
    assert {e["source"]["service"] for e in logged} == {"auditstream-alerts"}
    created = tenant.http.get("/v1/events", params={"action": "alert_rule.created", "since": "-2h"}).json()[
        "data"
    ]
    assert rule["id"] in {e["resource"]["id"] for e in created}


def test_role_change_fires_a_signed_match_alert(tenant: Tenant) -> None:
    # How fast (the 5 s bar) is measured by `make bench` (alerts p99), not asserted here: a
    # wall-clock bound in a test fails on a busy CI box, not on slow code.
    tenant.rule({"name": "privilege change", "kind": "match", "filter": {"action": ["user.role_changed"]}})
    tenant.produce([tenant.event("user.role_changed", "eve", datetime.now(UTC), details={"role": "admin"})])
    tenant.hooks.wait_for(lambda: len(tenant.hooks.on(tenant.path)) >= 1, "the match alert", timeout=30)
    got = tenant.hooks.on(tenant.path)[0]
    # The documented recipe: HMAC-SHA256(secret, timestamp + "." + raw body), hex, "v1=" prefix.
    ts = got.headers["X-Auditstream-Timestamp"]
    expected = "v1=" + hmac.new(SECRET.encode(), f"{ts}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["X-Auditstream-Signature"], expected)
    assert abs(time.time() - int(ts)) < 300
    payload = orjson.loads(got.body)
    assert payload["type"] == "alert.triggered" and payload["alert"]["rule_name"] == "privilege change"


def test_receiver_failing_three_times_gets_the_alert_once(tenant: Tenant) -> None:
    path = f"{tenant.path}/flaky"
    tenant.hooks.fail_first[path] = 3
    tenant.rule({"name": "keys", "kind": "match", "filter": {"action": ["key.*"]}}, path=path)
    tenant.produce([tenant.event("key.created", "frank", datetime.now(UTC))])
    tenant.hooks.wait_for(lambda: any(r.answered == 200 for r in tenant.hooks.on(path)), "a 200", timeout=60)
    alert = tenant.alerts()[0] if tenant.alerts() else None
    assert alert is not None
    detail = tenant.until(
        lambda: (
            (d := tenant.http.get(f"/v1/alerts/{alert['id']}").json())["deliveries"][0]["status"]
            == "delivered"
            and d
        ),
        "the delivery log",
    )
    attempts = detail["deliveries"][0]["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 500, 500, 200]
    received = tenant.hooks.on(path)
    assert [r.answered for r in received] == [500, 500, 500, 200]  # one success: the alert once


def test_receiver_that_never_recovers_is_given_up_and_marked_failed(tenant: Tenant) -> None:
    path = f"{tenant.path}/down"
    tenant.hooks.fail_first[path] = 10**6
    tenant.rule({"name": "configs", "kind": "match", "filter": {"action": ["config.updated"]}}, path=path)
    tenant.produce([tenant.event("config.updated", "gina", datetime.now(UTC))])
    alert_id = tenant.until(lambda: tenant.alerts() and tenant.alerts()[0]["id"], "the alert")

    def failed() -> dict[str, Any] | None:
        d = tenant.http.get(f"/v1/alerts/{alert_id}").json()["deliveries"][0]
        return d if d["status"] == "failed" else None

    delivery = tenant.until(failed, "the delivery given up", timeout=90)
    assert len(delivery["attempts"]) >= 2
    assert {a["status_code"] for a in delivery["attempts"]} == {500}
    assert delivery["last_error"] == "HTTP 500"


def test_slow_receiver_does_not_delay_another_target_and_slack_payload(tenant: Tenant) -> None:
    slow, slack = f"{tenant.path}/slow", f"{tenant.path}/slack"
    tenant.hooks.slow[slow] = 6.0
    tenant.rule(
        {
            "name": "exports watched",
            "kind": "match",
            "filter": {"action": ["export.created"]},
            "targets": [
                {"type": "webhook", "url": tenant.hooks.url + slow, "secret": SECRET},
                {"type": "slack", "url": tenant.hooks.url + slack},
            ],
        },
        target=False,
    )
    tenant.produce([tenant.event("export.created", "hank", datetime.now(UTC))])
    tenant.hooks.wait_for(lambda: len(tenant.hooks.on(slack)) == 1, "the slack message", timeout=30)
    message = orjson.loads(tenant.hooks.on(slack)[0].body)
    assert "exports watched" in message["text"] and message["blocks"][0]["type"] == "section"
    tenant.hooks.wait_for(lambda: len(tenant.hooks.on(slow)) == 1, "the slow delivery", timeout=30)
    # The slow receiver records its request when its 6 s are over: Slack's came before, so it
    # did not wait for the slow one (compared on the receiver's clock, not on when we looked).
    assert tenant.hooks.on(slack)[0].at < tenant.hooks.on(slow)[0].at


def test_sigmahq_correlation_rule_fires_on_what_it_describes(tenant: Tenant) -> None:
    rule = tenant.rule({"kind": "sigma", "sigma": (EXAMPLES / "okta_mfa_reset_burst.yml").read_text()})
    assert rule["rule"]["kind"] == "threshold" and rule["rule"]["group_by"] == "actor.id"
    now = datetime.now(UTC)
    tenant.produce(
        [
            tenant.event("user.mfa.factor.reset_all", "mallory", now - timedelta(minutes=3 - i))
            for i in range(3)
        ]
        + [tenant.event("user.mfa.factor.reset_all", "oscar", now - timedelta(minutes=2)) for _ in range(2)]
    )
    tenant.settle()
    fired = tenant.alerts(rule_id=rule["id"])
    assert [a["group"] for a in fired] == [{"actor.id": "mallory"}]
    assert fired[0]["severity"] == "high"


def test_sigma_specification_correlation_fires_on_exactly_what_it_describes(tenant: Tenant) -> None:
    """SigmaHQ's published correlation (the specification's example), verbatim, on the real pipeline."""
    rule = tenant.rule(
        {"kind": "sigma", "sigma": (EXAMPLES / "sigma_spec_failed_logins_then_success.yml").read_text()}
    )
    assert rule["rule"]["kind"] == "sequence" and rule["rule"]["window"] == "10m"
    t0 = datetime.now(UTC) - timedelta(minutes=20)

    def attempts(actor: str, failures: int, success: bool) -> list[dict[str, Any]]:
        out = [failed_login(tenant, actor, t0 + timedelta(seconds=20 * i)) for i in range(failures)]
        if success:
            out.append(tenant.event("user.login", actor, t0 + timedelta(seconds=20 * failures + 5)))
        return out

    events = attempts("brute", 10, True)  # the brute force the rule describes
    events += attempts("typo", 9, True)  # one failure below the threshold
    events += attempts("locked", 12, False)  # failures, never a success
    # A success before the failures: the order matters.
    events += [tenant.event("user.login", "early", t0 - timedelta(seconds=30)), *attempts("early", 10, False)]
    tenant.produce(events)
    tenant.settle()
    fired = tenant.alerts(rule_id=rule["id"])
    assert [a["group"] for a in fired] == [{"actor.id": "brute"}]
    assert fired[0]["severity"] == "high" and len(fired[0]["event_ids"]) == 11
    tenant.hooks.wait_for(lambda: len(tenant.hooks.on(tenant.path)) == 1, "the delivery")
    assert orjson.loads(tenant.hooks.on(tenant.path)[0].body)["alert"]["id"] == fired[0]["id"]


def test_bad_rules_get_422_naming_the_field(tenant: Tenant) -> None:
    cases = [
        ({**SPIKE, "colour": "red"}, "colour"),
        ({**SPIKE, "window": "25h"}, "window"),
        ({"kind": "sigma", "sigma": "title: ["}, "sigma"),
        (
            {**SPIKE, "targets": [{"type": "webhook", "url": "file:///etc/passwd", "secret": SECRET}]},
            "targets.0.url",
        ),
        ({**SPIKE, "filter": {"actor_name": "x"}}, "filter.actor_name"),
    ]
    for body, field in cases:
        r = tenant.http.post("/v1/alerts/rules", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"] == field, r.text


def test_rules_crud_and_ack_resolve(tenant: Tenant) -> None:
    rule = tenant.rule(SPIKE)
    assert rule["rule"]["targets"][0]["secret"] == "***"
    r = tenant.http.patch(f"/v1/alerts/rules/{rule['id']}", json={"threshold": 3})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["rule"]["threshold"] == 3
    listed = tenant.http.get("/v1/alerts/rules").json()
    assert {x["id"] for x in listed["data"]} == {rule["id"], tenant.sentinel_rule}
    tenant.settle()
    alert = tenant.alerts(rule_id=tenant.sentinel_rule)[0]
    acked = tenant.http.post(f"/v1/alerts/{alert['id']}/acknowledge").json()
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"]
    resolved = tenant.http.post(f"/v1/alerts/{alert['id']}/resolve").json()
    assert resolved["status"] == "resolved" and resolved["resolved_at"]
    assert [a["id"] for a in tenant.alerts(status="resolved")] == [alert["id"]]
    assert tenant.http.delete(f"/v1/alerts/rules/{rule['id']}").status_code == 204
    assert tenant.http.get(f"/v1/alerts/rules/{rule['id']}").status_code == 404
    spec = tenant.http.get("/openapi.json").json()
    assert "/v1/alerts/rules" in spec["paths"] and "/v1/alerts" in spec["paths"]


def test_cli_imports_sigma_and_reports_refusals(tenant: Tenant, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from auditstream.cli.main import app

    runner = CliRunner()
    env = {"AUDITSTREAM_API_KEY": tenant.token}
    path = str(EXAMPLES / "github_org_member_role_changed_to_admin.yml")
    args = ["alerts", "rules", "import-sigma", path, "--webhook", tenant.hooks.url + tenant.path]
    result = runner.invoke(app, [*args, "--secret", SECRET, "--url", tenant.pipe.url], env=env)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["rule"]["filter"] == {
        "action": ["org.update_member"],
        "details.permission": "admin",
    }
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "title: x\nlogsource: {product: okta}\ndetection:\n  s:\n    displaymessage: x\n  condition: s\n"
    )
    result = runner.invoke(
        app, ["alerts", "rules", "import-sigma", str(bad), "--url", tenant.pipe.url], env=env
    )
    assert result.exit_code == 2
    assert "sigma.detection.displaymessage" in result.stderr
    listed = runner.invoke(app, ["alerts", "rules", "list", "--url", tenant.pipe.url], env=env)
    assert listed.exit_code == 0 and orjson.loads(listed.stdout)["count"] == 2


@pytest.mark.faults
@pytest.mark.timeout(300)
def test_alert_survives_sigkill_mid_window(
    kafka_bootstrap: str, clickhouse_dsn: str, hooks: Receiver
) -> None:
    topics = new_topics(kafka_bootstrap)
    with running_pipeline(kafka_bootstrap, topics, clickhouse_dsn, **ENV) as process:
        t = Tenant(process, kafka_bootstrap, topics.events, hooks)
        rule = t.rule(SPIKE)
        now = datetime.now(UTC)
        t.produce([failed_login(t, "zoe", now - timedelta(seconds=60 - i)) for i in range(3)])
        t.settle()  # three counted and their window state committed
        process.kill()
        process.start()
        t.produce([failed_login(t, "zoe", now - timedelta(seconds=50 - i)) for i in range(2)])
        t.settle()
        fired = t.alerts(rule_id=rule["id"])
        assert len(fired) == 1
        assert len(fired[0]["event_ids"]) == 5
        hooks.wait_for(lambda: len(hooks.on(t.path)) >= 1, "the delivery after the restart")
        # Delivery is at least once: a kill between the receiver's answer and the recorded
        # attempt sends again. Kill only once the attempt is recorded, to see nothing else repeats.
        t.until(
            lambda: (
                t.http.get(f"/v1/alerts/{fired[0]['id']}").json()["deliveries"][0]["status"] == "delivered"
            ),
            "the delivery recorded",
        )
        # Replay: kill again and restart; nothing is evaluated twice, nothing fires again.
        process.kill()
        process.start()
        t.settle()
        assert len(t.alerts(rule_id=rule["id"])) == 1
        assert len(hooks.on(t.path)) == 1
