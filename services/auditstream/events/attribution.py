"""How an event arrived, as the processor may believe it: Kafka, HTTP ingest, or auditstream itself.

Every stored event records its ingest channel (``kafka``, ``http`` or ``internal``) and,
for HTTP ingest, the id of the key that sent it. The processor only sees Kafka records,
so the API (HTTP ingest, its own audit trail) and the CLI label what they publish with
record headers. Anyone who can write to the topic could write such headers too, so the
label is signed: HMAC-SHA256, keyed with a secret that only auditstream's own processes
hold (``AUDITSTREAM_INGEST_SECRET``, or a file generated in the data folder on first use,
mode 0600, shared by the processes of one installation). The processor then decides:

- no attribution headers: ``kafka`` (any producer: the SDK, kcat, a connector);
- headers with a valid signature: what they say (``http`` + key id, or ``internal``);
- headers with a missing or wrong signature: refused to the dead-letter topic. Someone
  tried to claim a channel they did not use; storing it as ``kafka`` would hide that.

The signature covers the channel, the key id and the record value, so a label cannot
be lifted onto another record. Events that speak for auditstream itself (``source.service``
``auditstream-*``: key changes, exports, alerts, replays) are accepted only as ``internal``,
which is how an exporter is kept from forging or hiding the trail of its own export.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from auditstream.config import Settings

__all__ = [
    "CHANNEL_HEADER",
    "CHANNEL_HTTP",
    "CHANNEL_INTERNAL",
    "CHANNEL_KAFKA",
    "KEY_ID_HEADER",
    "RESERVED_SERVICE_PREFIX",
    "SIGNATURE_HEADER",
    "Attribution",
    "AttributionInvalid",
    "Attributor",
    "attributor_for",
    "is_labelled",
    "is_reserved_service",
    "load_secret",
]

CHANNEL_KAFKA = "kafka"
CHANNEL_HTTP = "http"
CHANNEL_INTERNAL = "internal"
_SIGNED_CHANNELS = frozenset({CHANNEL_HTTP, CHANNEL_INTERNAL})

CHANNEL_HEADER = "auditstream.ingest.channel"
KEY_ID_HEADER = "auditstream.ingest.key_id"
SIGNATURE_HEADER = "auditstream.ingest.signature"
_HEADERS = frozenset({CHANNEL_HEADER, KEY_ID_HEADER, SIGNATURE_HEADER})

# source.service values of this prefix are auditstream's own (auditstream-api, -cli, -alerts).
RESERVED_SERVICE_PREFIX = "auditstream-"

SECRET_FILE = "ingest.secret"
_SECRET_BYTES = 32


def is_labelled(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> bool:
    """True when a record carries any ingest attribution header."""
    if not headers:
        return False
    names = headers.keys() if isinstance(headers, Mapping) else (name for name, _ in headers)
    return any(name in _HEADERS for name in names)


def is_reserved_service(service: str | None) -> bool:
    """True for a ``source.service`` that only auditstream's own processes may use."""
    return bool(service) and service.lower().startswith(RESERVED_SERVICE_PREFIX)  # type: ignore[union-attr]


class AttributionInvalid(ValueError):
    """Attribution headers that do not verify (forged, truncated, or signed with another secret)."""


@dataclass(frozen=True, slots=True)
class Attribution:
    channel: str
    key_id: str = ""


KAFKA = Attribution(CHANNEL_KAFKA)


class Attributor:
    """Signs and verifies the ingest-channel headers with one installation's secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the ingest secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, channel: str, key_id: str, value: bytes) -> bytes:
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        mac.update(channel.encode())
        mac.update(b"\x00")
        mac.update(key_id.encode())
        mac.update(b"\x00")
        mac.update(value)
        return mac.hexdigest().encode()

    def headers(self, channel: str, value: bytes, key_id: str = "") -> tuple[tuple[str, bytes], ...]:
        """The record headers that label ``value`` as arrived through ``channel``."""
        if channel not in _SIGNED_CHANNELS:
            raise ValueError(f"only {sorted(_SIGNED_CHANNELS)} are labelled, not {channel!r}")
        return (
            (CHANNEL_HEADER, channel.encode()),
            (KEY_ID_HEADER, key_id.encode()),
            (SIGNATURE_HEADER, self._mac(channel, key_id, value)),
        )

    def verify(
        self, headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None, value: bytes
    ) -> Attribution:
        """The channel of a record; ``kafka`` without labels, AttributionInvalid for a bad label."""
        if not headers:
            return KAFKA
        items = headers.items() if isinstance(headers, Mapping) else headers
        found: dict[str, bytes] = {}
        for name, raw in items:
            if name in _HEADERS:
                if name in found:
                    raise AttributionInvalid(f"header {name} appears twice")
                found[name] = bytes(raw or b"")
        if not found:
            return KAFKA
        try:
            channel = found[CHANNEL_HEADER].decode()
            key_id = found.get(KEY_ID_HEADER, b"").decode()
            signature = found[SIGNATURE_HEADER]
        except (KeyError, UnicodeDecodeError):
            raise AttributionInvalid("incomplete ingest attribution headers") from None
        if channel not in _SIGNED_CHANNELS:
            raise AttributionInvalid(f"unknown ingest channel {channel[:32]!r}")
        if not hmac.compare_digest(signature, self._mac(channel, key_id, value)):
            raise AttributionInvalid("ingest attribution signature does not verify")
        return Attribution(channel, key_id)


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, else the data folder's (created on first use, owner-only)."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_hex(_SECRET_BYTES).encode()
    # Written whole to a private temporary file, then linked into place: a process starting
    # at the same moment either sees no file or the complete one, and link() refuses to
    # replace a secret another process put there first (then that one is used).
    tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read(path)
    finally:
        tmp.unlink(missing_ok=True)
    return secret


def _read(path: Path) -> bytes:
    data = path.read_bytes().strip()
    if len(data) < 16:
        raise ValueError(f"{path} holds no usable ingest secret")
    return data


def attributor_for(settings: Settings) -> Attributor:
    """The attributor of this installation (configured secret, else the data folder's)."""
    configured = settings.ingest_secret.get_secret_value() if settings.ingest_secret else None
    return Attributor(load_secret(configured, settings.data_dir))
