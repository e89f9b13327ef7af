"""Filters applied to stored rows in Python, with the semantics of ``store.filters.build_where``.

The evaluator sees each stored row once, in ingest order; asking ClickHouse whether a row
matches each rule would cost a query per rule per page. So the SQL of ``build_where`` is
mirrored here, clause for clause, on the row dicts that ``Store.feed_page`` returns:

* ``action``: exact values, ``prefix.*`` (``startsWith`` on ``prefix.``) or ``*`` (any) —
  split by the same ``split_actions``;
* ``actor``: ``actor_id`` is one of the values; ``resource_type``/``resource_id``/``outcome``:
  equality;
* ``ip``: ``actor_ip`` set and inside the range ``ip_range`` gives (IPv4 mapped into IPv6,
  as ClickHouse's ``toIPv6`` does), so an IPv4 address matches ``::ffff:10.0.0.0/104`` too;
* ``q``: case-insensitive substring of the same text the ``search_text`` column holds
  (migration 0002: the same fields joined by newlines);
* ``details.KEY``: the details value under KEY is one of the values (rules only).

``tests/alerts/test_matcher.py`` checks the two agree on the same rows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from auditstream.alerts.model import GROUP_FIELDS, FilterSpec
from auditstream.store.filters import ip_range, split_actions

__all__ = ["Matcher", "compile_filter", "field_value"]

Row = Mapping[str, Any]
Matcher = Callable[[Row], bool]


def _v6(address: str) -> int | None:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return int(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed))
    return int(ip)


def search_text(row: Row) -> str:
    """lowerUTF8(concat_ws('\\n', ...)) of migration 0002, in Python."""
    parts = [
        row.get("actor_id") or "",
        row.get("actor_name") or "",
        row.get("actor_email") or "",
        row.get("action") or "",
        row.get("resource_type") or "",
        row.get("resource_id") or "",
        row.get("resource_name") or "",
        row.get("reason") or "",
        "\n".join((row.get("details") or {}).values()),
    ]
    return "\n".join(parts).lower()


def compile_filter(f: FilterSpec) -> Matcher:
    """A predicate over stored rows; the checks are ordered cheapest and most selective first."""
    checks: list[Matcher] = []
    if f.actions:
        exact, prefixes, match_all = split_actions(list(f.actions))
        if not match_all:
            exact_set = frozenset(exact)
            prefix_tuple = tuple(prefixes)
            checks.append(lambda r: r["action"] in exact_set or r["action"].startswith(prefix_tuple))
    if f.actors:
        actors = frozenset(f.actors)
        checks.append(lambda r: r["actor_id"] in actors)
    for name, column in (
        ("resource_type", "resource_type"),
        ("resource_id", "resource_id"),
        ("outcome", "outcome"),
    ):
        value = getattr(f, name)
        if value is not None:
            checks.append(lambda r, c=column, v=value: r.get(c) == v)
    for key, values in f.details:
        allowed = frozenset(values)
        checks.append(lambda r, k=key, a=allowed: (r.get("details") or {}).get(k) in a)
    if f.ip is not None:
        first_text, last_text = ip_range(f.ip)
        first, last = int(ipaddress.IPv6Address(first_text)), int(ipaddress.IPv6Address(last_text))

        def ip_check(r: Row) -> bool:
            value = r.get("actor_ip") or ""
            if not value:
                return False
            n = _v6(value)
            # toIPv6OrZero maps malformed text to '::'; only '::/..' ranges could contain it.
            return first <= (n if n is not None else 0) <= last

        checks.append(ip_check)
    if f.q is not None:
        needle = f.q.strip().lower()
        checks.append(lambda r: needle in search_text(r))
    if not checks:
        return lambda r: True
    if len(checks) == 1:
        return checks[0]
    return lambda r: all(check(r) for check in checks)


def field_value(row: Row, name: str) -> str:
    """The value of a group/distinct field (``actor.id``, ``details.KEY``) in a stored row."""
    if name.startswith("details."):
        return (row.get("details") or {}).get(name[len("details.") :], "")
    value = row.get(GROUP_FIELDS[name])
    return "" if value is None else str(value)
