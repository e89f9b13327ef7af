"""The webhook signature: HMAC-SHA256 over the timestamp and the body.

Every webhook request carries::

    X-Auditstream-Timestamp: 1767225600            (Unix seconds when it was sent)
    X-Auditstream-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A receiver recomputes the HMAC over the *raw* request body (the bytes, before any JSON
parsing), compares in constant time, and refuses timestamps older than a few minutes
(replays). ``verify`` is the reference implementation of that recipe (README).
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-Auditstream-Signature"
TIMESTAMP_HEADER = "X-Auditstream-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300.0) -> bool:
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)
