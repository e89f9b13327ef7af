"""Rules applied to a page of stored rows: which rows match, and which alerts fire.

Pure: no database, no clock. The feed follower (``follower.py``) calls it in two steps so
it can load just the window state it needs::

    matches = evaluator.match(rows)               # (rule, row, group, tag) per match
    states = load(keys_of(matches))               # from the alerts database
    fired = evaluator.apply(matches, states)      # mutates states, returns the alerts

An alert's id is a UUIDv5 of (rule id, group, window start): evaluating the same events
again, after a crash or a replay, gives the same id, and the alerts table keeps the first.
Rows the alert service wrote itself (``alert.*`` from ``auditstream-alerts``) are never
evaluated: a rule matching ``alert.triggered`` would otherwise feed on its own alerts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from auditstream.alerts.matcher import Matcher, compile_filter, field_value
from auditstream.alerts.model import Rule
from auditstream.alerts.windows import WindowSpec, add, new_state
from auditstream.store.filters import split_actions

__all__ = ["ALERT_NAMESPACE", "SOURCE_SERVICE", "Evaluator", "FiredAlert", "Match", "alert_id", "to_ms"]

SOURCE_SERVICE = "auditstream-alerts"
ALERT_NAMESPACE = uuid.UUID("5b3f8f64-3a4e-4c38-9a59-6c1d1c8f0a13")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(value: datetime) -> int:
    if value.tzinfo is None:  # clickhouse-connect may hand DateTime64(3, 'UTC') back naive
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def alert_id(rule_id: str, group: str, window_start_ms: int) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{rule_id}\n{group}\n{window_start_ms}"))


@dataclass(frozen=True, slots=True)
class FiredAlert:
    id: str
    tenant_id: str
    rule_id: str
    rule_name: str
    kind: str
    severity: str
    group: dict[str, str]
    group_key: str
    window_start: datetime
    window_end: datetime
    event_ids: tuple[str, ...]
    targets: tuple[dict[str, Any], ...]


@dataclass(slots=True)
class Match:
    rule: _Compiled
    row: Mapping[str, Any]
    group_key: str
    tag: Any


class _Compiled:
    __slots__ = ("group_fields", "matcher", "rule", "spec", "step_matchers")

    def __init__(self, rule: Rule, lateness: timedelta) -> None:
        self.rule = rule
        self.step_matchers: tuple[Matcher, ...] = tuple(compile_filter(f) for f, _ in rule.steps)
        base = compile_filter(rule.filter)
        if self.step_matchers:
            steps = self.step_matchers
            self.matcher: Matcher = lambda r: base(r) and any(m(r) for m in steps)
        else:
            self.matcher = base
        self.group_fields = rule.group_by
        self.spec = (
            WindowSpec(
                kind=rule.kind,
                window_ms=int(rule.window.total_seconds() * 1000),
                lateness_ms=int(lateness.total_seconds() * 1000),
                threshold=rule.threshold,
                step_counts=tuple(n for _, n in rule.steps),
            )
            if rule.window is not None
            else None
        )

    def tag(self, row: Mapping[str, Any]) -> Any:
        if self.rule.kind == "distinct":
            return field_value(row, self.rule.distinct_field or "")
        if self.rule.kind == "sequence":
            return [i for i, m in enumerate(self.step_matchers) if m(row)]
        return None


def _action_keys(rule: Rule) -> tuple[list[str] | None, list[str]]:
    """(exact actions, prefixes) that a matching row's action must be among; None: any action."""

    def keys(actions: tuple[str, ...]) -> tuple[list[str], list[str]] | None:
        if not actions:
            return None
        exact, prefixes, match_all = split_actions(list(actions))
        return None if match_all else (exact, prefixes)

    base = keys(rule.filter.actions)
    if base is not None:
        return base
    if rule.steps:
        per_step = [keys(f.actions) for f, _ in rule.steps]
        if all(k is not None for k in per_step):
            return (
                [a for k in per_step if k for a in k[0]],
                [p for k in per_step if k for p in k[1]],
            )
    return None, []


class Evaluator:
    """The active rules of one tenant, compiled once per rule version."""

    def __init__(self, rules: Iterable[Rule], *, lateness: timedelta) -> None:
        self.rules = [_Compiled(r, lateness) for r in rules if r.enabled]
        # Most rules name exact actions: index them by action so a row is only tested against
        # the rules that can match it (100 rules cost ~1 predicate per row, not 100).
        self._by_action: dict[str, list[_Compiled]] = {}
        self._by_prefix: dict[str, list[_Compiled]] = {}
        self._always: list[_Compiled] = []
        for compiled in self.rules:
            exact, prefixes = _action_keys(compiled.rule)
            if exact is None:
                self._always.append(compiled)
                continue
            for action in exact:
                self._by_action.setdefault(action, []).append(compiled)
            for prefix in prefixes:
                self._by_prefix.setdefault(prefix, []).append(compiled)
        self._prefixes = tuple(self._by_prefix)
        self._cache: dict[str, list[_Compiled]] = {}

    def _candidates(self, action: str) -> list[_Compiled]:
        found = self._cache.get(action)
        if found is None:
            seen: set[int] = set()
            found = []
            for group in (
                self._by_action.get(action, []),
                *(self._by_prefix[p] for p in self._prefixes if action.startswith(p)),
                self._always,
            ):
                for compiled in group:
                    if id(compiled) not in seen:
                        seen.add(id(compiled))
                        found.append(compiled)
            found.sort(key=self.rules.index)  # rule order, whichever index found them
            if len(self._cache) < 10_000:
                self._cache[action] = found
        return found

    def match(self, rows: Sequence[Mapping[str, Any]]) -> list[Match]:
        out: list[Match] = []
        for row in rows:
            action = row["action"]
            if row.get("source_service") == SOURCE_SERVICE and action.startswith("alert."):
                continue
            for compiled in self._candidates(action):
                if not compiled.matcher(row):
                    continue
                if compiled.rule.kind == "match":
                    out.append(Match(compiled, row, "", None))
                    continue
                values = [field_value(row, name) for name in compiled.group_fields]
                if compiled.group_fields and not any(values):
                    continue  # no value to group by: not part of any group
                key = orjson.dumps(values).decode()
                out.append(Match(compiled, row, key, compiled.tag(row)))
        return out

    @staticmethod
    def state_keys(matches: Iterable[Match]) -> set[tuple[str, str]]:
        return {(m.rule.rule.id, m.group_key) for m in matches if m.rule.spec is not None}

    def apply(
        self, matches: Iterable[Match], states: dict[tuple[str, str], dict[str, Any]]
    ) -> list[FiredAlert]:
        """Run ``matches`` through their windows; ``states`` is updated in place (missing: new)."""
        fired: list[FiredAlert] = []
        for m in matches:
            rule = m.rule.rule
            row = m.row
            event_id = str(row["event_id"])
            t_ms = to_ms(row["occurred_at"])
            if m.rule.spec is None:  # match: every event is its own alert
                fired.append(self._alert(rule, event_id, {}, t_ms, t_ms, (event_id,)))
                continue
            if m.rule.spec.kind == "sequence" and not m.tag:
                continue
            state = states.setdefault((rule.id, m.group_key), new_state())
            outcome = add(state, m.rule.spec, t_ms, event_id, m.tag)
            if outcome.fired:
                values = orjson.loads(m.group_key)
                group = dict(zip(rule.group_by, values, strict=True))
                fired.append(
                    self._alert(
                        rule,
                        m.group_key,
                        group,
                        outcome.window_start_ms,
                        outcome.window_end_ms,
                        outcome.event_ids,
                    )
                )
        return fired

    @staticmethod
    def _alert(
        rule: Rule, key: str, group: dict[str, str], start: int, end: int, event_ids: tuple[str, ...]
    ) -> FiredAlert:
        return FiredAlert(
            id=alert_id(rule.id, key, start),
            tenant_id=rule.tenant_id,
            rule_id=rule.id,
            rule_name=rule.name,
            kind=rule.kind,
            severity=rule.severity,
            group=group,
            group_key=key,
            window_start=from_ms(start),
            window_end=from_ms(end),
            event_ids=event_ids,
            targets=rule.targets,
        )
