"""uuid7(): RFC 9562 version 7, time-ordered; uuid7_for(): deterministic v7."""

from __future__ import annotations

import time
import uuid

import pytest

from auditstream.events import ids
from auditstream.events.ids import uuid7, uuid7_for, uuid7_unix_ms


def test_version_and_variant_bits() -> None:
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert (value.int >> 76) & 0xF == 7
    assert (value.int >> 62) & 0b11 == 0b10


def test_timestamp_is_now() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= uuid7_unix_ms(value) <= after + 1


def test_strictly_increasing_within_a_millisecond() -> None:
    values = [uuid7() for _ in range(10_000)]  # many share a millisecond
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert str(values[0]) < str(values[-1])  # text order too (lower-case hex, fixed width)


def test_monotonic_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    first = uuid7()
    monkeypatch.setattr(ids.time, "time_ns", lambda: (uuid7_unix_ms(first) - 1000) * 1_000_000)
    second = uuid7()
    assert second > first
    assert uuid7_unix_ms(second) == uuid7_unix_ms(first)


def test_deterministic_variant() -> None:
    a = uuid7_for(1_773_137_601_123, b"audit.events/0/5")
    assert a == uuid7_for(1_773_137_601_123, b"audit.events/0/5")
    assert a != uuid7_for(1_773_137_601_123, b"audit.events/0/6")
    assert a.version == 7 and a.variant == uuid.RFC_4122
    assert uuid7_unix_ms(a) == 1_773_137_601_123
