"""Event filters and their translation to a parameterised WHERE clause.

Values never enter the SQL text: ``build_where`` emits clickhouse-connect server-side
placeholders (``{name:Type}``) and returns the values beside them, so the engine parses
them as typed data. Only fixed column names and operators are written into the SQL.
Each filter is one clause in a list, ANDed together; later filters (source IP or CIDR,
free text) add a clause without touching the others.
"""

from __future__ import annotations

__all__ = ["EventFilter", "build_where", "ip_range", "like_pattern", "split_actions"]

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DT64 = "DateTime64(3, 'UTC')"

# An action wildcard is a dotted prefix followed by ".*" (``config.*``); "*" alone is "any".
_PREFIX = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*\.\*$")


@dataclass(slots=True)
class EventFilter:
    """What to select; every set field narrows the result.

    ``since`` is inclusive and ``until`` exclusive, so adjacent windows never share an
    event. Both must be timezone-aware: a naive datetime has no defined instant.
    ``actors`` and ``actions`` match any of their values; an action ending in ``.*``
    matches every action under that prefix.
    """

    tenant_id: str
    since: datetime | None = None
    until: datetime | None = None
    actors: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: str | None = None
    # Source IP (actor_ip): one address, or a CIDR network, IPv4 or IPv6.
    ip: str | None = None
    # Free text, case-insensitive substring of the searchable values (see 0002 migration).
    text: str | None = None
    # details.KEY=VALUE: ((key, (value, ...)), ...); the value under key is one of the values.
    details: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ValueError("tenant_id is required")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (value.tzinfo is None or value.utcoffset() is None):
                raise ValueError(f"{name} must be a timezone-aware datetime")
        split_actions(self.actions)  # reject malformed wildcards early, where the caller can tell
        if self.ip is not None:
            ip_range(self.ip)  # ValueError for anything that is not an address or network
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be blank")


def ip_range(value: str) -> tuple[str, str]:
    """The first and last address of ``value`` (an address or CIDR) as IPv6 text.

    IPv4 maps into ``::ffff:0:0/96``, which is where ClickHouse's ``toIPv6`` puts an
    IPv4 string, so one ``BETWEEN`` on IPv6 values serves both families. Host bits
    set in a CIDR (``10.1.2.3/8``) are ignored, as most tools do.
    """
    network = ipaddress.ip_network(value.strip(), strict=False)
    first, last = network.network_address, network.broadcast_address
    if isinstance(first, ipaddress.IPv4Address):
        return (
            str(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + first.packed)),
            str(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + last.packed)),
        )
    return str(first), str(last)


def like_pattern(text: str) -> str:
    """``%text%`` for LIKE, lower-cased, with LIKE's own metacharacters escaped."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def split_actions(actions: list[str]) -> tuple[list[str], list[str], bool]:
    """Split ``actions`` into (exact values, prefixes including the trailing dot, match-all)."""
    exact: list[str] = []
    prefixes: list[str] = []
    match_all = False
    for action in actions:
        if action == "*":
            match_all = True
        elif action.endswith("*"):
            if not _PREFIX.match(action):
                raise ValueError(f"action wildcard must look like 'prefix.*': {action!r}")
            prefixes.append(action[:-1])
        elif "*" in action:
            raise ValueError(f"'*' is only allowed as a trailing '.*': {action!r}")
        else:
            exact.append(action)
    return exact, prefixes, match_all


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def build_where(f: EventFilter) -> tuple[str, dict[str, Any]]:
    """Return ``(sql, params)``: a WHERE body (without the keyword) and its parameters.

    Parameter names start with ``f_`` so callers can add their own (keyset, limit)
    without collisions.
    """
    clauses: list[str] = ["tenant_id = {f_tenant:String}"]
    params: dict[str, Any] = {"f_tenant": f.tenant_id}
    if f.since is not None:
        clauses.append(f"occurred_at >= {{f_since:{DT64}}}")
        params["f_since"] = _utc(f.since)
    if f.until is not None:
        clauses.append(f"occurred_at < {{f_until:{DT64}}}")
        params["f_until"] = _utc(f.until)
    if f.actors:
        clauses.append("actor_id IN {f_actors:Array(String)}")
        params["f_actors"] = list(f.actors)
    if f.actions:
        exact, prefixes, match_all = split_actions(f.actions)
        if not match_all:
            alternatives: list[str] = []
            if exact:
                # IN over the exact values lets the set index on action skip granules.
                alternatives.append("action IN {f_actions:Array(String)}")
                params["f_actions"] = exact
            for i, prefix in enumerate(prefixes):
                alternatives.append(f"startsWith(action, {{f_action_prefix_{i}:String}})")
                params[f"f_action_prefix_{i}"] = prefix
            clauses.append("(" + " OR ".join(alternatives) + ")")
    if f.resource_type is not None:
        clauses.append("resource_type = {f_resource_type:String}")
        params["f_resource_type"] = f.resource_type
    if f.resource_id is not None:
        clauses.append("resource_id = {f_resource_id:String}")
        params["f_resource_id"] = f.resource_id
    if f.outcome is not None:
        clauses.append("outcome = {f_outcome:String}")
        params["f_outcome"] = f.outcome
    if f.ip is not None:
        first, last = ip_range(f.ip)
        # toIPv6OrZero: '' (no IP) and malformed text become '::', never an error; the
        # explicit != '' keeps them out of '::/0'.
        clauses.append(
            "actor_ip != '' AND toIPv6OrZero(actor_ip) BETWEEN {f_ip_first:IPv6} AND {f_ip_last:IPv6}"
        )
        params["f_ip_first"] = first
        params["f_ip_last"] = last
    if f.text is not None:
        # search_text is lower(...) of every searchable value; LIKE '%x%' uses its
        # ngrambf_v1 index (migration 0002) to skip granules that cannot contain x.
        clauses.append("search_text LIKE {f_text:String}")
        params["f_text"] = like_pattern(f.text)
    for i, (key, values) in enumerate(f.details):
        # Key and values are bound parameters; a missing key reads as '' and values are
        # never empty, so an event without the key never matches.
        clauses.append(f"details[{{f_dk_{i}:String}}] IN {{f_dv_{i}:Array(String)}}")
        params[f"f_dk_{i}"] = key
        params[f"f_dv_{i}"] = list(values)
    return " AND ".join(clauses), params
