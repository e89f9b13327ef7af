"""The webhook signature recipe of the README, and the retry schedule (pure)."""

from __future__ import annotations

import hashlib
import hmac
import random
import time

from auditstream.alerts.delivery import backoff_seconds
from auditstream.alerts.signing import sign, verify


def test_signature_is_the_documented_recipe() -> None:
    body = b'{"type":"alert.triggered"}'
    ts = int(time.time())
    expected = "v1=" + hmac.new(b"k" * 20, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert sign("k" * 20, ts, body) == expected
    assert verify("k" * 20, str(ts), body, expected)
    assert not verify("k" * 20, str(ts), body + b" ", expected)
    assert not verify("k" * 20, str(ts - 3600), body, sign("k" * 20, ts - 3600, body))  # replayed


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_seconds(n, 1.0, 30.0, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        full = min(30.0, 2 ** (n - 1))
        assert full / 2 <= d < full
