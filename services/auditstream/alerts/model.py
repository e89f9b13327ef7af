"""Alert rules: the JSON a tenant writes, validated into a typed ``Rule``.

A rule is::

    {"name": "failed-login spike", "kind": "threshold",
     "filter": {"action": ["user.login_failed"]}, "group_by": "actor.id",
     "threshold": 5, "window": "5m",
     "targets": [{"type": "webhook", "url": "https://...", "secret": "..."}]}

``filter`` takes the names and value forms of the ``GET /v1/events`` query parameters
(``action`` with ``prefix.*`` wildcards, ``actor``, ``resource_type``, ``resource_id``,
``outcome``, ``ip`` address or CIDR, ``q``) plus ``details.KEY``. Its values are checked
by the same function that checks those query parameters (``api.deps.query_filters``),
so a filter accepted by search is accepted here and means the same thing.

Every refusal is a :class:`RuleError` naming the faulty field with a dotted path
(``filter.action``, ``targets.0.url``, ``window``); the API answers it with 422.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "GROUP_FIELDS",
    "KINDS",
    "MAX_WINDOW",
    "FilterSpec",
    "Rule",
    "RuleError",
    "RuleIn",
    "SequenceStep",
    "Target",
    "parse_filter",
    "parse_rule",
    "parse_window",
]

KINDS = ("match", "threshold", "distinct", "sequence")
MAX_WINDOW = timedelta(hours=24)
MAX_TARGETS = 10

# Fields a rule may group by (or count distinct values of): the stored column of each.
GROUP_FIELDS: dict[str, str] = {
    "actor.id": "actor_id",
    "actor.ip": "actor_ip",
    "actor.type": "actor_type",
    "actor.email": "actor_email",
    "action": "action",
    "outcome": "outcome",
    "resource.type": "resource_type",
    "resource.id": "resource_id",
    "source.service": "source_service",
    "source.host": "source_host",
}
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})(s|m|h)$")
_UNITS = {"s": 1, "m": 60, "h": 3600}


class RuleError(ValueError):
    """A rule that cannot be accepted; ``field`` is the dotted path of the faulty part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"


# --- the JSON shapes (pydantic: structure, unknown fields, types) ------------------------


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook", "slack"] = Field(
        description="`webhook`: signed JSON body; `slack`: a Slack-compatible incoming-webhook payload."
    )
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL of the receiver.")
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=256,
        description="HMAC key of X-Auditstream-Signature (webhook targets; required for them).",
    )


class SequenceStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: dict[str, Any] = Field(description="Same vocabulary as the rule's filter.")
    count: int = Field(1, ge=1, le=1000, description="How many such events this step needs.")


class RuleIn(BaseModel):
    """The body of POST /v1/alerts/rules (and, all fields optional, of PATCH)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, description="Required (sigma: the title).")
    kind: Literal["match", "threshold", "distinct", "sequence", "sigma"]
    sigma: str | None = Field(
        None,
        max_length=256 * 1024,
        description="kind sigma: the Sigma YAML (a rule, or a base rule and its correlation).",
    )
    description: str | None = Field(None, max_length=2000)
    enabled: bool = True
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    filter: dict[str, Any] = Field(
        default_factory=dict, description="Names and value forms of the GET /v1/events parameters."
    )
    group_by: str | list[str] | None = Field(
        None, description="A field (actor.id, actor.ip, resource.id, details.KEY, ...) or a list of them."
    )
    threshold: int | None = Field(None, ge=1, le=100_000, description="threshold/distinct: at least N.")
    distinct_field: str | None = Field(None, description="distinct: the field whose values are counted.")
    window: str | None = Field(None, description="`30s`, `5m`, `1h`; at most 24h.")
    sequence: list[SequenceStep] | None = Field(
        None, description="sequence: the steps, in event-time order, within the window."
    )
    targets: list[Target] = Field(default_factory=list)


# --- the validated form -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A validated filter: the /v1/events parameters plus ``details.KEY`` equalities."""

    actions: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: str | None = None
    ip: str | None = None
    q: str | None = None
    details: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.actions:
            out["action"] = list(self.actions)
        if self.actors:
            out["actor"] = list(self.actors)
        for name in ("resource_type", "resource_id", "outcome", "ip", "q"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for key, values in self.details:
            out[f"details.{key}"] = values[0] if len(values) == 1 else list(values)
        return out


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule as the evaluator sees it (``id``/``tenant_id`` set once stored)."""

    name: str
    kind: str
    filter: FilterSpec
    group_by: tuple[str, ...] = ()
    threshold: int = 1
    distinct_field: str | None = None
    window: timedelta | None = None
    window_text: str | None = None
    steps: tuple[tuple[FilterSpec, int], ...] = ()
    targets: tuple[dict[str, Any], ...] = ()
    enabled: bool = True
    severity: str = "medium"
    description: str | None = None
    id: str = ""
    tenant_id: str = ""
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The rule's JSON, as accepted by ``parse_rule`` (targets with their secrets)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "enabled": self.enabled,
            "severity": self.severity,
            "filter": self.filter.to_json(),
            "targets": [dict(t) for t in self.targets],
        }
        if self.description is not None:
            out["description"] = self.description
        if self.extra.get("sigma"):
            out["sigma"] = self.extra["sigma"]
        if self.group_by:
            out["group_by"] = self.group_by[0] if len(self.group_by) == 1 else list(self.group_by)
        if self.kind in ("threshold", "distinct"):
            out["threshold"] = self.threshold
        if self.distinct_field:
            out["distinct_field"] = self.distinct_field
        if self.window_text:
            out["window"] = self.window_text
        if self.steps:
            out["sequence"] = [{"filter": f.to_json(), "count": n} for f, n in self.steps]
        return out


def parse_window(text: str, field: str = "window") -> timedelta:
    match = _WINDOW.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise RuleError(field, f"{str(text)[:20]!r} is not a duration like 30s, 5m or 1h")
    window = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if window > MAX_WINDOW:
        raise RuleError(field, "a window may span at most 24h")
    return window


def _filter_parameters() -> set[str]:
    from auditstream.api.deps import query_filters

    # since/until bound a query in time; a rule runs on every new event, so they mean nothing here.
    # details is the parsed form of the details.KEY parameters, which a rule names one by one.
    return set(inspect.signature(query_filters).parameters) - {"since", "until", "details"}


def _run_dependency(coro: Any) -> Any:
    """Drive ``query_filters`` (an ``async def`` that never awaits) to its result, synchronously.

    It is a FastAPI dependency, hence async; calling it this way lets the rule validator run
    anywhere (API thread, Sigma import, unit tests) without an event loop.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("query_filters awaited something; validate rules in a coroutine instead")


def _as_list(value: Any, path: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise RuleError(path, "expected a non-empty string or a list of them")
    return values


def parse_filter(raw: Any, path: str = "filter") -> FilterSpec:
    """Validate a filter dict; ``RuleError`` names ``path.<parameter>`` on any fault."""
    from auditstream.api.deps import details_filters, query_filters
    from auditstream.api.errors import ApiError

    if not isinstance(raw, dict):
        raise RuleError(path, "expected an object of /v1/events parameters")
    allowed = _filter_parameters()
    kwargs: dict[str, Any] = {}
    details: list[tuple[str, str]] = []
    for name, value in raw.items():
        where = f"{path}.{name}"
        if name.startswith("details."):
            details.extend((name, v) for v in _as_list(value, where))
            continue
        if name in ("since", "until"):
            raise RuleError(where, "a rule applies to every new event; time bounds are not allowed")
        if name not in allowed:
            raise RuleError(where, f"unknown filter; expected one of {sorted(allowed)} or details.KEY")
        if name in ("actor", "action"):
            kwargs[name] = _as_list(value, where)
        elif not isinstance(value, str):
            raise RuleError(where, "expected a string")
        else:
            kwargs[name] = value
    if kwargs.get("outcome") not in (None, "success", "failure", "unknown"):
        raise RuleError(f"{path}.outcome", "expected success, failure or unknown")
    for name in ("resource_type", "resource_id", "q"):
        if name in kwargs and len(kwargs[name]) > 256:
            raise RuleError(f"{path}.{name}", "at most 256 characters")
    try:
        # The same checks as the details.KEY query parameters of /v1/events.
        kwargs["details"] = details_filters(details)
        parsed = _run_dependency(query_filters(**kwargs))
    except ApiError as exc:
        raise RuleError(f"{path}.{exc.field}" if exc.field else path, exc.message) from None
    return FilterSpec(
        actions=tuple(parsed.actions),
        actors=tuple(parsed.actors),
        resource_type=parsed.resource_type,
        resource_id=parsed.resource_id,
        outcome=parsed.outcome,
        ip=parsed.ip,
        q=parsed.q,
        details=parsed.details,
    )


def _check_field(name: Any, path: str) -> str:
    if not isinstance(name, str):
        raise RuleError(path, "expected a field name")
    if name in GROUP_FIELDS:
        return name
    from auditstream.api.deps import DETAILS_KEY_RE

    if name.startswith("details.") and DETAILS_KEY_RE.match(name[len("details.") :]):
        return name
    raise RuleError(
        path, f"unknown field {name[:60]!r}; expected one of {sorted(GROUP_FIELDS)} or details.KEY"
    )


def _first_error(exc: ValidationError) -> RuleError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "rule"
    msg = str(err.get("msg", "invalid value"))
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    return RuleError(loc, msg)


def parse_rule(raw: Any, *, check_target: Any = None) -> Rule:
    """Validate a rule's JSON into a :class:`Rule`; ``RuleError`` names the faulty field.

    ``check_target(url, path)`` (optional) vets each target URL (SSRF rules, ``targets.py``).
    """
    try:
        body = RuleIn.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc) from None
    kind = body.kind
    if kind == "sigma":
        # The API converts a Sigma document first (sigma.py); what is stored is the mapped kind.
        raise RuleError("kind", "a sigma rule must be converted with auditstream.alerts.sigma first")
    if body.name is None:
        raise RuleError("name", "Field required")
    flt = parse_filter(body.filter)
    group_by: tuple[str, ...] = ()
    if body.group_by is not None:
        names = [body.group_by] if isinstance(body.group_by, str) else body.group_by
        if not names or len(names) > 4:
            raise RuleError("group_by", "one to four fields")
        group_by = tuple(
            _check_field(n, f"group_by.{i}" if len(names) > 1 else "group_by") for i, n in enumerate(names)
        )
    window = parse_window(body.window) if body.window is not None else None

    def refuse_extra(*names: str) -> None:
        for name in names:
            if getattr(body, name) is not None:
                raise RuleError(name, f"not used by a {kind} rule")

    threshold = 1
    steps: tuple[tuple[FilterSpec, int], ...] = ()
    if kind == "match":
        refuse_extra("threshold", "distinct_field", "window", "sequence", "group_by")
    else:
        if window is None:
            raise RuleError("window", f"a {kind} rule needs a window like 5m")
        if kind in ("threshold", "distinct"):
            refuse_extra("sequence")
            if body.threshold is None:
                raise RuleError("threshold", f"a {kind} rule needs a threshold")
            threshold = body.threshold
        if kind == "threshold":
            refuse_extra("distinct_field")
        elif kind == "distinct":
            if body.distinct_field is None:
                raise RuleError("distinct_field", "a distinct rule needs the field whose values are counted")
            _check_field(body.distinct_field, "distinct_field")
        elif kind == "sequence":
            refuse_extra("threshold", "distinct_field")
            if not body.sequence or not 2 <= len(body.sequence) <= 5:
                raise RuleError("sequence", "a sequence rule needs two to five steps")
            steps = tuple(
                (parse_filter(step.filter, f"sequence.{i}.filter"), step.count)
                for i, step in enumerate(body.sequence)
            )
    targets = []
    for i, target in enumerate(body.targets[: MAX_TARGETS + 1]):
        if i == MAX_TARGETS:
            raise RuleError("targets", f"at most {MAX_TARGETS} targets")
        path = f"targets.{i}.url"
        if not re.match(r"^https?://", target.url, re.IGNORECASE):
            raise RuleError(path, "only http and https URLs are allowed")
        if target.type == "webhook" and not target.secret:
            raise RuleError(f"targets.{i}.secret", "a webhook target needs a secret (16+ characters)")
        if check_target is not None:
            check_target(target.url, path)
        targets.append(target.model_dump(exclude_none=True))
    return Rule(
        name=body.name,
        kind=kind,
        filter=flt,
        group_by=group_by,
        threshold=threshold,
        distinct_field=body.distinct_field,
        window=window,
        window_text=body.window.strip() if body.window else None,
        steps=steps,
        targets=tuple(targets),
        enabled=body.enabled,
        severity=body.severity,
        description=body.description,
        extra={"sigma": body.sigma} if body.sigma else {},
    )
