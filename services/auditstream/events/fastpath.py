"""The processor's compiled hot paths: a valid Kafka event decoded by msgspec or Rust, not pydantic.

``AuditEvent.model_validate_json`` plus the duplicate-key scan was the largest
per-event cost of the processor (36 % of the GIL-holding samples at full rate,
bench/profiles/). msgspec decodes and bounds the same document into slotted structs
in C, about three times faster, and the rules msgspec cannot express (patterns, the
``occurred_at`` rule, canonical IPs) run the model's own functions.

The fast path only ever *accepts*: :func:`decode_fast` returns an event, or ``None``
for anything it is not sure of (msgspec rejects it, a rule fails, or the bytes are
outside its known-safe subset). The caller then runs the pydantic path
(:func:`auditstream.events.validation.parse_event`), which either accepts the event
too or gives the DLQ reason naming the field, so reasons never depend on this
module. Outside the subset, on purpose:

* numbers that are not int64 or strings/booleans in ``changes`` old/new (float
  spelling and huge ints are left to pydantic and orjson);
* input that is not ``bytes`` or is empty or over the size limit.

tests/events/test_fastpath.py proves over the hostile, malformed, schema-agreement and
generated corpora that what this accepts, pydantic accepts, with an identical row.
The returned struct reads like an ``AuditEvent`` for ``enrich`` (same attribute names,
enum members, ``None`` for absent optional objects and event_id; an absent optional string
is msgspec's ``UNSET``, falsy like ``None``, which is how ``enrich`` reads it).

:func:`native_rows` is the same contract in Rust (native/fastpath), for a whole batch, and
it returns each event's stored row rather than a struct for ``enrich``: the same row, column
for column and type for type, content hash included (the same tests prove it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from auditstream.events.catalog import categorize, severity
from auditstream.events.ids import uuid7_for
from auditstream.events.model import (
    ACTION_PATTERN,
    EMAIL_PATTERN,
    MAX_CHANGE_VALUE,
    MAX_CHANGES,
    MAX_DETAIL_KEY,
    MAX_DETAIL_VALUE,
    MAX_DETAILS,
    MAX_IP,
    TENANT_ID_PATTERN,
    UUID_PATTERN,
    ActorType,
    Outcome,
    canonical_ip,
    occurred_at_value,
)
from auditstream.events.redaction import is_secret_name
from auditstream.events.validation import MAX_EVENT_BYTES, repeats_keys

__all__ = [
    "NATIVE",
    "NATIVE_COLUMNS",
    "FastActor",
    "FastChange",
    "FastEvent",
    "FastResource",
    "FastSource",
    "decode_fast",
    "decode_many",
    "native_rows",
]

# Bounds as in model.py (a string's length in code points, as pydantic and JSON Schema count).
Id256 = Annotated[str, Meta(min_length=1, max_length=256)]
Id64 = Annotated[str, Meta(min_length=1, max_length=64)]
Text128 = Annotated[str, Meta(max_length=128)]
Text254 = Annotated[str, Meta(max_length=254)]
Text255 = Annotated[str, Meta(max_length=255)]
Text256 = Annotated[str, Meta(max_length=256)]
Text1024 = Annotated[str, Meta(max_length=1024)]
Ip = Annotated[str, Meta(max_length=MAX_IP)]
Scalar = str | int | float | bool | None

# Patterns are checked with fullmatch here: msgspec's Meta(pattern=) is re.search, where "$"
# also matches before a final newline (the schema's ECMA-262 "$" and pydantic's do not).
_TENANT_RE = re.compile(TENANT_ID_PATTERN)
_ACTION_RE = re.compile(ACTION_PATTERN)
_EMAIL_RE = re.compile(EMAIL_PATTERN)
_UUID_RE = re.compile(UUID_PATTERN)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# UNSET defaults tell a present key (also `null`) from an absent one: the duplicate-key
# check compares the pairs kept with the pairs in the bytes.


class FastActor(Struct, forbid_unknown_fields=True, gc=False):
    id: Id256
    type: ActorType | UnsetType = UNSET
    name: Text256 | UnsetType | None = UNSET
    email: Text254 | UnsetType | None = UNSET
    ip: Ip | UnsetType | None = UNSET
    user_agent: Text1024 | UnsetType | None = UNSET


class FastResource(Struct, forbid_unknown_fields=True, gc=False):
    type: Id64 | UnsetType | None = UNSET
    id: Id256 | UnsetType | None = UNSET
    name: Text256 | UnsetType | None = UNSET


class FastSource(Struct, forbid_unknown_fields=True, gc=False):
    service: Text128 | UnsetType | None = UNSET
    host: Text255 | UnsetType | None = UNSET
    request_id: Text128 | UnsetType | None = UNSET


class FastChange(Struct, forbid_unknown_fields=True, gc=False):
    field: Id256
    old: Scalar | UnsetType = UNSET
    new: Scalar | UnsetType = UNSET


DetailKey = Annotated[str, Meta(min_length=1, max_length=MAX_DETAIL_KEY)]
DetailValue = Annotated[str, Meta(max_length=MAX_DETAIL_VALUE)]


class FastEvent(Struct, forbid_unknown_fields=True, gc=False):
    # Decoded as text; _finish replaces occurred_at by its datetime and event_id by its UUID.
    occurred_at: str
    tenant_id: str
    action: Annotated[str, Meta(max_length=128)]
    actor: FastActor
    resource: FastResource | UnsetType | None = UNSET
    outcome: Outcome | UnsetType = UNSET
    reason: Text1024 | UnsetType | None = UNSET
    event_id: str | UnsetType | None = UNSET
    source: FastSource | UnsetType | None = UNSET
    changes: Annotated[list[FastChange], Meta(max_length=MAX_CHANGES)] | UnsetType | None = UNSET
    details: Annotated[dict[DetailKey, DetailValue], Meta(max_length=MAX_DETAILS)] | UnsetType | None = UNSET
    schema_version: Literal["1"] | UnsetType = UNSET


_decoder = msgspec.json.Decoder(FastEvent)


def _present(*values: object) -> int:
    n = 0
    for value in values:
        if value is not UNSET:
            n += 1
    return n


def decode_fast(raw: object, now: datetime | None) -> FastEvent | None:
    """The validated event of ``raw``, or ``None`` when the pydantic path must decide.

    ``now`` bounds ``occurred_at`` exactly as ``parse_event``'s ``now`` does. The caller
    still applies the retention rule (``validation.check_retention``).
    """
    # Escapes (\u0000, surrogate pairs) are msgspec's to decode: the corpus test holds them, and
    # a lone surrogate is refused by both parsers.
    if type(raw) is not bytes or not raw or len(raw) > MAX_EVENT_BYTES:
        return None
    try:
        event = _decoder.decode(raw)
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError:
        return None
    try:
        return _finish(raw, event, now)
    except Exception:  # any rule failing: pydantic's path words the reason
        return None


def _finish(raw: bytes, event: FastEvent, now: datetime | None) -> FastEvent | None:
    # Rules msgspec cannot express, in the model's terms.
    if _TENANT_RE.fullmatch(event.tenant_id) is None or _ACTION_RE.fullmatch(event.action) is None:
        return None
    event.occurred_at = occurred_at_value(event.occurred_at, now)  # type: ignore[assignment]
    actor = event.actor
    # Key/value pairs kept: the 4 required top-level keys, actor.id, and each present optional.
    pairs = 5 + _present(
        event.resource,
        event.outcome,
        event.reason,
        event.event_id,
        event.source,
        event.changes,
        event.details,
        event.schema_version,
        actor.type,
        actor.name,
        actor.email,
        actor.ip,
        actor.user_agent,
    )
    if actor.type is UNSET:
        actor.type = ActorType.user
    email = actor.email
    if type(email) is str and _EMAIL_RE.fullmatch(email) is None:
        return None
    ip = actor.ip
    if type(ip) is str:
        actor.ip = canonical_ip(ip)  # raises for "" and anything not an address
    event_id = event.event_id
    if event_id is UNSET or event_id is None:
        event.event_id = None
    elif type(event_id) is str and _UUID_RE.fullmatch(event_id) is not None:
        # msgspec builds the UUID in C: 0.7 µs against 2.4 µs for uuid.UUID(text). It also
        # accepts the 32-digit form the schema refuses, so the pattern above stays the judge.
        event.event_id = msgspec.convert(event_id, uuid.UUID)  # type: ignore[assignment]
    else:
        return None
    if event.outcome is UNSET:
        event.outcome = Outcome.success
    if event.schema_version is UNSET:
        event.schema_version = "1"
    resource = event.resource
    if resource is UNSET:
        event.resource = None
    elif resource is not None:
        pairs += _present(resource.type, resource.id, resource.name)
    source = event.source
    if source is UNSET:
        event.source = None
    elif source is not None:
        pairs += _present(source.service, source.host, source.request_id)
    changes = event.changes
    if changes:
        for change in changes:
            pairs += 1
            old, new = change.old, change.new
            if old is UNSET:
                change.old = None
            else:
                pairs += 1
                if not _safe_scalar(old):
                    return None
            if new is UNSET:
                change.new = None
            else:
                pairs += 1
                if not _safe_scalar(new):
                    return None
    details = event.details
    if details:
        pairs += len(details)
    if repeats_keys(raw, pairs):
        return None
    return event


def _safe_scalar(value: object) -> bool:
    """old/new inside the fast path's subset: null, a boolean, an int64, a bounded string."""
    if value is None or value is True or value is False:
        return True
    kind = type(value)
    if kind is str:
        return len(value) <= MAX_CHANGE_VALUE  # type: ignore[arg-type]
    if kind is int:
        return _INT64_MIN <= value <= _INT64_MAX  # type: ignore[operator]
    return False


# --- the native fast path (native/fastpath, Rust) -------------------------------------------
#
# The same contract for a whole batch, and one step further: it returns each event's stored
# row, not a struct to enrich, with the parse, the rules and the content hash run outside the
# GIL (bench/RESULTS.md, issue 12 stops 31 and 33). The rules it cannot run itself (category,
# severity, redaction, canonical IPv6, the id of an event without one) it asks the model's
# own Python functions, once per distinct question per batch. Optional: it is built when the
# package is installed with a Rust toolchain; without one the processor runs decode_fast and
# enrich instead (processor/batch.py).
try:
    from auditstream.events import _fastpath_native as _native  # type: ignore[attr-defined]
except ImportError:  # no Rust toolchain where the package was built
    _native = None
else:
    _native.configure(
        uuid.UUID, uuid.SafeUUID.unknown, UTC, canonical_ip, categorize, severity, is_secret_name, uuid7_for
    )

NATIVE: bool = _native is not None
"""Whether the native fast path is built into this installation."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400 * 1_000_000


def _epoch_us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def decode_many(values: Sequence[object], now: datetime | None) -> list[FastEvent | None]:
    """:func:`decode_fast` of each of ``values``; an element is ``None`` where pydantic must decide."""
    return [decode_fast(value, now) for value in values]


def native_rows(
    values: list[object],
    topics: list[str],
    partitions: list[int],
    offsets: list[int],
    *,
    received_at: datetime,
    now: datetime,
    retention_days: int | None,
    encode: bool = False,
) -> tuple[list[tuple[Any, ...] | None], bytes | None]:
    """The stored row of each of ``values`` (the native fast path), ``None`` where pydantic must decide.

    Each row is the one ``stored.enrich`` makes of the validated event at its position
    (``topics[i]``/``partitions[i]``/``offsets[i]``) with ``received_at`` (aware UTC, whole
    milliseconds), ingest channel ``kafka``. An event older than ``retention_days`` is left
    to pydantic, which refuses it with the reason. Raises ``RuntimeError`` when not built.

    With ``encode``, also the body of the rows' ``FORMAT Native`` insert, for the columns
    and types of :data:`NATIVE_COLUMNS` (one block of the rows returned, in order, written
    with the GIL released), or ``None`` (no row, or a position the columns cannot hold).
    """
    if _native is None:
        raise RuntimeError("the native fast path is not built into this installation")
    now_us = _epoch_us(now)
    oldest_us = None if retention_days is None else now_us - retention_days * _DAY_US
    received_ms = _epoch_us(received_at) // 1000
    return _native.enrich_many(  # type: ignore[no-any-return]
        values,
        topics,
        partitions,
        offsets,
        received_at,
        received_ms,
        now_us,
        oldest_us,
        MAX_EVENT_BYTES,
        encode,
    )


NATIVE_COLUMNS: tuple[tuple[str, str], ...] = tuple(_native.native_columns()) if _native is not None else ()
"""The columns and ClickHouse types a body of :func:`native_rows` is written for, in order."""
