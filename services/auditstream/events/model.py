"""Pydantic v2 models of the v1 audit event, mirroring ``schemas/event/v1.json``.

The JSON Schema is the contract other languages use; these models are how
Python enforces it, fast (``AuditEvent.model_validate_json`` parses and
validates in Rust; only a few rules run Python code). A test checks that both
define the same properties, required sets, enums, patterns and bounds, and
judge a corpus of documents alike.

Choices that keep the two in agreement and the stored data sane:

* ``strict=True``: nothing is coerced — a number is never accepted for a
  string, a Unix timestamp never for ``occurred_at``.
* Every string is bounded, so nothing unbounded reaches ClickHouse.
* ``occurred_at`` must be an RFC 3339 date-time with an offset, checked by the
  same pattern as the schema (pydantic's own datetime parser would also take
  ``2026-03-10``, a space separator or a Unix timestamp). It is converted to
  UTC and truncated to milliseconds (``DateTime64(3)``), and may be at most
  five minutes ahead of "now" — the validation context's ``now`` when given,
  else the clock.
* Optional fields without a default accept ``null`` as "absent"; enums and
  ``schema_version`` have defaults and do not.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# --- patterns and bounds: the same values appear in schemas/event/v1.json ------------
# Character classes are spelled out ([0-9], \x00-\x20) instead of \d and \s,
# which mean different things in Python's re, Rust's regex and ECMA-262.
OCCURRED_AT_PATTERN = (
    r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ACTION_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)+$"
EMAIL_PATTERN = r"^[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

MAX_FUTURE = timedelta(minutes=5)
MAX_CHANGES = 100
MAX_DETAILS = 64
MAX_DETAIL_KEY = 128
MAX_DETAIL_VALUE = 4096
MAX_CHANGE_VALUE = 4096
MAX_IP = 45  # longest textual IPv6: ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1  # orjson's integer range

# Used with fullmatch: Python's "$" also matches before a final newline, ECMA-262's
# (the schema's) and Rust's (pydantic's) do not.
_OCCURRED_AT_RE = re.compile(OCCURRED_AT_PATTERN)
_UUID_RE = re.compile(UUID_PATTERN)
# Recognises a date-time that only lacks its offset, to say "naive" instead of "bad pattern".
_NAIVE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?$")


class ActorType(StrEnum):
    user = "user"
    service = "service"
    api_key = "api_key"
    system = "system"


class Outcome(StrEnum):
    success = "success"
    failure = "failure"
    unknown = "unknown"


# Bounded strings. min_length=1 on identifiers: '' is how storage spells "absent".
Id256 = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Id64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text128 = Annotated[str, StringConstraints(max_length=128)]
Text255 = Annotated[str, StringConstraints(max_length=255)]
Text256 = Annotated[str, StringConstraints(max_length=256)]
Text1024 = Annotated[str, StringConstraints(max_length=1024)]
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
Action = Annotated[str, StringConstraints(max_length=128, pattern=ACTION_PATTERN)]
# A simple shape check, not RFC 5322: no extra dependency, and the schema's "format": "email".
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=EMAIL_PATTERN),
    Field(json_schema_extra={"format": "email"}),
]


# --- occurred_at -----------------------------------------------------------------------


def _occurred_at(value: Any, info: ValidationInfo) -> datetime:
    """Parse, normalise to UTC milliseconds and bound ``occurred_at`` in one Python call.

    A plain validator (pattern check + ``datetime.fromisoformat``) is about 2.5 µs
    cheaper per event than pydantic's datetime parser wrapped in before/after
    validators, and the pattern is the schema's, so the accepted texts are exactly
    the schema's.
    """
    ctx = info.context
    return occurred_at_value(value, ctx.get("now") if ctx else None)


def occurred_at_value(value: Any, now: datetime | None) -> datetime:
    """``occurred_at`` parsed, in UTC, truncated to ms and bounded by ``now`` (default: the clock).

    The one implementation of the rule: the model's validator and the processor's fast
    path (events/fastpath.py) both call it. Raises ``PydanticCustomError``.
    """
    if type(value) is str:
        if _OCCURRED_AT_RE.fullmatch(value) is None:
            if _NAIVE_RE.match(value):
                raise PydanticCustomError(
                    "datetime_naive", "timezone offset required (RFC 3339, e.g. 2026-03-10T10:13:21Z)"
                )
            raise PydanticCustomError(
                "datetime_format", "must be an RFC 3339 date-time with offset, e.g. 2026-03-10T10:13:21.123Z"
            )
        if not value.isupper():  # RFC 3339 allows "t" and "z"; fromisoformat does not
            value = value.upper()
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:  # e.g. 2026-02-30: the pattern cannot know month lengths
            raise PydanticCustomError(
                "datetime_parsing", "invalid date-time: {error}", {"error": str(exc)}
            ) from None
    elif isinstance(value, datetime):
        # Python callers (model_validate on a dict); validate_event goes through JSON instead.
        if value.tzinfo is None or value.utcoffset() is None:
            raise PydanticCustomError("datetime_naive", "timezone offset required")
        parsed = value
    else:
        raise PydanticCustomError("datetime_type", "must be an RFC 3339 date-time string")
    if parsed.tzinfo is not UTC:
        parsed = parsed.astimezone(UTC)
    sub_ms = parsed.microsecond % 1000
    if sub_ms:
        parsed = parsed.replace(microsecond=parsed.microsecond - sub_ms)
    if now is None:
        now = datetime.now(UTC)
    if parsed > now + MAX_FUTURE:
        raise PydanticCustomError("datetime_future", "more than 5 minutes in the future")
    return parsed


def _occurred_at_text(value: datetime) -> str:
    # The stored precision, in the form the API uses: 2026-03-10T10:13:21.123Z.
    if value.tzinfo is None:  # only via model_construct; stays naive so re-validation rejects it
        return value.isoformat()
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


OccurredAt = Annotated[
    datetime,
    PlainValidator(_occurred_at),
    # Explicit: with a plain validator pydantic otherwise warns when serializing.
    PlainSerializer(_occurred_at_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": OCCURRED_AT_PATTERN}),
]


# --- actor.ip ----------------------------------------------------------------------------


# Dotted-quad IPv4 without leading zeros: valid and already canonical, so the
# (slow, ~3 µs) ipaddress parse can be skipped for the most common case.
_CANONICAL_IPV4 = re.compile(
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)
# Parsed addresses, by text: client IPs repeat, and IPv6 parsing costs ~10 µs.
# Bounded so that a stream of distinct addresses cannot grow it without limit.
_IP_MEMO_LIMIT = 50_000
_ip_memo: dict[str, str] = {}


def canonical_ip(value: str) -> str:
    """Accept one IPv4/IPv6 address (what JSON Schema's ipv4/ipv6 formats accept); store it canonically.

    Canonical form (``2001:db8::1``, not ``2001:0DB8:0:0::1``) makes equality and
    CIDR filters in ClickHouse behave.
    """
    if _CANONICAL_IPV4.fullmatch(value) is not None:
        return value
    canonical = _ip_memo.get(value)
    if canonical is not None:
        return canonical
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise PydanticCustomError("ip_address", "must be an IPv4 or IPv6 address") from None
    if getattr(address, "scope_id", None):
        raise PydanticCustomError("ip_address", "must be an IPv4 or IPv6 address without zone id")
    canonical = str(address)
    if len(_ip_memo) >= _IP_MEMO_LIMIT:
        _ip_memo.clear()
    _ip_memo[value] = canonical
    return canonical


IpAddress = Annotated[
    str,
    StringConstraints(max_length=MAX_IP),
    AfterValidator(canonical_ip),
    WithJsonSchema(
        {"type": "string", "maxLength": MAX_IP, "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
    ),
]


# --- change values ---------------------------------------------------------------------


def _json_scalar(value: Any) -> Any:
    """old/new: a JSON scalar or null; strings bounded, numbers finite (NaN/Infinity are not JSON)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # What the stored changes JSON (orjson) can write; beyond it a batch would fail to encode.
        if not _MIN_INT <= value <= _MAX_INT:
            raise PydanticCustomError("int_range", "integer beyond 64 bits")
        return value
    if isinstance(value, str):
        if len(value) > MAX_CHANGE_VALUE:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": MAX_CHANGE_VALUE},
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "must be a finite number")
        return value
    raise PydanticCustomError("json_scalar", "must be a string, number, boolean or null")


ChangeValue = Annotated[
    Any,
    AfterValidator(_json_scalar),
    WithJsonSchema({"type": ["string", "number", "boolean", "null"], "maxLength": MAX_CHANGE_VALUE}),
]


def _uuid_text(value: Any) -> Any:
    # Pydantic would also take 32 bare hex digits or a "urn:uuid:" prefix; the schema does not.
    if isinstance(value, str):
        if _UUID_RE.fullmatch(value) is None:
            raise PydanticCustomError("uuid_format", "must be a UUID in 8-4-4-4-12 hex form")
        return value
    if isinstance(value, uuid.UUID):
        return value
    raise PydanticCustomError("uuid_type", "must be a UUID string")


# Strict(False): the before-validator hands the UUID validator a Python str, which
# strict mode refuses; only the schema's exact 8-4-4-4-12 text gets that far.
EventId = Annotated[
    uuid.UUID,
    Strict(False),
    BeforeValidator(_uuid_text),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]


# --- models ------------------------------------------------------------------------------

_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=False)


class Actor(BaseModel):
    """Who performed the action."""

    model_config = _CONFIG

    id: Id256
    type: ActorType = ActorType.user
    name: Text256 | None = None
    email: Email | None = None
    ip: IpAddress | None = None
    user_agent: Text1024 | None = None


class Resource(BaseModel):
    """The thing acted upon."""

    model_config = _CONFIG

    type: Id64 | None = None
    id: Id256 | None = None
    name: Text256 | None = None


class Source(BaseModel):
    """Where the event was emitted."""

    model_config = _CONFIG

    service: Text128 | None = None
    host: Text255 | None = None
    request_id: Text128 | None = None


class Change(BaseModel):
    """One changed field of an update."""

    model_config = _CONFIG

    field: Id256
    old: ChangeValue = None
    new: ChangeValue = None


DetailKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_DETAIL_KEY)]
DetailValue = Annotated[str, StringConstraints(max_length=MAX_DETAIL_VALUE)]


class AuditEvent(BaseModel):
    """One v1 audit event, validated. See ``schemas/event/v1.json`` for each field's meaning."""

    model_config = _CONFIG

    occurred_at: OccurredAt
    tenant_id: TenantId
    action: Action
    actor: Actor
    resource: Resource | None = None
    outcome: Outcome = Outcome.success
    reason: Text1024 | None = None
    event_id: EventId | None = None
    source: Source | None = None
    changes: Annotated[list[Change], Field(max_length=MAX_CHANGES)] | None = None
    details: Annotated[dict[DetailKey, DetailValue], Field(max_length=MAX_DETAILS)] | None = None
    schema_version: Literal["1"] = "1"
