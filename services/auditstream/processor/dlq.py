"""Dead-letter records: the original bytes, unchanged, with the reason in headers.

Keeping the value byte-for-byte lets an operator fix and replay a record; the
headers say what was wrong and where the record came from:

    auditstream.error.reason     one line naming the field(s)
    auditstream.error.errors     JSON list of {field, message, type}
    auditstream.source.topic / .partition / .offset / .timestamp
    auditstream.rejected_at      RFC 3339, UTC
    auditstream.original.truncated   "true" when the value was cut to fit the broker's limit
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from auditstream.processor.batch import Incoming, KafkaMessage, Rejected

# Stay under the broker's default message.max.bytes (1 MiB) with room for headers.
MAX_DLQ_VALUE_BYTES = 900 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(rejected: Rejected, *, rejected_at: datetime) -> DeadLetter:
    message = rejected.message
    value = message.value
    headers = [
        ("auditstream.error.reason", rejected.reason.encode()),
        ("auditstream.error.errors", orjson.dumps(rejected.errors)),
        ("auditstream.source.topic", message.topic.encode()),
        ("auditstream.source.partition", str(message.partition).encode()),
        ("auditstream.source.offset", str(message.offset).encode()),
        ("auditstream.rejected_at", rejected_at.isoformat().encode()),
    ]
    timestamp_ms = _timestamp_ms(message)
    if timestamp_ms is not None:
        headers.append(("auditstream.source.timestamp", str(timestamp_ms).encode()))
    if value is not None and len(value) > MAX_DLQ_VALUE_BYTES:
        value = value[:MAX_DLQ_VALUE_BYTES]
        headers.append(("auditstream.original.truncated", b"true"))
    return DeadLetter(key=message.key, value=value, headers=headers)


def _timestamp_ms(message: Incoming) -> int | None:
    """The record's timestamp: ``KafkaMessage`` has milliseconds, faust's ``Message`` seconds."""
    if isinstance(message, KafkaMessage):
        return message.timestamp_ms
    seconds = getattr(message, "timestamp", None)
    return int(seconds * 1000) if seconds else None


def read_dead_letter_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers of a DLQ record as a plain dict (for tools and tests)."""
    return {k: v.decode("utf-8", "replace") for k, v in headers or []}
