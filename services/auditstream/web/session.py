"""Viewer sessions: an API key exchanged for an encrypted, signed, expiring cookie.

The cookie is a Fernet token (AES-128-CBC + HMAC-SHA256, with its issue time) over
``{"k": <api key>, "c": <csrf nonce>}``, made with a secret kept in the data folder
(``web-secret``, mode 0600, created on first use). So:

* signed — a cookie that was not made with the secret is refused;
* encrypted — the key inside is unreadable to whoever copies the cookie jar's file;
* expiring — ``Fernet.decrypt(ttl=...)`` refuses a token older than the session length;
* revocable — every request re-checks the key through the app's ``CachedVerifier``,
  so revoking the key ends its sessions within the verifier's TTL (2 s).

CSRF: state-changing forms carry the session's nonce ``c`` (synchronizer token); the
sign-in form, which has no session yet, uses a double-submit cookie. Both compare in
constant time.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request
from starlette.responses import Response

from auditstream.api.keys import ApiKey, CachedVerifier

__all__ = [
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "SessionCodec",
    "WebSession",
    "csrf_ok",
    "load_secret",
    "set_cookie",
]

SESSION_COOKIE = "auditstream_session"
LOGIN_CSRF_COOKIE = "auditstream_login_csrf"
_SECRET_FILE = "web-secret"


def load_secret(data_dir: Path) -> bytes:
    """The 32-byte server secret in ``data_dir/web-secret``: read, or created 0600 exactly once.

    ``O_EXCL`` makes creation race-free between processes; the mode is set at creation,
    so the secret is never readable by others, not even briefly.
    """
    path = Path(data_dir) / _SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) != 32:
            raise RuntimeError(f"{path}: expected a 32-byte secret; delete it to make a new one") from None
        return secret
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


@dataclass(frozen=True, slots=True)
class WebSession:
    key: ApiKey
    csrf: str
    # The API key itself: only for handing a request on to an API route that re-checks
    # it (``/v1/live``); never rendered, never logged.
    token: str = field(repr=False, default="")


class SessionCodec:
    """Makes and opens session cookies with one server secret."""

    def __init__(self, secret: bytes, max_age_seconds: int) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(secret))
        self.max_age = max_age_seconds

    def issue(self, token: str) -> str:
        payload = {"k": token, "c": secrets.token_urlsafe(24)}
        return self._fernet.encrypt(orjson.dumps(payload)).decode()

    def open(
        self, cookie: str | None, verifier: CachedVerifier, *, now: int | None = None
    ) -> WebSession | None:
        """The session of a cookie, or None: absent, forged, expired, or its key revoked.

        ``now`` (Unix seconds) is for tests of expiry; the default is the current time.
        """
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = cookie.encode()
            plain = (
                self._fernet.decrypt(raw, ttl=self.max_age)
                if now is None
                else self._fernet.decrypt_at_time(raw, ttl=self.max_age, current_time=now)
            )
            data = orjson.loads(plain)
            token, csrf = data["k"], data["c"]
        except (InvalidToken, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if not isinstance(token, str) or not isinstance(csrf, str):
            return None
        key = verifier.verify(token)
        return WebSession(key, csrf, token) if key is not None else None


def csrf_ok(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, path /; Secure whenever the page was served over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
