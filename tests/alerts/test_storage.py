"""The alerts database: a page commits atomically and an alert is stored (and queued) once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from auditstream.alerts.evaluator import Evaluator
from auditstream.alerts.model import parse_rule
from auditstream.alerts.storage import AlertDB
from tests.alerts.rows import stored

RULE = {
    "name": "spike",
    "kind": "threshold",
    "filter": {"action": ["user.login_failed"]},
    "group_by": "actor.id",
    "threshold": 3,
    "window": "5m",
    "targets": [{"type": "webhook", "url": "https://hooks.example.com/a", "secret": "s" * 20}],
}


def evaluate(db: AlertDB, rows: list[dict]) -> tuple[dict, list]:
    rules = db.active_rules()["acme"]
    ev = Evaluator(rules, lateness=timedelta(minutes=5))
    matches = ev.match(rows)
    states = db.load_states(ev.state_keys(matches))
    return states, ev.apply(matches, states)


def test_replayed_page_stores_the_alert_and_its_delivery_once(tmp_path: Path) -> None:
    db = AlertDB(tmp_path / "alerts.sqlite3")
    rule = db.create_rule("acme", parse_rule(RULE).to_json(), "k1")
    rows = [stored(at=i) for i in range(3)]
    states, fired = evaluate(db, rows)
    assert len(fired) == 1
    versions = {rule["id"]: 1}
    assert db.commit_page("acme", {0: 2}, states, fired, rule_versions=versions) == [fired[0].id]
    # The same page again (a crash before the caller learnt of the commit): nothing new.
    assert db.commit_page("acme", {0: 2}, states, fired, rule_versions=versions) == []
    alerts = db.list_alerts("acme")
    assert [a["id"] for a in alerts] == [fired[0].id]
    assert len(db.get_alert(fired[0].id, "acme")["deliveries"]) == 1
    assert db.cursor("acme") == {0: 2}


def test_state_is_shared_across_pages_and_reset_by_an_edit(tmp_path: Path) -> None:
    db = AlertDB(tmp_path / "alerts.sqlite3")
    rule = db.create_rule("acme", parse_rule(RULE).to_json(), "k1")
    states, fired = evaluate(db, [stored(at=0), stored(at=1)])
    db.commit_page("acme", {0: 1}, states, fired, rule_versions={rule["id"]: 1})
    assert db.load_states(states.keys())  # two counted, persisted
    db.update_rule(rule["id"], "acme", parse_rule({**RULE, "threshold": 4}).to_json(), "k2")
    assert db.load_states(states.keys()) == {}  # the edit starts the window afresh
    # A page evaluated with the old version commits its position but not its state or alerts.
    states, fired = evaluate(db, [stored(at=2), stored(at=3), stored(at=4), stored(at=5)])
    stale_rules = {rule["id"]: 1}
    assert db.commit_page("acme", {0: 5}, states, fired, rule_versions=stale_rules) == []
    assert db.load_states(states.keys()) == {}
    assert db.cursor("acme") == {0: 5}


def test_delivery_queue_and_attempt_log(tmp_path: Path) -> None:
    db = AlertDB(tmp_path / "alerts.sqlite3")
    rule = db.create_rule("acme", parse_rule(RULE).to_json(), "k1")
    states, fired = evaluate(db, [stored(at=i) for i in range(3)])
    db.commit_page("acme", {0: 2}, states, fired, rule_versions={rule["id"]: 1})
    due = db.due_deliveries(now=1e12, limit=10, exclude=set())
    assert len(due) == 1
    db.record_attempt(
        due[0]["id"],
        status_code=500,
        error="HTTP 500",
        duration_ms=3,
        outcome="pending",
        next_attempt_at=2e12,
    )
    assert db.due_deliveries(now=1e12, limit=10, exclude=set()) == []  # backing off
    db.record_attempt(
        due[0]["id"], status_code=200, error=None, duration_ms=2, outcome="delivered", next_attempt_at=None
    )
    delivery = db.get_alert(fired[0].id, "acme")["deliveries"][0]
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert "secret" not in delivery["target"]
