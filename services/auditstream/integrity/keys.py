"""The checkpoint signing key: generated on first start, or given by the operator.

The key file holds one line, the signer key in note format
(``PRIVATE+KEY+<name>+<id>+<base64>``), mode 0600. It is created with ``O_EXCL``
so two processes starting at once cannot each write a different key; the loser
reads the winner's. An operator who keeps the key elsewhere (a secrets mount) points
``AUDITSTREAM_CHECKPOINT_KEY_PATH`` at it; a missing file there is created.

The verifier key goes to its own file (:func:`write_verifier`, the sealer writes it at
start), so the processes that only verify (the API, the viewer) never need read access
to the signer key: an attacker holding the API's files can still not sign a checkpoint.
"""

from __future__ import annotations

__all__ = ["load_or_create_signer", "load_verifier", "write_verifier"]

import contextlib
import logging
import os
import tempfile
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


def write_verifier(path: Path, verifier: Verifier) -> None:
    """Write ``verifier`` to ``path`` (mode 0644), atomically; leave a file that already says it."""
    path = Path(path)
    text = str(verifier) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # public by nature: verifiers and auditors read it
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    log.info("checkpoint verifier key written", extra={"path": str(path), "key": str(verifier)})
