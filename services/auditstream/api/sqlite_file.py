"""The small SQLite files beside the data (API keys, export jobs).

Each operation opens its own short connection: safe from FastAPI's thread pool and
from another process (``auditstream keys create`` while the server runs). WAL is a
property of the file, so setting it once serves every later connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from auditstream.private_fs import private_dir, private_file


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    # busy_timeout: a concurrent writer holds the lock only for a moment.
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        yield conn
    finally:
        conn.close()


def create(path: Path, schema: str) -> None:
    """Create the file (and its folder) in WAL mode and apply ``schema`` (idempotent DDL).

    The file is created 0600 before SQLite opens it (its folder 0700 when created here):
    SQLite gives its -wal and -shm files the mode of the database file.
    """
    private_dir(path.parent)
    private_file(path)
    with connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(schema)
