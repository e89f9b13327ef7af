"""The checkpoint signing key: generated on first start, or given by the operator.

The key file holds one line, the signer key in note format
(``PRIVATE+KEY+<name>+<id>+<base64>``), mode 0600. It is created with ``O_EXCL``
so two processes starting at once cannot each write a different key; the loser
reads the winner's. An operator who keeps the key elsewhere (a secrets mount) points
``AUDITSTREAM_CHECKPOINT_KEY_PATH`` at it; a missing file there is created.
"""

from __future__ import annotations

__all__ = ["load_or_create_signer", "load_verifier"]

import contextlib
import logging
import os
from pathlib import Path

from auditstream.integrity.note import NoteError, Signer, Verifier

log = logging.getLogger(__name__)


def load_or_create_signer(path: Path, name: str) -> Signer:
    """The signer stored at ``path``; a new one named ``name`` if the file does not exist."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        signer = Signer.generate(name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race: use its key
        else:
            with os.fdopen(fd, "w") as f:
                f.write(str(signer) + "\n")
                f.flush()
                os.fsync(f.fileno())
            log.info("checkpoint key created", extra={"path": str(path), "key": str(signer.verifier)})
            return signer
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("checkpoint key file is readable by others", extra={"path": str(path), "mode": oct(mode)})
    return Signer.parse(path.read_text(encoding="utf-8"))


def load_verifier(value: str) -> Verifier:
    """A verifier key given as text, or as the path of a file holding it (or a signer key)."""
    text = value.strip()
    candidate = Path(text)
    with contextlib.suppress(OSError):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8").strip()
    if text.startswith("PRIVATE+KEY+"):
        return Signer.parse(text).verifier
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise NoteError(f"{value[:60]}: {exc}") from None
