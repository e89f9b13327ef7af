"""Event-time windows and the evaluator on hand-made rows (pure, no services)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from auditstream.alerts.evaluator import SOURCE_SERVICE, Evaluator
from auditstream.alerts.model import parse_rule
from tests.alerts.rows import stored


def rule(**over: Any):
    raw = {
        "name": "spike",
        "kind": "threshold",
        "filter": {"action": ["user.login_failed"]},
        "group_by": "actor.id",
        "threshold": 5,
        "window": "5m",
    }
    raw.update(over)
    from dataclasses import replace

    return replace(parse_rule(raw), id=str(over.get("name", "r1")), tenant_id="acme")


def run(rules: list, rows: list[dict], states: dict | None = None, lateness: float = 60) -> list:
    ev = Evaluator(rules, lateness=timedelta(seconds=lateness))
    states = {} if states is None else states
    matches = ev.match(rows)
    return ev.apply(matches, states)


def test_five_failed_logins_in_five_minutes_fire_once_four_do_not() -> None:
    four = [stored(at=i * 60) for i in range(4)]
    assert run([rule()], four) == []
    five = [*four, stored(at=240)]
    fired = run([rule()], five)
    assert len(fired) == 1
    assert fired[0].group == {"actor.id": "alice"}
    assert set(fired[0].event_ids) == {str(r["event_id"]) for r in five}


def test_ten_in_one_window_fire_once_and_a_later_window_again() -> None:
    ten = [stored(at=i * 20) for i in range(10)]
    assert len(run([rule()], ten)) == 1
    states: dict = {}
    first = run([rule()], ten, states)
    later = [stored(at=600 + i) for i in range(5)]
    second = run([rule()], later, states)
    assert len(first) == 1 and len(second) == 1
    assert first[0].id != second[0].id


def test_events_spread_wider_than_the_window_do_not_fire() -> None:
    assert run([rule()], [stored(at=i * 90) for i in range(5)]) == []  # 6 minutes for five


def test_groups_are_separate() -> None:
    rows = [stored(actor="alice", at=i) for i in range(3)] + [stored(actor="bob", at=i) for i in range(3)]
    assert run([rule()], rows) == []


def test_late_event_within_lateness_counts_beyond_it_does_not() -> None:
    rows = [stored(at=1000 + i) for i in range(4)]
    late_ok = stored(at=1000 - 30)
    assert len(run([rule()], [*rows, late_ok], lateness=60)) == 1
    too_late = stored(at=1000 - 120)  # still inside the window, but older than the lateness
    assert run([rule(window="10m")], [*rows, too_late], lateness=60) == []


def test_out_of_order_arrival_gives_the_same_alert_id() -> None:
    rows = [stored(at=i * 10) for i in range(5)]
    a = run([rule()], rows, lateness=600)
    b = run([rule()], list(reversed(rows)), lateness=600)
    assert [x.id for x in a] == [x.id for x in b]


def test_state_survives_json_round_trip_between_pages() -> None:
    import orjson

    states: dict = {}
    assert run([rule()], [stored(at=i) for i in range(3)], states) == []
    states = {k: orjson.loads(orjson.dumps(v)) for k, v in states.items()}
    assert len(run([rule()], [stored(at=10 + i) for i in range(2)], states)) == 1


def test_match_fires_per_event_with_a_deterministic_id() -> None:
    r = rule(
        kind="match", filter={"action": ["user.role_changed"]}, group_by=None, threshold=None, window=None
    )
    rows = [stored(action="user.role_changed"), stored(action="user.login")]
    first, again = run([r], rows), run([r], rows)
    assert len(first) == 1 and first[0].id == again[0].id


def test_distinct_counts_values() -> None:
    r = rule(kind="distinct", group_by="actor.ip", distinct_field="actor.id", threshold=3)
    rows = [stored(actor=a, at=i, actor_ip="203.0.113.9") for i, a in enumerate(["a", "b", "a", "a"])]
    assert run([r], rows) == []
    assert len(run([r], [*rows, stored(actor="c", at=9, actor_ip="203.0.113.9")])) == 1


def test_sequence_needs_the_order() -> None:
    r = rule(
        kind="sequence",
        filter={},
        threshold=None,
        sequence=[
            {"filter": {"action": ["user.login_failed"]}, "count": 3},
            {"filter": {"action": ["user.login"]}},
        ],
    )
    fails = [stored(at=i) for i in range(3)]
    ok_after = stored(action="user.login", at=10)
    assert len(run([r], [*fails, ok_after])) == 1
    ok_before = stored(action="user.login", at=-5)
    assert run([r], [ok_before, *fails]) == []


def test_the_alert_services_own_events_are_not_evaluated() -> None:
    r = rule(kind="match", filter={"action": ["alert.*"]}, group_by=None, threshold=None, window=None)
    own = stored(action="alert.triggered", source_service=SOURCE_SERVICE)
    theirs = stored(action="alert.acknowledged", source_service="auditstream-api")
    assert len(run([r], [own, theirs])) == 1


def test_the_action_index_finds_exactly_what_testing_every_rule_finds() -> None:
    import random
    from dataclasses import replace

    from auditstream.alerts.matcher import compile_filter

    filters = [
        {"action": ["user.login_failed"]},
        {"action": ["user.*"]},
        {},
        {"actor": ["a"]},
        {"action": ["key.created", "config.*"], "outcome": "failure"},
    ]
    rules = [
        replace(parse_rule({"name": f"r{i}", "kind": "match", "filter": f}), id=f"r{i}", tenant_id="acme")
        for i, f in enumerate(filters)
    ]
    rules.append(
        replace(
            parse_rule(
                {
                    "name": "seq",
                    "kind": "sequence",
                    "window": "5m",
                    "sequence": [
                        {"filter": {"action": ["user.login_failed"]}},
                        {"filter": {"action": ["user.*"]}},
                    ],
                }
            ),
            id="seq",
            tenant_id="acme",
        )
    )
    rng = random.Random(3)
    actions = ["user.login_failed", "user.login", "key.created", "config.updated", "scan.created", "userx.y"]
    rows = [
        stored(action=rng.choice(actions), actor=rng.choice("ab"), outcome=rng.choice(["success", "failure"]))
        for _ in range(300)
    ]
    ev = Evaluator(rules, lateness=timedelta(0))
    got = {(m.rule.rule.id, str(m.row["event_id"])) for m in ev.match(rows)}
    brute = set()
    for r in rules:
        base = compile_filter(r.filter)
        steps = [compile_filter(f) for f, _ in r.steps]
        for row in rows:
            if base(row) and (not steps or any(s(row) for s in steps)):
                brute.add((r.id, str(row["event_id"])))
    assert got == brute and got


def test_distinct_state_holds_one_entry_per_value() -> None:
    r = rule(kind="distinct", group_by="actor.ip", distinct_field="actor.id", threshold=50)
    rows = [stored(actor=f"u{i % 40}", at=i / 100, actor_ip="203.0.113.9") for i in range(4000)]
    states: dict = {}
    assert run([r], rows, states) == []  # forty distinct actors, however many events
    assert len(next(iter(states.values()))["e"]) == 40
    more = [stored(actor=f"v{i}", at=50 + i / 100, actor_ip="203.0.113.9") for i in range(10)]
    fired = run([r], more, states)
    assert len(fired) == 1 and len(fired[0].event_ids) == 50
