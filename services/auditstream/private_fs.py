"""Local state readable by its owner only: folders 0700, files 0600, whatever the umask.

The data folder holds API key hashes, the demo keys in clear, export files and the
producer's spool of events: nothing another local user should read. ``mkdir`` and
``open`` apply the umask, which can only *remove* bits, so a permissive umask (022)
would leave them world-readable; these helpers set the mode explicitly.

* :func:`private_dir` creates a folder (and missing parents) 0700. A folder that
  already exists is left as it is (it may be a shared mount chosen by the operator),
  but a warning is logged when others can read it.
* :func:`private_file` creates an empty file 0600 if it is missing and tightens an
  existing one to 0600. SQLite creates its ``-wal`` and ``-shm`` files with the
  mode of the database file, so creating the database this way covers them too.
* :func:`open_private` opens a file for writing, created 0600.
* :func:`write_private` writes a whole file atomically (temporary file, rename), 0600.

Standard library only: the SDK (spool) and the CLI import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["DIR_MODE", "FILE_MODE", "open_private", "private_dir", "private_file", "write_private"]

DIR_MODE = 0o700
FILE_MODE = 0o600

log = logging.getLogger(__name__)


def private_dir(path: Path | str) -> Path:
    """``path`` as a folder; every folder this call creates is 0700."""
    path = Path(path)
    if path.is_dir():
        _warn_if_shared(path)
        return path
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=DIR_MODE)
            os.chmod(folder, DIR_MODE)  # the umask may have removed owner bits, never added others
    return path


def _warn_if_shared(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "folder %s is accessible to other users (mode %o); chmod 700 it to keep keys and exports private",
            path,
            stat.S_IMODE(mode),
        )


def private_file(path: Path | str) -> Path:
    """Create ``path`` empty and 0600 when missing; tighten it to 0600 when it exists."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_private(path: Path | str) -> BinaryIO:
    """Open ``path`` for writing from the start (truncated), created 0600."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; the file is 0600 from its first byte."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open_private(tmp) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
