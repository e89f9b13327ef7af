"""A bounded on-disk spool of encoded events, for when the broker is unreachable.

SQLite in WAL mode with ``synchronous=NORMAL``: an append is one small transaction
that survives a crash of the process (not necessarily of the machine), and
records come back in the order given by ``seq`` - the producer's emit sequence -
so a tenant's events are sent in emit order when the broker returns. One
producer per folder: two producers draining the same file would interleave.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from auditstream.private_fs import private_dir, private_file
from auditstream.producer import metrics
from auditstream.producer.errors import SpoolFull
from auditstream.producer.producer import EncodedEvent

__all__ = ["DEFAULT_SPOOL_MAX_BYTES", "Spool"]

DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
FILE_NAME = "spool.sqlite3"


class Spool:
    """Events waiting for the broker, bounded by ``max_bytes`` of values."""

    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES) -> None:
        # Spooled events are audit data: folder 0700, file 0600 (SQLite's -wal/-shm follow the file).
        private_dir(directory)
        self.path = private_file(directory / FILE_NAME)
        self.max_bytes = max_bytes
        # isolation_level=None: each statement commits at once (one append = one transaction).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool ("
            " seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL)"
        )
        events, size, last = self._db.execute(
            "SELECT count(*), coalesce(sum(length(value)), 0), coalesce(max(seq), 0) FROM spool"
        ).fetchone()
        self.depth: int = events
        self.size: int = size
        self.last_seq: int = last  # the producer continues its emit sequence after it
        self._publish()

    def append(self, seq: int, encoded: EncodedEvent) -> None:
        """Keep ``encoded`` at position ``seq``; raise :class:`SpoolFull` when there is no room."""
        size = len(encoded.value)
        if self.size + size > self.max_bytes:
            metrics.SPOOL_FULL.inc()
            raise SpoolFull(
                f"the broker is unreachable and the spool at {self.path} is full "
                f"({self.depth} events, {self.size} of {self.max_bytes} bytes): event {encoded.event_id} "
                "was not accepted"
            )
        self._db.execute(
            "INSERT OR REPLACE INTO spool (seq, event_id, key, value) VALUES (?, ?, ?, ?)",
            (seq, str(encoded.event_id), encoded.key, encoded.value),
        )
        self.depth += 1
        self.size += size
        self.last_seq = max(self.last_seq, seq)
        metrics.SPOOLED.inc()
        self._publish()

    def peek(self, limit: int) -> list[tuple[int, EncodedEvent]]:
        """The oldest ``limit`` events, in emit order."""
        rows = self._db.execute(
            "SELECT seq, event_id, key, value FROM spool ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(seq, EncodedEvent(uuid.UUID(eid), key, value)) for seq, eid, key, value in rows]

    def remove(self, seqs: list[int]) -> None:
        """Forget events the broker has acknowledged."""
        if not seqs:
            return
        placeholders = ",".join("?" * len(seqs))
        removed, size = self._db.execute(
            f"SELECT count(*), coalesce(sum(length(value)), 0) FROM spool WHERE seq IN ({placeholders})",  # noqa: S608 - placeholders only
            seqs,
        ).fetchone()
        self._db.execute(f"DELETE FROM spool WHERE seq IN ({placeholders})", seqs)  # noqa: S608
        self.depth -= removed
        self.size -= size
        metrics.SPOOL_SENT.inc(removed)
        self._publish()

    def close(self) -> None:
        self._db.close()

    def _publish(self) -> None:
        metrics.SPOOL_EVENTS.set(self.depth)
        metrics.SPOOL_BYTES.set(self.size)
