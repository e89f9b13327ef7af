"""Sigma rules (YAML) imported as alert rules, parsed by pySigma and mapped onto our kinds.

What maps (anything else is refused with a :class:`RuleError` naming the part):

* a single detection rule -> ``match``; its condition may be one selection or an ``and`` of
  selections; inside a selection, fields are ANDed and a field's values ORed (Sigma's own
  semantics). ``or`` across different fields, ``not``, ``1 of``/``all of`` over several
  selections with different fields, regular expressions and ``contains`` are refused:
  the /v1/events vocabulary cannot say them.
* ``correlation: event_count`` over one base rule -> ``threshold`` (``gte: N``, or ``gt: N``
  as ``N+1``); ``value_count`` -> ``distinct`` on the condition's ``field``;
  ``temporal_ordered`` -> ``sequence`` with one step per referenced rule. ``group-by`` ->
  ``group_by``, ``timespan`` -> ``window`` (at most 24h).
* a ``temporal_ordered`` step may itself be an ``event_count`` correlation over one base rule
  (the chained form of the specification's example "Failed Logins Followed by Successful
  Login"): it becomes a step with ``count: N``, if it groups by the same fields and its
  timespan is at most the outer one. The whole sequence must then fit in the outer
  timespan, which is narrower than Sigma's reading (there the last step may come up to a
  timespan after the N-th event); a document that needs more is refused, not widened.

Field names go through :data:`FIELD_MAP` (case-insensitive): Okta System Log and GitHub audit
log names onto our filter parameters. Values: ``outcome.result`` SUCCESS/ALLOW -> success,
FAILURE/DENY -> failure; a trailing ``*`` after a dot on an action (or ``|startswith``
ending in a dot) becomes our ``prefix.*``; ``|cidr`` on an IP field becomes the CIDR.
Keyword detections (no field) become ``q``.

Rules of other log sources can map too when their values are translated explicitly:
:data:`VALUE_MAP` gives, per Sigma ``logsource`` (product, service), a field and the table of
its values (Windows Security ``EventID`` 4625 -> ``user.login_failed``, ...). A value not in
the table is refused by name; nothing is guessed.
"""

from __future__ import annotations

import re
from typing import Any

from auditstream.alerts.model import RuleError, parse_window

__all__ = ["FIELD_MAP", "GROUP_MAP", "VALUE_MAP", "sigma_to_rule"]

# Sigma field (lower case) -> our filter parameter.
FIELD_MAP: dict[str, str] = {
    "action": "action",
    "eventtype": "action",
    "event_type": "action",
    "actor": "actor",
    "actor.id": "actor",
    "actor.alternateid": "actor",
    "user": "actor",
    "user.name": "actor",
    "username": "actor",
    "outcome": "outcome",
    "outcome.result": "outcome",
    "actor_ip": "ip",
    "actor.ip": "ip",
    "client.ipaddress": "ip",
    "src_ip": "ip",
    "ipaddress": "ip",
    "resource.type": "resource_type",
    "target.type": "resource_type",
    "resource.id": "resource_id",
    "target.id": "resource_id",
    "repo": "resource_id",
    "repository": "resource_id",
    # GitHub audit entries carry these beside the action; producers put them in details.
    "permission": "details.permission",
    "visibility": "details.visibility",
    "org": "details.org",
}
# Per Sigma logsource (product, service): Sigma field (lower case) -> (our filter parameter,
# {Sigma value: our value}). Only these values map; the field means nothing elsewhere.
VALUE_MAP: dict[tuple[str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("windows", "security"): {
        # Windows logon audit events: 4624/4625 (Vista and later), 528/529 (Windows 2000/XP).
        "eventid": (
            "action",
            {
                "4624": "user.login",
                "528": "user.login",
                "4625": "user.login_failed",
                "529": "user.login_failed",
            },
        ),
    },
}
ValueTables = dict[str, tuple[str, dict[str, str]]]
# Sigma group-by / value_count fields (lower case) -> our group fields.
GROUP_MAP: dict[str, str] = {
    "actor": "actor.id",
    "actor.id": "actor.id",
    "actor.alternateid": "actor.id",
    "user": "actor.id",
    "user.name": "actor.id",
    "username": "actor.id",
    "actor_ip": "actor.ip",
    "actor.ip": "actor.ip",
    "client.ipaddress": "actor.ip",
    "src_ip": "actor.ip",
    "ipaddress": "actor.ip",
    "action": "action",
    "eventtype": "action",
    "target.id": "resource.id",
    "resource.id": "resource.id",
    "repo": "resource.id",
    "repository": "resource.id",
    "target.type": "resource.type",
    "resource.type": "resource.type",
    "org": "details.org",
}
_OUTCOMES = {
    "success": "success",
    "allow": "success",
    "failure": "failure",
    "deny": "failure",
    "unknown": "unknown",
}
_SINGLE = {"outcome", "ip", "resource_type", "resource_id", "q"}
_LEVELS = {"informational": "low", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}


def _map_field(name: str | None, path: str, tables: ValueTables) -> str:
    if name is None:
        return "q"
    if name.lower().startswith("details."):
        return name
    if name.lower() in tables:
        return tables[name.lower()][0]
    mapped = FIELD_MAP.get(name.lower())
    if mapped is None:
        raise RuleError(path, f"the Sigma field {name!r} has no mapping (see the Sigma mapping table)")
    return mapped


def _map_group(name: str, path: str) -> str:
    if name.lower().startswith("details."):
        return name
    mapped = GROUP_MAP.get(name.lower())
    if mapped is None:
        raise RuleError(path, f"the Sigma field {name!r} cannot be grouped on (no mapping)")
    return mapped


def _value(ours: str, value: Any, path: str, table: dict[str, str] | None = None) -> str:
    from sigma.types import SigmaCIDRExpression, SigmaNumber, SigmaString

    if table is not None:
        text = str(value) if isinstance(value, SigmaNumber | SigmaString) else None
        if text is None or text not in table:
            raise RuleError(path, f"the value {str(value)[:40]!r} has no mapping (known: {sorted(table)})")
        return table[text]
    if isinstance(value, SigmaCIDRExpression):
        if ours != "ip":
            raise RuleError(path, "the cidr modifier applies to IP fields only")
        return str(value.network)
    if isinstance(value, SigmaNumber):
        return str(value)
    if not isinstance(value, SigmaString):
        raise RuleError(
            path, f"{type(value).__name__} values (regular expressions, null, ...) are not supported"
        )
    if not value.contains_special():
        text = str(value)
        if ours == "outcome":
            if text.lower() not in _OUTCOMES:
                raise RuleError(path, f"outcome {text!r} has no equivalent (success, failure, unknown)")
            return _OUTCOMES[text.lower()]
        return text
    # Wildcards: only "prefix.*" on an action, our one wildcard form.
    plain = value.s
    if ours == "action" and len(plain) >= 2 and plain[-1] is not None and not isinstance(plain[-1], str):
        head = "".join(p for p in plain[:-1] if isinstance(p, str))
        if all(isinstance(p, str) for p in plain[:-1]) and head.endswith(".") and str(value).endswith("*"):
            return head + "*"
    raise RuleError(
        path, "wildcards (contains, endswith, *) are not supported except a trailing '.*' on an action"
    )


def _collect(node: Any, out: dict[str, list[str]], path: str, tables: ValueTables) -> None:
    from sigma.conditions import (
        ConditionAND,
        ConditionFieldEqualsValueExpression,
        ConditionNOT,
        ConditionOR,
        ConditionValueExpression,
    )

    if isinstance(node, ConditionAND):
        for arg in node.args:
            _collect(arg, out, path, tables)
        return
    if isinstance(node, ConditionNOT):
        raise RuleError(f"{path}.condition", "'not' is not supported")
    if isinstance(node, ConditionOR):
        leaves = [
            a
            for a in node.args
            if isinstance(a, ConditionFieldEqualsValueExpression | ConditionValueExpression)
        ]
        fields = {getattr(a, "field", None) for a in leaves}
        if len(leaves) != len(node.args) or len(fields) != 1:
            raise RuleError(
                f"{path}.condition", "'or' across different fields or selections is not supported"
            )
        field = fields.pop()
        ours = _map_field(field, f"{path}.{field or 'keywords'}", tables)
        table = _table(field, tables)
        values = [_value(ours, a.value, f"{path}.{field or 'keywords'}", table) for a in leaves]
        _add(out, ours, values, f"{path}.{field or 'keywords'}")
        return
    if isinstance(node, ConditionFieldEqualsValueExpression | ConditionValueExpression):
        field = getattr(node, "field", None)
        ours = _map_field(field, f"{path}.{field or 'keywords'}", tables)
        _add(
            out,
            ours,
            [_value(ours, node.value, f"{path}.{field or 'keywords'}", _table(field, tables))],
            f"{path}.{field or 'keywords'}",
        )
        return
    raise RuleError(f"{path}.condition", f"{type(node).__name__} is not supported")


def _table(field: str | None, tables: ValueTables) -> dict[str, str] | None:
    return tables[field.lower()][1] if field is not None and field.lower() in tables else None


def _add(out: dict[str, list[str]], ours: str, values: list[str], path: str) -> None:
    values = list(dict.fromkeys(values))  # two Sigma values may map to one of ours (528, 4624)
    if ours in out:
        raise RuleError(path, f"two conditions on {ours} in one rule (an AND of values) is not supported")
    if ours in _SINGLE and len(values) > 1:
        raise RuleError(path, f"{ours} takes one value here")
    out[ours] = values


def _detection_filter(rule: Any, path: str) -> dict[str, Any]:
    conditions = rule.detection.parsed_condition
    if len(conditions) != 1:
        raise RuleError(f"{path}.condition", "exactly one condition is supported")
    collected: dict[str, list[str]] = {}
    source = rule.logsource
    tables = VALUE_MAP.get(((source.product or "").lower(), (source.service or "").lower()), {})
    _collect(conditions[0].parse(), collected, f"{path}", tables)
    return {
        k: (v if k in ("action", "actor") or k.startswith("details.") else v[0]) for k, v in collected.items()
    }


def _threshold(cond: Any, path: str) -> int:
    """``gte: N`` -> N, ``gt: N`` -> N + 1; other operators have no equivalent."""
    from sigma.correlations import SigmaCorrelationConditionOperator

    if cond.op == SigmaCorrelationConditionOperator.GTE:
        return int(cond.count)
    if cond.op == SigmaCorrelationConditionOperator.GT:
        return int(cond.count) + 1
    raise RuleError(path, f"{cond.op.name.lower()} is not supported (gte, gt)")


def _count_step(inner: Any, head: Any, group_by: list[str], path: str) -> dict[str, Any]:
    """A temporal_ordered step that is an event_count correlation -> a step with a count."""
    from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType

    if inner.type != SigmaCorrelationType.EVENT_COUNT:
        raise RuleError(f"{path}.type", f"a {inner.type.name.lower()} step is not supported (event_count)")
    bases = [ref.rule for ref in inner.rules]
    if len(bases) != 1 or isinstance(bases[0], SigmaCorrelationRule):
        raise RuleError(f"{path}.rules", "an event_count step must refer to exactly one detection rule")
    inner_group = [_map_group(g, f"{path}.group-by.{g}") for g in (inner.group_by or [])]
    if sorted(inner_group) != sorted(group_by):
        raise RuleError(
            f"{path}.group-by", "an event_count step must group by the same fields as the sequence"
        )
    if inner.timespan.seconds > head.timespan.seconds:
        raise RuleError(f"{path}.timespan", "an event_count step's timespan must not exceed the sequence's")
    count = _threshold(inner.condition, f"{path}.condition")
    return {"filter": _detection_filter(bases[0], f"{path}.detection"), "count": count}


def sigma_to_rule(text: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rule JSON for a Sigma document (then validated by ``parse_rule`` like any rule)."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import (
        SigmaCorrelationRule,
        SigmaCorrelationType,
    )
    from sigma.exceptions import SigmaError

    if not isinstance(text, str) or not text.strip():
        raise RuleError("sigma", "expected the Sigma rule as YAML text")
    try:
        collection = SigmaCollection.from_yaml(text)
        collection.resolve_rule_references()
    except SigmaError as exc:
        raise RuleError("sigma", f"invalid Sigma document: {exc}") from None
    except Exception as exc:  # YAML errors and other parser failures: the document is bad, not us
        raise RuleError("sigma", f"invalid Sigma document: {type(exc).__name__}: {exc}") from None
    errors = [e for r in collection.rules for e in getattr(r, "errors", [])]
    if errors:
        raise RuleError("sigma", f"invalid Sigma document: {errors[0]}")
    correlations = [r for r in collection.rules if isinstance(r, SigmaCorrelationRule)]
    detections = [r for r in collection.rules if not isinstance(r, SigmaCorrelationRule)]
    out: dict[str, Any]
    if not correlations:
        if len(detections) != 1:
            raise RuleError(
                "sigma", f"expected one detection rule (or one correlation), found {len(detections)}"
            )
        head = detections[0]
        out = {"kind": "match", "filter": _detection_filter(head, "sigma.detection")}
    else:
        # The head is the correlation no other one refers to (a chain has inner correlations).
        inner = {id(ref.rule) for c in correlations for ref in c.rules}
        heads = [c for c in correlations if id(c) not in inner]
        if len(heads) != 1:
            raise RuleError("sigma", "one correlation per document is supported")
        head = heads[0]
        ctype = head.type
        bases = [ref.rule for ref in head.rules]
        if ctype != SigmaCorrelationType.TEMPORAL_ORDERED and any(
            isinstance(b, SigmaCorrelationRule) for b in bases
        ):
            raise RuleError("sigma.correlation.rules", "correlations of correlations are not supported")
        spec = str(head.timespan.spec)
        window = spec if re.match(r"^[1-9][0-9]*[smh]$", spec) else f"{int(head.timespan.seconds)}s"
        parse_window(window, "sigma.correlation.timespan")
        group_by = [_map_group(g, f"sigma.correlation.group-by.{g}") for g in (head.group_by or [])]
        out = {"window": window}
        if group_by:
            out["group_by"] = group_by
        if ctype in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
            if len(bases) != 1:
                raise RuleError("sigma.correlation.rules", "exactly one referenced rule is supported")
            cond = head.condition
            threshold = _threshold(cond, "sigma.correlation.condition")
            out.update(
                kind="threshold" if ctype == SigmaCorrelationType.EVENT_COUNT else "distinct",
                filter=_detection_filter(bases[0], "sigma.detection"),
                threshold=int(threshold),
            )
            if ctype == SigmaCorrelationType.VALUE_COUNT:
                if not cond.fieldref:
                    raise RuleError("sigma.correlation.condition.field", "value_count needs a field")
                out["distinct_field"] = _map_group(cond.fieldref, "sigma.correlation.condition.field")
        elif ctype == SigmaCorrelationType.TEMPORAL_ORDERED:
            if not 2 <= len(bases) <= 5:
                raise RuleError("sigma.correlation.rules", "temporal_ordered needs two to five rules")
            out.update(
                kind="sequence",
                sequence=[
                    _count_step(b, head, group_by, f"sigma.rules.{i}")
                    if isinstance(b, SigmaCorrelationRule)
                    else {"filter": _detection_filter(b, f"sigma.rules.{i}.detection")}
                    for i, b in enumerate(bases)
                ],
            )
        else:
            raise RuleError("sigma.correlation.type", f"{ctype.name.lower()} is not supported")
    out["name"] = (head.title or "Sigma rule")[:200]
    if head.description:
        out["description"] = str(head.description)[:2000]
    level = getattr(head, "level", None) or (detections[0].level if detections else None)
    if level is not None:
        out["severity"] = _LEVELS.get(level.name.lower(), "medium")
    out["sigma"] = text
    for key, value in (overrides or {}).items():
        if key not in ("kind", "sigma"):
            out[key] = value
    return out
