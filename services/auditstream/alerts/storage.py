"""Rules, alerts, window state, feed positions and deliveries: one SQLite file, ``alerts.sqlite3``.

Why SQLite and not ClickHouse (migration 0006 stays unused):

* **Atomicity is the contract.** A page of the feed must move the tenant's feed position,
  the window state of every rule it touched, the alerts it fired and their pending deliveries
  together, or not at all; otherwise a crash either loses an alert (position saved, alert
  not) or fires it twice (alert saved, position not). SQLite gives one ACID transaction over
  all of it; ClickHouse has no multi-table transactions, and emulating them (versioned rows,
  ReplacingMergeTree, FINAL reads) would put merge semantics into a correctness argument.
* **The shape is OLTP.** Rules are edited, alerts acknowledged and resolved, deliveries
  retried: small point updates that MergeTree handles poorly (mutations) and SQLite well.
* **It follows the house pattern.** API keys and export jobs already live in SQLite files
  beside the data (``api/sqlite_file.py``): WAL, one short connection per operation, safe
  from the API's thread pool and from another process (the CLI) on the same host.

The cost: the file is local to one host, so the evaluator and the API that manage rules must
share a data folder — true of ``auditstream run`` (one process) and of an API and processor
on one machine. A deployment that runs them on different hosts would move this module to a
shared SQL database; nothing outside this module knows it is SQLite.

The alert id is the primary key and inserts are ``INSERT OR IGNORE``: an alert evaluated
twice is stored once, and only the first insert creates its deliveries.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from auditstream.alerts.evaluator import FiredAlert
from auditstream.alerts.model import Rule, parse_rule
from auditstream.api import sqlite_file

__all__ = ["AlertDB", "iso"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    spec        TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE INDEX IF NOT EXISTS rules_tenant ON rules (tenant_id, deleted_at);
CREATE TABLE IF NOT EXISTS cursors (
    tenant_id   TEXT PRIMARY KEY,
    positions   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS window_state (
    rule_id     TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    state       TEXT NOT NULL,
    last_ms     INTEGER NOT NULL,
    PRIMARY KEY (rule_id, group_key)
);
CREATE TABLE IF NOT EXISTS alerts (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    rule_name       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    group_json      TEXT NOT NULL,
    window_start    TEXT NOT NULL,
    window_end      TEXT NOT NULL,
    event_ids       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    created_at      TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    resolved_by     TEXT,
    resolved_at     TEXT,
    published_at    TEXT
);
CREATE INDEX IF NOT EXISTS alerts_tenant ON alerts (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS alerts_unpublished ON alerts (published_at) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id        TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    target_index    INTEGER NOT NULL,
    target          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at      REAL NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    finished_at     REAL,
    UNIQUE (alert_id, target_index)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    delivery_id INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TEXT NOT NULL,
    status_code INTEGER,
    error       TEXT,
    duration_ms REAL NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
"""


def iso(dt: datetime | None = None) -> str:
    return (dt or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rule_from_row(row: sqlite3.Row) -> Rule:
    rule = parse_rule(orjson.loads(row["spec"]))  # stored specs were validated when written
    return _with_identity(rule, row)


def _with_identity(rule: Rule, row: sqlite3.Row) -> Rule:
    from dataclasses import replace

    return replace(rule, id=row["id"], tenant_id=row["tenant_id"], version=row["version"])


class AlertDB:
    """The alerts database; every method opens its own short connection (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        sqlite_file.create(path, _SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with sqlite_file.connect(self.path) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self) -> Any:
        return sqlite_file.connect(self.path)

    # --- rules ------------------------------------------------------------------------

    def create_rule(
        self, tenant_id: str, spec: dict[str, Any], by: str, rule_id: str | None = None
    ) -> dict[str, Any]:
        now = iso()
        rid = rule_id or str(uuid.uuid4())
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO rules (id, tenant_id, spec, version, created_at, created_by, updated_at,"
                " updated_by) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
                (rid, tenant_id, orjson.dumps(spec).decode(), now, by, now, by),
            )
        rule = self.get_rule(rid, tenant_id)
        assert rule is not None
        return rule

    def get_rule(self, rule_id: str, tenant_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM rules WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL",
                (rule_id, tenant_id),
            ).fetchone()
        return dict(row) if row else None

    def list_rules(self, tenant_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM rules WHERE tenant_id = ? AND deleted_at IS NULL ORDER BY created_at, id",
                (tenant_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def update_rule(
        self, rule_id: str, tenant_id: str, spec: dict[str, Any], by: str
    ) -> dict[str, Any] | None:
        """Replace the spec; the rule's window state starts afresh (its meaning may have changed)."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE rules SET spec = ?, version = version + 1, updated_at = ?, updated_by = ?"
                " WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL",
                (orjson.dumps(spec).decode(), iso(), by, rule_id, tenant_id),
            )
            if cur.rowcount == 0:
                return None
            conn.execute("DELETE FROM window_state WHERE rule_id = ?", (rule_id,))
        return self.get_rule(rule_id, tenant_id)

    def delete_rule(self, rule_id: str, tenant_id: str, by: str) -> bool:
        """Soft delete: the rule stops; its alerts (which name it) stay."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE rules SET deleted_at = ?, updated_by = ?"
                " WHERE id = ? AND tenant_id = ? AND deleted_at IS NULL",
                (iso(), by, rule_id, tenant_id),
            )
            conn.execute("DELETE FROM window_state WHERE rule_id = ?", (rule_id,))
        return cur.rowcount > 0

    def active_rules(self) -> dict[str, list[Rule]]:
        """Every tenant's live rules (enabled or not; the evaluator skips disabled ones)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM rules WHERE deleted_at IS NULL ORDER BY tenant_id, id"
            ).fetchall()
        out: dict[str, list[Rule]] = {}
        for row in rows:
            out.setdefault(row["tenant_id"], []).append(_rule_from_row(row))
        return out

    def rules_fingerprint(self) -> tuple[int, str]:
        """Changes whenever a rule is created, edited or deleted (cheap reload check)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT count(*) AS n, coalesce(max(updated_at), '') || coalesce(max(deleted_at), '') AS t,"
                " coalesce(sum(version), 0) AS v FROM rules"
            ).fetchone()
        return int(row["n"]), f"{row['t']}/{row['v']}"

    # --- feed positions and window state ----------------------------------------------

    def ensure_cursor(self, tenant_id: str, positions: dict[int, int]) -> None:
        """Start following a tenant at ``positions`` unless it is followed already."""
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO cursors (tenant_id, positions, updated_at) VALUES (?, ?, ?)",
                (tenant_id, orjson.dumps({str(k): v for k, v in positions.items()}).decode(), iso()),
            )

    def cursor(self, tenant_id: str) -> dict[int, int] | None:
        with self._read() as conn:
            row = conn.execute("SELECT positions FROM cursors WHERE tenant_id = ?", (tenant_id,)).fetchone()
        if row is None:
            return None
        return {int(k): int(v) for k, v in orjson.loads(row["positions"]).items()}

    def load_states(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        keys = list(keys)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        with self._read() as conn:
            for i in range(0, len(keys), 400):
                chunk = keys[i : i + 400]
                where = " OR ".join("(rule_id = ? AND group_key = ?)" for _ in chunk)
                params = [p for key in chunk for p in key]
                for row in conn.execute(
                    f"SELECT rule_id, group_key, state FROM window_state WHERE {where}",  # noqa: S608
                    params,
                ):
                    out[(row["rule_id"], row["group_key"])] = orjson.loads(row["state"])
        return out

    def commit_page(
        self,
        tenant_id: str,
        positions: dict[int, int],
        states: dict[tuple[str, str], dict[str, Any]],
        alerts: list[FiredAlert],
        *,
        stale_before: dict[str, int] | None = None,
        rule_versions: dict[str, int] | None = None,
    ) -> list[str]:
        """One transaction: feed position, window state, new alerts and their deliveries.

        Returns the ids of the alerts that are new (an alert already stored is left alone).
        ``stale_before`` (rule id -> ms) drops the state of groups idle since before then.
        ``rule_versions`` (rule id -> the version evaluated): a rule edited or deleted while
        the page was evaluated keeps its fresh state and fires nothing from this page.
        """
        now = iso()
        now_s = time.time()
        new_ids: list[str] = []
        with self._tx() as conn:
            if rule_versions:
                current = {
                    row["id"]: row["version"]
                    for row in conn.execute(
                        "SELECT id, version FROM rules WHERE tenant_id = ? AND deleted_at IS NULL",
                        (tenant_id,),
                    )
                }
                changed = {r for r, v in rule_versions.items() if current.get(r) != v}
                if changed:
                    states = {k: v for k, v in states.items() if k[0] not in changed}
                    alerts = [a for a in alerts if a.rule_id not in changed]
            conn.execute(
                "INSERT INTO cursors (tenant_id, positions, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET positions = excluded.positions,"
                " updated_at = excluded.updated_at",
                (tenant_id, orjson.dumps({str(k): v for k, v in positions.items()}).decode(), now),
            )
            conn.executemany(
                "INSERT INTO window_state (rule_id, group_key, state, last_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (rule_id, group_key) DO UPDATE SET state = excluded.state,"
                " last_ms = excluded.last_ms",
                [
                    (rule_id, group, orjson.dumps(state).decode(), int(state.get("w") or 0))
                    for (rule_id, group), state in states.items()
                ],
            )
            for rule_id, horizon in (stale_before or {}).items():
                conn.execute("DELETE FROM window_state WHERE rule_id = ? AND last_ms < ?", (rule_id, horizon))
            for a in alerts:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO alerts (id, tenant_id, rule_id, rule_name, kind, severity,"
                    " group_json, window_start, window_end, event_ids, status, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                    (
                        a.id,
                        a.tenant_id,
                        a.rule_id,
                        a.rule_name,
                        a.kind,
                        a.severity,
                        orjson.dumps(a.group).decode(),
                        iso(a.window_start),
                        iso(a.window_end),
                        orjson.dumps(list(a.event_ids)).decode(),
                        now,
                    ),
                )
                if cur.rowcount == 0:
                    continue
                new_ids.append(a.id)
                conn.executemany(
                    "INSERT OR IGNORE INTO deliveries (alert_id, tenant_id, target_index, target, status,"
                    " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    [
                        (a.id, a.tenant_id, i, orjson.dumps(t).decode(), now_s, now_s)
                        for i, t in enumerate(a.targets)
                    ],
                )
        return new_ids

    # --- alerts ------------------------------------------------------------------------

    @staticmethod
    def _alert_view(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["group"] = orjson.loads(out.pop("group_json"))
        out["event_ids"] = orjson.loads(out["event_ids"])
        return out

    def get_alert(self, alert_id: str, tenant_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM alerts WHERE id = ? AND tenant_id = ?", (alert_id, tenant_id)
            ).fetchone()
            if row is None:
                return None
            alert = self._alert_view(row)
            alert["deliveries"] = self._deliveries(conn, alert_id)
        return alert

    def list_alerts(
        self,
        tenant_id: str,
        *,
        rule_id: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        clauses, params = ["tenant_id = ?"], [tenant_id]
        for column, op, value in (
            ("rule_id", "=", rule_id),
            ("status", "=", status),
            ("created_at", ">=", since),
            ("created_at", "<", until),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        params.append(limit)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT * FROM alerts WHERE {' AND '.join(clauses)} ORDER BY created_at DESC, id LIMIT ?",  # noqa: S608
                params,
            ).fetchall()
        return [self._alert_view(r) for r in rows]

    def set_status(self, alert_id: str, tenant_id: str, status: str, by: str) -> dict[str, Any] | None:
        """acknowledged / resolved, with who and when; resolving also acknowledges."""
        now = iso()
        with self._tx() as conn:
            if status == "acknowledged":
                conn.execute(
                    "UPDATE alerts SET status = CASE status WHEN 'resolved' THEN status"
                    " ELSE 'acknowledged' END, acknowledged_by = coalesce(acknowledged_by, ?),"
                    " acknowledged_at = coalesce(acknowledged_at, ?)"
                    " WHERE id = ? AND tenant_id = ?",
                    (by, now, alert_id, tenant_id),
                )
            else:
                conn.execute(
                    "UPDATE alerts SET status = 'resolved', resolved_by = coalesce(resolved_by, ?),"
                    " resolved_at = coalesce(resolved_at, ?), acknowledged_by = coalesce(acknowledged_by, ?),"
                    " acknowledged_at = coalesce(acknowledged_at, ?) WHERE id = ? AND tenant_id = ?",
                    (by, now, by, now, alert_id, tenant_id),
                )
        return self.get_alert(alert_id, tenant_id)

    def unpublished(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE published_at IS NULL ORDER BY created_at, id LIMIT ?", (limit,)
            ).fetchall()
        return [self._alert_view(r) for r in rows]

    def mark_published(self, alert_ids: list[str]) -> None:
        with self._tx() as conn:
            conn.executemany(
                "UPDATE alerts SET published_at = ? WHERE id = ?", [(iso(), a) for a in alert_ids]
            )

    # --- deliveries ---------------------------------------------------------------------

    @staticmethod
    def _deliveries(conn: sqlite3.Connection, alert_id: str) -> list[dict[str, Any]]:
        out = []
        for d in conn.execute(
            "SELECT * FROM deliveries WHERE alert_id = ? ORDER BY target_index", (alert_id,)
        ):
            target = orjson.loads(d["target"])
            attempts = [
                dict(a)
                for a in conn.execute(
                    "SELECT attempt, at, status_code, error, duration_ms FROM delivery_attempts"
                    " WHERE delivery_id = ? ORDER BY attempt",
                    (d["id"],),
                )
            ]
            out.append(
                {
                    "id": d["id"],
                    "target": {"type": target["type"], "url": target["url"]},  # never the secret
                    "status": d["status"],
                    "attempts": attempts,
                    "last_status": d["last_status"],
                    "last_error": d["last_error"],
                }
            )
        return out

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries per status (pending, delivered, failed), all tenants: for metrics and benches."""
        with self._read() as conn:
            rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def due_deliveries(self, now: float, limit: int, exclude: set[int]) -> list[dict[str, Any]]:
        """Pending deliveries due by ``now``, each with its alert (``"alert"``; None if gone)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT d.*, a.rule_id FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
                " WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at LIMIT ?",
                (now, limit + len(exclude)),
            ).fetchall()
            due = [dict(r) for r in rows if r["id"] not in exclude][:limit]
            # The alerts in the same read: one trip to the file per round, not one per delivery.
            ids = sorted({d["alert_id"] for d in due})
            marks = ", ".join("?" * len(ids))
            alerts = (
                {
                    r["id"]: self._alert_view(r)
                    for r in conn.execute(f"SELECT * FROM alerts WHERE id IN ({marks})", ids)  # noqa: S608
                }
                if ids
                else {}
            )
        for d in due:
            d["alert"] = alerts.get(d["alert_id"])
        return due

    def record_attempt(
        self,
        delivery_id: int,
        *,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        outcome: str,
        next_attempt_at: float | None,
    ) -> None:
        """Log one attempt and move the delivery on: delivered, failed, or pending again later."""
        self.record_attempts(
            [
                {
                    "delivery_id": delivery_id,
                    "status_code": status_code,
                    "error": error,
                    "duration_ms": duration_ms,
                    "outcome": outcome,
                    "next_attempt_at": next_attempt_at,
                }
            ]
        )

    def record_attempts(self, attempts: list[dict[str, Any]]) -> None:
        """``record_attempt`` for many attempts in one transaction (one commit, one fsync)."""
        with self._tx() as conn:
            for a in attempts:
                row = conn.execute(
                    "SELECT attempts FROM deliveries WHERE id = ?", (a["delivery_id"],)
                ).fetchone()
                attempt = int(row["attempts"]) + 1
                conn.execute(
                    "INSERT INTO delivery_attempts (delivery_id, attempt, at, status_code, error,"
                    " duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        a["delivery_id"],
                        attempt,
                        iso(),
                        a["status_code"],
                        a["error"],
                        round(a["duration_ms"], 1),
                    ),
                )
                conn.execute(
                    "UPDATE deliveries SET attempts = ?, status = ?, last_status = ?, last_error = ?,"
                    " next_attempt_at = coalesce(?, next_attempt_at), finished_at = ? WHERE id = ?",
                    (
                        attempt,
                        a["outcome"],
                        a["status_code"],
                        a["error"],
                        a["next_attempt_at"],
                        time.time() if a["outcome"] != "pending" else None,
                        a["delivery_id"],
                    ),
                )

    def alert_payload(self, alert_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return self._alert_view(row) if row else None
