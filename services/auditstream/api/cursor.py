"""Opaque keyset cursors for ``GET /v1/events``.

A cursor is base64url (unpadded) of a small JSON object::

    {"v": 1, "o": "desc", "t": "<occurred_at>", "id": "<event_id>",
     "s": "<since>", "u": "<until>", "h": "<filter hash>"}

* ``t``/``id`` — the last row returned: the next page starts strictly after it in
  ``(occurred_at, event_id)`` order, so pages never overlap or skip rows even when
  many events share a millisecond.
* ``s``/``u`` — the time window resolved on the first page. Relative windows
  (``-24h``, the default) would otherwise move between pages; pinning them keeps a
  walk through the pages a walk through one fixed set of rows.
* ``h`` — a short hash of the tenant, the filters *as the client sent them*, and the
  order. A cursor presented with other filters would silently return a mix of two
  result sets; comparing hashes turns that into a 400 naming ``cursor``.

The cursor is opaque, not secret and not signed: the tenant always comes from the
API key, and the pinned window is re-checked against the window limit, so editing
a cursor grants nothing a plain request could not ask for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson

__all__ = ["Cursor", "InvalidCursor", "decode_cursor", "encode_cursor", "filter_hash"]

Order = Literal["asc", "desc"]
_MAX_CURSOR_CHARS = 1024


class InvalidCursor(ValueError):
    """The cursor is malformed or belongs to another query."""


@dataclass(frozen=True, slots=True)
class Cursor:
    order: Order
    occurred_at: datetime
    event_id: uuid.UUID
    since: datetime
    until: datetime
    filter_hash: str


def filter_hash(tenant_id: str, order: str, params: dict[str, str | Sequence[str] | None]) -> str:
    """16 hex chars identifying (tenant, order, filters); list values are order-insensitive."""
    canon: dict[str, object] = {"tenant": tenant_id, "order": order}
    for name, value in sorted(params.items()):
        if value is None or (not isinstance(value, str) and len(value) == 0):
            continue
        canon[name] = value if isinstance(value, str) else sorted(value)
    return hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def encode_cursor(cursor: Cursor) -> str:
    payload = {
        "v": 1,
        "o": cursor.order,
        "t": _iso(cursor.occurred_at),
        "id": str(cursor.event_id),
        "s": _iso(cursor.since),
        "u": _iso(cursor.until),
        "h": cursor.filter_hash,
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def _aware(value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidCursor("malformed cursor")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise InvalidCursor("malformed cursor")
    return dt.astimezone(UTC)


def decode_cursor(text: str) -> Cursor:
    """Parse a cursor; InvalidCursor for anything that is not one we issued."""
    if not text or len(text) > _MAX_CURSOR_CHARS:
        raise InvalidCursor("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("o") not in ("asc", "desc"):
            raise InvalidCursor("malformed cursor")
        h = data.get("h")
        if not isinstance(h, str) or len(h) != 16:
            raise InvalidCursor("malformed cursor")
        cursor = Cursor(
            order=data["o"],
            occurred_at=_aware(data.get("t")),
            event_id=uuid.UUID(str(data.get("id"))),
            since=_aware(data.get("s")),
            until=_aware(data.get("u")),
            filter_hash=h,
        )
    except InvalidCursor:
        raise
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
        raise InvalidCursor("malformed cursor") from None
    if cursor.since >= cursor.until:
        raise InvalidCursor("malformed cursor")
    return cursor
