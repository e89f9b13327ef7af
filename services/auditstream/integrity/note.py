"""C2SP signed notes (https://c2sp.org/signed-note) and checkpoints (https://c2sp.org/tlog-checkpoint).

A signed note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <name> <base64(key id || signature)>``. For Ed25519 the key id is the first four
bytes of ``SHA-256(name || 0x0A || 0x01 || public key)`` and the signature covers the
text (with its final newline). Keys are written as in Go's golang.org/x/mod/sumdb/note,
so other tools read them: verifier ``<name>+<key id hex>+<base64(0x01 || public key)>``,
signer ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>``.

A checkpoint is a note whose text is the origin line, the tree size in decimal, the
base64 root hash, then extension lines. Ours carry ``time <RFC 3339>`` and
``prev <base64 SHA-256 of the previous signed checkpoint>``, which chains them.

Errors::

    ValueError
    └── NoteError            -- malformed key, note or checkpoint text
        └── SignatureError   -- well formed, but no valid signature by the expected key
"""

from __future__ import annotations

__all__ = [
    "Checkpoint",
    "NoteError",
    "SignatureError",
    "Signer",
    "Verifier",
    "note_hash",
    "open_note",
    "sign_note",
    "split_notes",
]

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_ALG_ED25519 = 1
_DASH = "\u2014"  # the em dash that starts every signature line
_SIG_PREFIX = _DASH + " "


class NoteError(ValueError):
    pass


class SignatureError(NoteError):
    pass


def _check_name(name: str) -> str:
    if not name or any(ch.isspace() for ch in name) or "+" in name:
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ALG_ED25519]) + public).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 public key with its note name."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return _key_id(self.name, self.public)

    def __str__(self) -> str:
        body = base64.b64encode(bytes([_ALG_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{body}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("verifier key must look like <name>+<key id>+<base64 key>")
        name, key_hex, body = parts
        key = _b64decode(body, "verifier key")
        if len(key) != 33 or key[0] != _ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key")
        verifier = cls(_check_name(name), key[1:])
        if verifier.key_id.hex() != key_hex.lower():
            raise NoteError("verifier key id does not match its name and key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key (32-byte seed) with its note name."""

    name: str
    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls, name: str) -> Signer:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(_check_name(name), raw)

    @property
    def verifier(self) -> Verifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return Verifier(self.name, public.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def __str__(self) -> str:
        body = base64.b64encode(bytes([_ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{body}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError("signer key must look like PRIVATE+KEY+<name>+<key id>+<base64 key>")
        _, _, name, key_hex, body = parts
        key = _b64decode(body, "signer key")
        if len(key) != 33 or key[0] != _ALG_ED25519:
            raise NoteError("signer key is not an Ed25519 key")
        signer = cls(_check_name(name), key[1:])
        if signer.verifier.key_id.hex() != key_hex.lower():
            raise NoteError("signer key id does not match its name and key")
        return signer

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if "\n\n" in text or text.startswith("\n"):
        raise NoteError("note text must not contain a blank line")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise NoteError("note text must not contain control characters")


def sign_note(text: str, signer: Signer) -> str:
    """``text`` followed by a blank line and the signer's signature line."""
    _check_text(text)
    sig = signer.verifier.key_id + signer.sign(text.encode())
    return f"{text}\n{_SIG_PREFIX}{signer.name} {base64.b64encode(sig).decode()}\n"


def open_note(note: str, verifier: Verifier) -> str:
    """The text of ``note`` if it carries a valid signature by ``verifier``.

    Signatures by other keys are ignored (a note may be cosigned). Raises
    ``SignatureError`` naming the key ids that did sign when none is ``verifier``'s.
    """
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise NoteError("not a signed note: no blank line before the signature lines")
    text += "\n"
    _check_text(text)
    seen: list[str] = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"malformed signature line {line[:40]!r}")
        name, _, blob = line[len(_SIG_PREFIX) :].rpartition(" ")
        raw = _b64decode(blob, "signature")
        if len(raw) < 5:
            raise NoteError("signature is too short")
        seen.append(f"{name}+{raw[:4].hex()}")
        if name == verifier.name and raw[:4] == verifier.key_id and verifier.verify(text.encode(), raw[4:]):
            return text
    raise SignatureError(
        f"no valid signature by {verifier.name}+{verifier.key_id.hex()}; signed by {', '.join(seen)}"
    )


def note_hash(note: str) -> bytes:
    """SHA-256 of a whole signed note: what the next checkpoint's ``prev`` line names."""
    return hashlib.sha256(note.encode()).digest()


def split_notes(text: str) -> list[str]:
    """The signed notes of a file that holds several one after the other (the daily WORM file)."""
    notes: list[str] = []
    current: list[str] = []
    in_sigs = False
    for line in text.splitlines(keepends=True):
        if in_sigs and not line.startswith(_SIG_PREFIX):
            notes.append("".join(current))
            current, in_sigs = [], False
        if line == "\n":
            in_sigs = True
        current.append(line)
    if current:
        notes.append("".join(current))
    return [n for n in notes if n.strip()]


@dataclass(frozen=True)
class Checkpoint:
    """The body of a tlog checkpoint."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(f"{line}\n" for line in lines)

    def extension(self, key: str) -> str | None:
        """The value of the first extension line ``<key> <value>``."""
        for line in self.extensions:
            name, _, value = line.partition(" ")
            if name == key:
                return value
        return None

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash line")
        origin, size, root, *extensions = lines[:-1]
        if not origin:
            raise NoteError("checkpoint origin is empty")
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError(f"checkpoint size {size!r} is not a decimal number")
        raw = _b64decode(root, "checkpoint root hash")
        if len(raw) != 32:
            raise NoteError("checkpoint root hash is not 32 bytes")
        if any(not line for line in extensions):
            raise NoteError("checkpoint extension lines must not be empty")
        return cls(origin, int(size), raw, tuple(extensions))
