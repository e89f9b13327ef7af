"""Is the embedded ClickHouse engine's folder in use by another process?

chDB runs the engine inside one process and, like a ClickHouse server, holds an
exclusive ``flock`` on ``<folder>/status`` while it runs. A second process that
opens the same folder (``migrate``, ``reconcile`` while ``auditstream run`` is up)
fails deep inside the engine with a traceback; checking the lock first gives the
operator one clear sentence and exit code 2 instead.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import typer

__all__ = ["EXIT_ENGINE_IN_USE", "chdb_folder", "engine_in_use", "exit_if_engine_in_use", "in_use_message"]

EXIT_ENGINE_IN_USE = 2


def chdb_folder(dsn: str) -> Path | None:
    """The folder of a ``chdb://`` DSN, None for a server DSN."""
    if not dsn.startswith("chdb:"):
        return None
    path = dsn[len("chdb:") :].lstrip("/").split("?", 1)[0]
    return Path("/" + path) if path else None


def engine_in_use(dsn: str) -> bool:
    """True when another process holds the engine lock of the DSN's chDB folder."""
    folder = chdb_folder(dsn)
    if folder is None:
        return False
    try:
        fd = os.open(folder / "status", os.O_RDONLY)
    except OSError:  # no status file: no engine has the folder open
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # flock also refuses this process's own engine (another open file): not "another process".
        return not _locked_by_this_process(os.fstat(fd).st_ino)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _locked_by_this_process(inode: int) -> bool:
    """True when /proc/locks says this process holds the flock on ``inode`` (Linux)."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    me = str(os.getpid())
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF": pid, then major:minor:inode.
        if (
            len(fields) >= 6
            and fields[1] == "FLOCK"
            and fields[4] == me
            and fields[5].rsplit(":", 1)[-1] == str(inode)
        ):
            return True
    return False


def exit_if_engine_in_use(dsn: str, command: str) -> None:
    """Print why ``command`` cannot run now and exit 2 when the chDB folder is in use."""
    if engine_in_use(dsn):
        typer.echo(in_use_message(dsn, command), err=True)
        raise typer.Exit(EXIT_ENGINE_IN_USE)


def in_use_message(dsn: str, command: str) -> str:
    return (
        f"error: the embedded ClickHouse engine at {dsn} is in use, most likely by a running "
        "'auditstream run' (chDB allows one process per folder). "
        f"Stop it and run {command} again, or use a ClickHouse server DSN."
    )
