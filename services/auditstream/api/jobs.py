"""Asynchronous export jobs: their SQLite record and the worker that runs them.

A job is a row in ``data_dir/exports.sqlite3`` (WAL, beside the key file) and, once
completed, a file ``data_dir/exports/<id>.<ext>``. Lifecycle::

    pending ──► running ──► completed
                   │
                   └──────► failed      (error says why)

The worker writes ``<id>.<ext>.<attempt>.part`` and renames it at the end, so a file
under its final name is always complete. The time window is resolved when the job is
created and stored with it, so a job that runs later — or again — exports the
same rows.

Surviving a restart: a job found ``pending`` or ``running`` when the runner starts
was interrupted (API stopped or killed); it is queued again and restarted from
scratch (the earlier attempt's ``.part`` file is removed). Stopping the runner does not fail the
jobs it was running: they stop at the next slice of the file and stay ``running`` until the
next start.

At most ``workers`` (1–2) jobs run at once; the others wait ``pending``.

A job created with ``include_proof`` (NDJSON only) ends its file with the proof line
of ``GET /v1/export?include_proof=true`` (``integrity.bundle``), written after the
events, so the downloaded file verifies alone with ``auditstream verify``.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from auditstream.api import sqlite_file
from auditstream.api.formats import file_extension
from auditstream.private_fs import open_private, private_dir
from auditstream.store import Store, StoreError
from auditstream.store.export import SLICE_BYTES, EventExport

__all__ = ["ExportRunner", "JobStore", "job_file"]

log = logging.getLogger(__name__)

_PROGRESS_EVERY_SECONDS = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS export_jobs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    format        TEXT NOT NULL,
    filters       TEXT NOT NULL,
    window_since  TEXT NOT NULL,
    window_until  TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    rows_written  INTEGER NOT NULL DEFAULT 0,
    rows_total    INTEGER,
    size_bytes    INTEGER,
    error         TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    created_by    TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    include_proof INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS export_jobs_tenant ON export_jobs (tenant_id, created_at);
"""


def _ts(dt: datetime | None = None) -> str:
    return (dt or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")


def job_file(exports_dir: Path, job: dict[str, Any]) -> Path:
    return exports_dir / f"{job['id']}.{file_extension(job['format'])}"


class JobStore:
    """Export job records in one SQLite file; every call opens its own short connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        sqlite_file.create(self.path, _SCHEMA)
        with self._connect() as conn:
            # A file made before include_proof existed: add the column (old jobs had no proof).
            names = {r["name"] for r in conn.execute("PRAGMA table_info(export_jobs)")}
            if "include_proof" not in names:
                conn.execute("ALTER TABLE export_jobs ADD COLUMN include_proof INTEGER NOT NULL DEFAULT 0")

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_file.connect(self.path)

    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        job["filters"] = orjson.loads(job["filters"])
        job["include_proof"] = bool(job["include_proof"])
        return job

    def create(
        self,
        *,
        tenant_id: str,
        name: str,
        fmt: str,
        filters: dict[str, Any],
        since: datetime,
        until: datetime,
        created_by: str,
        include_proof: bool = False,
    ) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO export_jobs (id, tenant_id, name, format, filters, window_since, window_until,"
                " status, created_at, created_by, include_proof)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (
                    job_id,
                    tenant_id,
                    name,
                    fmt,
                    orjson.dumps(filters).decode(),
                    _ts(since),
                    _ts(until),
                    _ts(),
                    created_by,
                    int(include_proof),
                ),
            )
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str, tenant_id: str | None = None) -> dict[str, Any] | None:
        """The job, or None; with ``tenant_id``, None as well when it belongs to another tenant."""
        sql, args = "SELECT * FROM export_jobs WHERE id = ?", [job_id]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            args.append(tenant_id)
        with self._connect() as conn:
            row = conn.execute(sql, args).fetchone()
        return self._row(row) if row else None

    def list(self, tenant_id: str, *, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM export_jobs WHERE tenant_id = ?", [tenant_id]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(int(limit))
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def unfinished(self) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id FROM export_jobs WHERE status IN ('pending', 'running') ORDER BY created_at, id"
            ).fetchall()
        return [r["id"] for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        allowed = {
            "status",
            "rows_written",
            "rows_total",
            "size_bytes",
            "error",
            "started_at",
            "finished_at",
            "attempts",
        }
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)  # names from the allow-list only
        with self._connect() as conn:
            conn.execute(
                f"UPDATE export_jobs SET {assignments} WHERE id = ?",  # noqa: S608 - allow-listed names
                [*fields.values(), job_id],
            )


FilterBuilder = Callable[[dict[str, Any], str, datetime, datetime], Any]
# An export's filter -> its proof line (``integrity.bundle.proof_trailer`` bound to a ledger and key).
ProofWriter = Callable[[Any], bytes]


class _Stopped(Exception):
    """The runner is stopping: leave the job as it is, to be resumed at the next start."""


class ExportRunner:
    """Runs export jobs on ``workers`` background threads (1 or 2)."""

    def __init__(
        self,
        jobs: JobStore,
        store: Store,
        exports_dir: Path,
        build_filter: FilterBuilder,
        *,
        workers: int = 2,
        read_bytes: int = SLICE_BYTES,
        proof: ProofWriter | None = None,
    ) -> None:
        if not 1 <= workers <= 2:
            raise ValueError("workers must be 1 or 2: exports share the engine with queries")
        self.jobs = jobs
        self.store = store
        self.exports_dir = Path(exports_dir)
        self.build_filter = build_filter
        self.workers = workers
        self.read_bytes = read_bytes
        self.proof = proof
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> list[str]:
        """Start the workers; queue the jobs a previous run left unfinished (returned)."""
        private_dir(self.exports_dir)
        resumed = self.jobs.unfinished()
        for job_id in resumed:
            self.jobs.update(job_id, status="pending", rows_written=0, started_at=None)
            self._queue.put(job_id)
        if resumed:
            log.info("resuming %d unfinished export job(s)", len(resumed))
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"auditstream-export-job-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return resumed

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads.clear()

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stop.is_set():
                return
            try:
                self.run_job(job_id)
            except _Stopped:
                log.info("export job %s interrupted by shutdown; it resumes at the next start", job_id)
                return
            except Exception:  # a bug in the runner must not kill the worker
                log.exception("export job %s crashed", job_id)

    def run_job(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job["status"] not in ("pending", "running"):
            return
        started = datetime.now(UTC)
        attempt = job["attempts"] + 1
        self.jobs.update(job_id, status="running", started_at=_ts(started), rows_written=0, attempts=attempt)
        final = job_file(self.exports_dir, job)
        # One file per attempt: a worker of a stopped runner may still be inside a read when
        # the next start resumes the job, and must not write into or remove the new file.
        # Earlier attempts' files go, and the one name all attempts shared before (a crash's leftover).
        final.with_name(final.name + ".part").unlink(missing_ok=True)
        for stale in final.parent.glob(f"{glob.escape(final.name)}.*.part"):
            stale.unlink(missing_ok=True)
        part = final.with_name(f"{final.name}.{attempt}.part")
        try:
            since = datetime.fromisoformat(job["window_since"])
            until = datetime.fromisoformat(job["window_until"])
            f = self.build_filter(job["filters"], job["tenant_id"], since, until)
            total = self.store.count_events(f)
            self.jobs.update(job_id, rows_total=total)
            written = self._write(job_id, f, job["format"], part, proof=bool(job["include_proof"]))
            os.replace(part, final)
        except _Stopped:
            part.unlink(missing_ok=True)
            raise
        except Exception as exc:
            part.unlink(missing_ok=True)
            if self._stop.is_set():
                # A failure while the runner stops (the store closing under a read) is the
                # shutdown's, not the job's: it stays running and resumes at the next start.
                raise _Stopped from exc
            if isinstance(exc, StoreError):
                message = "the event store failed during the export; create the job again"
            else:
                message = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.exception("export job %s failed", job_id)
            self.jobs.update(job_id, status="failed", error=message, finished_at=_ts())
            return
        self.jobs.update(
            job_id,
            status="completed",
            rows_written=written,
            size_bytes=final.stat().st_size,
            finished_at=_ts(),
        )
        seconds = (datetime.now(UTC) - started).total_seconds()
        log.info(
            "export job %s completed: %d rows in %.2f s", job_id, written, seconds, extra={"rows": written}
        )

    def _write(self, job_id: str, f: Any, fmt: str, part: Path, *, proof: bool = False) -> int:
        export = EventExport(self.store, f, fmt, order="asc", slice_bytes=self.read_bytes)
        last_report = time.monotonic()
        # Owner-only (0600): an export is a copy of the audit log; the rename keeps the mode.
        with open_private(part) as out:
            for data in export:
                if self._stop.is_set():
                    raise _Stopped
                out.write(data)
                now = time.monotonic()
                if now - last_report >= _PROGRESS_EVERY_SECONDS:
                    self.jobs.update(job_id, rows_written=export.rows)
                    last_report = now
            if proof:
                if self.proof is None:
                    raise RuntimeError("this runner has no proof writer: the job cannot include proofs")
                # After the events, like the streamed export: the newest checkpoint then
                # covers as many of them as possible.
                out.write(self.proof(f))
            out.flush()
            os.fsync(out.fileno())
        return export.rows


def run_coroutine(coro: Any) -> Any:
    """Run a short coroutine (a FastAPI dependency function) on a worker thread."""
    return asyncio.run(coro)
