"""The project's one backoff computation (retry.py), used by the retry loop and alert delivery (pure)."""

from __future__ import annotations

import asyncio
import random

import pytest

from auditstream.alerts.delivery import backoff_seconds
from auditstream.retry import Backoff, backoff_delay, retry


def test_delay_doubles_from_initial_up_to_the_maximum() -> None:
    b = Backoff(initial=0.2, maximum=1.0)
    assert [backoff_delay(n, b) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_delay(0, b) == 0.2  # "attempt 0" is not below the first delay
    assert backoff_delay(10**6, Backoff(initial=1.0, maximum=300.0)) == 300.0  # no float overflow


def test_jitter_keeps_the_delay_within_its_band() -> None:
    rng = random.Random(3)
    b = Backoff(initial=1.0, maximum=30.0)
    for n in range(1, 10):
        full = backoff_delay(n, b)
        jittered = backoff_delay(n, b, jitter=0.5, rng=rng)
        assert full * 0.5 <= jittered < full
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(1, b, jitter=1.5)


def test_alert_delivery_uses_the_same_function_with_equal_jitter() -> None:
    a, b = random.Random(9), random.Random(9)
    for n in range(1, 12):
        assert backoff_seconds(n, 1.0, 300.0, a) == backoff_delay(
            n, Backoff(initial=1.0, maximum=300.0), jitter=0.5, rng=b
        )


def test_retry_loop_waits_the_documented_schedule() -> None:
    """The loop's waits are ``backoff_delay`` 1, 2, 3... (reported through on_retry)."""
    waits: list[float] = []
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 5:
            raise ConnectionError("down")
        return "up"

    b = Backoff(initial=0.001, maximum=0.004)
    result = asyncio.run(
        retry(attempt, retry_on=ConnectionError, backoff=b, on_retry=lambda e, w: waits.append(w))
    )
    assert result == "up" and waits == [backoff_delay(n, b) for n in range(1, 5)] == [
        0.001,
        0.002,
        0.004,
        0.004,
    ]
