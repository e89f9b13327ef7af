"""Parse the ``since``/``until`` query parameters.

Accepted forms:

* RFC 3339 with an explicit offset: ``2025-01-31T12:00:00Z``, ``2025-01-31T12:00:00.123+02:00``.
  A naive time is refused: guessing a zone for an audit query silently shifts results.
* Relative to now: ``-30s``, ``-30m``, ``-24h``, ``-7d``, ``-2w``.
* ``now``.

All results are aware UTC datetimes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["STORE_EARLIEST", "STORE_LATEST", "parse_time", "representable"]

# The range of ClickHouse's DateTime64(3) (occurred_at, received_at). A time outside it
# cannot even be sent as a query parameter (the engine answers BAD_QUERY_PARAMETER), so
# it is refused here, naming the parameter, instead of failing in the store.
STORE_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
STORE_LATEST = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)


def representable(dt: datetime) -> bool:
    """Whether the store can represent ``dt`` (an aware datetime)."""
    return STORE_EARLIEST <= dt <= STORE_LATEST


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$",
)
_RELATIVE = re.compile(r"^-(\d{1,7})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime) -> datetime:
    """Resolve one time parameter against ``now``; ValueError with a user-facing message."""
    text = value.strip()
    if text.lower() == "now":
        return now
    rel = _RELATIVE.match(text)
    if rel:
        try:
            return now - timedelta(**{_UNITS[rel.group(2)]: int(rel.group(1))})
        except OverflowError:
            raise ValueError("relative time is too far in the past") from None
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(
            "expected RFC 3339 with offset (2025-01-31T12:00:00Z), a relative time (-24h), or now"
        )
    # fromisoformat handles at most 6 fractional digits: trim nanoseconds (ClickHouse
    # keeps milliseconds anyway).
    frac = m.group(1)
    if frac and len(frac) > 7:
        text = text.replace(frac, frac[:7], 1)
    try:
        parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("not a valid date or time") from None
    if not representable(parsed):
        raise ValueError(
            f"outside the range the store represents ({STORE_EARLIEST.year}..{STORE_LATEST.year})"
        )
    return parsed
