"""The data of a Merkle leaf: the RFC 8785 (JCS) canonical JSON of a stored event.

The event is ``row_to_event(row)``, exactly what the API serves, so a recipient of an
export or an API answer can recompute the leaf from the JSON it holds: parse it,
canonicalise it with any JCS implementation, hash it with the 0x00 prefix.

Speed: the reference ``rfc8785`` package is pure Python (~30 µs an event), which would
make the sealer the slowest step of the pipeline. For values made only of strings,
booleans, null, integers within I-JSON range, lists and objects whose keys sort the
same by code point as by UTF-16 unit (no key character at or above U+D800),
``orjson`` with sorted keys writes exactly the JCS bytes (same escapes, raw UTF-8, no
whitespace), ~1 µs; anything else (floats above all, whose JCS form is ECMAScript's)
goes to ``rfc8785``. tests/integrity/test_canonical.py checks that both agree.

Leaf format: the leaf is a function of ``row_to_event``'s JSON shape, so that shape is
versioned. ``LEAF_FORMAT`` is the version this code seals with and ``LEAF_FORMATS`` the
versions it can recompute: format 1 is ``SHA-256(0x00 || JCS(row_to_event(row)))`` with
the shape of this release. Every leaf row records its format (``merkle_leaves.leaf_format``,
migration 0007) and every checkpoint names it in a signed ``leaf-format 1`` line; a
verifier refuses (exit 2) a format it does not know rather than report tampering. A change
to the shape must add format 2 here (keeping the format 1 shape for old leaves).

JCS (I-JSON) has no integers beyond +-(2**53 - 1). ``changes`` is free JSON from the
producer, so such a number can occur; the sealer must never stop on an event, so
those integers are written as their decimal string. A verifier that parses the
event with this module (``leaf_hash_of_event``) does the same.
"""

from __future__ import annotations

__all__ = [
    "LEAF_FORMAT",
    "LEAF_FORMATS",
    "UnknownLeafFormat",
    "check_leaf_format",
    "leaf_data",
    "leaf_hash_of_event",
    "leaf_hash_of_row",
]

from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

from auditstream.events.stored import row_to_event
from auditstream.integrity.merkle import leaf_hash

_MAX_INT = 2**53 - 1

LEAF_FORMAT = 1
LEAF_FORMATS = frozenset({1})


class UnknownLeafFormat(ValueError):
    """A leaf or checkpoint names a leaf format this code cannot recompute (a newer release?)."""


def check_leaf_format(value: object, where: str) -> int:
    """``value`` as a known leaf format number; ``UnknownLeafFormat`` naming ``where`` otherwise."""
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number not in LEAF_FORMATS:
        known = ", ".join(str(f) for f in sorted(LEAF_FORMATS))
        raise UnknownLeafFormat(
            f"{where} uses leaf format {str(value)[:20]!r}; this verifier knows leaf format {known}"
            " (a newer auditstream release may know it)"
        )
    return number


def _ijson(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_MAX_INT <= value <= _MAX_INT else str(value)
    if isinstance(value, dict):
        return {k: _ijson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ijson(v) for v in value]
    return value


def _plain(value: Any) -> bool:
    """True when orjson's sorted-keys output of ``value`` is its JCS form."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_MAX_INT <= value <= _MAX_INT
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) < "\ud800") or not _plain(item):
                return False
        return True
    if kind is list:
        return all(_plain(item) for item in value)
    return False


def leaf_data(event: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes of an event in the API's JSON shape."""
    if type(event) is dict and _plain(event):
        try:
            return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate: let the reference implementation decide
    try:
        return rfc8785.dumps(event)
    except rfc8785.IntegerDomainError:
        return rfc8785.dumps(_ijson(event))


def leaf_hash_of_event(event: Mapping[str, Any]) -> bytes:
    return leaf_hash(leaf_data(event))


def _plain_keys(mapping: Mapping[str, Any]) -> bool:
    return all(key.isascii() or max(key) < "\ud800" for key in mapping)


def leaf_hash_of_row(row: Mapping[str, Any]) -> bytes:
    """The leaf hash of a stored row (``row_to_event`` of it).

    The sealer's and the verifier's per-event cost, so only what producers control is
    checked for the fast path: ``changes`` (free JSON) and the keys of ``details``;
    every other key is a fixed ASCII name and every other value a string or a Kafka
    position (``_plain`` on the whole event would cost more than the hashing).
    """
    event = row_to_event(row)
    changes = event.get("changes")
    details = event.get("details")
    ingest = event["ingest"]
    if (
        (changes is None or _plain(changes))
        and (details is None or _plain_keys(details))
        and all(type(v) is not int or -_MAX_INT <= v <= _MAX_INT for v in ingest.values())
    ):
        try:
            return leaf_hash(orjson.dumps(event, option=orjson.OPT_SORT_KEYS))
        except orjson.JSONEncodeError:
            pass
    return leaf_hash(leaf_data(event))
