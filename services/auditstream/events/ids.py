"""UUIDv7 (RFC 9562) event identifiers.

Python 3.11 has no ``uuid.uuid7``. Version 7 puts the Unix time in milliseconds
in the top 48 bits, so ids sort by creation time: ClickHouse keeps them close
on disk and "newest first" can fall back to the id.

Two generators:

* :func:`uuid7` — a fresh id. Ids made by one process are strictly increasing,
  also within one millisecond (RFC 9562 §6.2 method 2, "monotonic random": the
  74 random bits are incremented within a millisecond) and across a clock that
  steps back.
* :func:`uuid7_for` — a *deterministic* v7 id from a timestamp and a seed. The
  processor uses it for events that arrive without ``event_id``, seeded with
  the Kafka position: re-processing the same message after a crash yields the
  same id, so duplicate elimination by ``event_id`` still works. A fresh random
  id there would store a replayed event twice.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62
_RAND_BITS = 74  # 12 bits rand_a + 62 bits rand_b
_RAND_MASK = (1 << _RAND_BITS) - 1
_MS_MASK = (1 << 48) - 1

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _reset_after_fork() -> None:
    # A forked child would otherwise continue the parent's sequence and could
    # produce the very ids the parent produces in the same millisecond.
    global _last_ms, _last_rand
    _last_ms = 0
    _last_rand = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _assemble(unix_ms: int, rand74: int) -> uuid.UUID:
    rand_a = rand74 >> 62
    rand_b = rand74 & ((1 << 62) - 1)
    value = ((unix_ms & _MS_MASK) << 80) | _VERSION_7 | (rand_a << 64) | _VARIANT_RFC | rand_b
    return uuid.UUID(int=value)


def uuid7() -> uuid.UUID:
    """A new RFC 9562 version-7 UUID, strictly greater than the previous one from this process."""
    global _last_ms, _last_rand
    now_ms = time.time_ns() // 1_000_000
    # 73 random bits: the top bit stays clear so that many increments within one
    # millisecond cannot overflow into the timestamp.
    fresh = int.from_bytes(os.urandom(10), "big") >> 7
    with _lock:
        if now_ms > _last_ms:
            _last_ms, _last_rand = now_ms, fresh
        else:
            # Same millisecond, or the clock stepped back: keep the last
            # timestamp and count up, carrying into the timestamp on overflow.
            _last_rand += 1
            if _last_rand > _RAND_MASK:
                _last_ms += 1
                _last_rand = fresh
        return _assemble(_last_ms, _last_rand)


def uuid7_for(unix_ms: int, seed: bytes) -> uuid.UUID:
    """A deterministic version-7 UUID: timestamp ``unix_ms``, random bits from a hash of ``seed``.

    Same inputs, same id. Used to name an event that came without ``event_id``
    after its Kafka position so that replays do not duplicate it.
    """
    digest = hashlib.blake2b(seed, digest_size=10).digest()
    return _assemble(unix_ms, int.from_bytes(digest, "big") & _RAND_MASK)


def uuid7_unix_ms(value: uuid.UUID) -> int:
    """The millisecond timestamp embedded in a version-7 UUID."""
    return value.int >> 80


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def position_event_id(occurred_at: datetime, topic: str, partition: int, offset: int) -> uuid.UUID:
    """The id the processor gives an event that arrived without one, at ``topic/partition/offset``.

    The same derivation as :func:`auditstream.events.stored.enrich`: time ``occurred_at``
    (aware), random bits from the Kafka position. ``auditstream dlq replay`` uses it so
    that a record replayed from the dead-letter topic keeps the id of its *original*
    position, however often it is replayed.
    """
    return uuid7_for((occurred_at - _EPOCH) // _MS, f"{topic}/{partition}/{offset}".encode())
