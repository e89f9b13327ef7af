"""API keys: hashed, tenant-scoped, role-bearing, stored in SQLite.

A key is shown once as ``ask_<key_id>_<secret>``. Only ``sha256(secret)`` is stored,
so a copy of the key file cannot be replayed against the API. ``key_id`` is public
(it appears in ``keys list`` and logs) and is what ``revoke`` takes.

SQLite in WAL mode lets ``auditstream keys create`` (another process) write while
the API server reads; each operation opens its own short connection, which keeps
the class safe to call from FastAPI's thread pool without sharing a connection.

This module is imported by the CLI, so it depends on the standard library (and sqlite_file) only.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from auditstream.api import sqlite_file

__all__ = ["ApiKey", "CachedVerifier", "KeyStore", "NewKey", "Role", "parse_token"]

KEY_PREFIX = "ask"
# key_id is hex so it can never contain the "_" separator; the secret (token_urlsafe)
# may, which is why parsing splits at most twice.
_TOKEN_RE = re.compile(r"^ask_([0-9a-f]{16})_([A-Za-z0-9_-]{20,128})$")
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Role(enum.StrEnum):
    """What a key may do. Not a ladder: ``ingest`` shares no right with the reading roles.

    ============  =========================================================================
    role          rights (``grants``)
    ============  =========================================================================
    ``reader``    read: query, stats, live
    ``ingest``    HTTP ingest (``POST /v1/events``) and nothing else
    ``exporter``  read + export (``/v1/export``, ``/v1/exports``) + the SIEM feed
    ``admin``     exporter + administration (keys, rules, streams) of its own tenant
    ``operator``  admin, on any tenant it names with ``tenant=`` (explicit, never implied)
    ============  =========================================================================

    A route names the right it needs (``Role.READER``, ``Role.EXPORTER``, ...) and
    ``allows`` says whether a key's role includes it. Writing to the log is kept apart
    from reading it on purpose: a service that emits events has no reason to read them,
    and a reader must not be able to add (or try to overwrite) records.
    """

    READER = "reader"
    INGEST = "ingest"
    EXPORTER = "exporter"
    ADMIN = "admin"
    OPERATOR = "operator"

    @property
    def grants(self) -> frozenset[Role]:
        """Every right this role includes (itself among them)."""
        return _GRANTS[self]

    def allows(self, required: Role) -> bool:
        return required in _GRANTS[self]

    @property
    def any_tenant(self) -> bool:
        """Whether the role may choose the tenant it acts on (``tenant=``)."""
        return self is Role.OPERATOR


_READ = frozenset({Role.READER})
_EXPORT = _READ | {Role.EXPORTER}
_ADMIN = _EXPORT | {Role.ADMIN}
_GRANTS: dict[Role, frozenset[Role]] = {
    Role.READER: _READ,
    Role.INGEST: frozenset({Role.INGEST}),
    Role.EXPORTER: _EXPORT,
    Role.ADMIN: _ADMIN,
    Role.OPERATOR: _ADMIN | {Role.OPERATOR},
}


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    tenant_id: str
    role: Role
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: ``token`` is the only time the plaintext exists."""

    key: ApiKey
    token: str


def parse_token(token: str) -> tuple[str, str] | None:
    """Split ``ask_<key_id>_<secret>`` into (key_id, secret), or None if malformed."""
    m = _TOKEN_RE.match(token)
    return (m.group(1), m.group(2)) if m else None


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


_ROLES_SQL = ", ".join(f"'{r.value}'" for r in Role)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ({roles})),
    name        TEXT NOT NULL DEFAULT '',
    secret_hash TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
)
""".replace("{roles}", _ROLES_SQL)


class KeyStore:
    """Create, list, verify and revoke API keys in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        sqlite_file.create(self.path, _SCHEMA)
        self._widen_role_check()

    def _widen_role_check(self) -> None:
        """Rebuild a key table created before the ``ingest``/``operator`` roles existed.

        SQLite cannot alter a CHECK constraint: the table is copied into one with the
        current constraint, in one transaction, keys and hashes unchanged.
        """
        with self._connect() as conn:
            if self._role_check_current(conn):
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._role_check_current(conn):  # another process did it meanwhile
                    conn.execute("ROLLBACK")
                    return
                conn.execute("ALTER TABLE api_keys RENAME TO api_keys_old")
                conn.execute(_SCHEMA.replace("IF NOT EXISTS ", ""))
                conn.execute("INSERT INTO api_keys SELECT * FROM api_keys_old")
                conn.execute("DROP TABLE api_keys_old")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _role_check_current(conn: sqlite3.Connection) -> bool:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='api_keys'").fetchone()
        return row is None or all(f"'{r.value}'" in row["sql"] for r in Role)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_file.connect(self.path)

    @staticmethod
    def _row_to_key(row: sqlite3.Row) -> ApiKey:
        return ApiKey(
            key_id=row["key_id"],
            tenant_id=row["tenant_id"],
            role=Role(row["role"]),
            name=row["name"],
            created_at=datetime.fromisoformat(row["created_at"]),
            revoked_at=datetime.fromisoformat(row["revoked_at"]) if row["revoked_at"] else None,
        )

    def create(self, tenant_id: str, role: Role | str, name: str = "") -> NewKey:
        if not _TENANT_RE.match(tenant_id):
            raise ValueError(f"invalid tenant_id {tenant_id!r}")
        role = Role(role)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        created = datetime.now(UTC)
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO api_keys (key_id, tenant_id, role, name, secret_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, tenant_id, role.value, name, _hash_secret(secret), _ts(created)),
            )
        key = ApiKey(key_id, tenant_id, role, name, datetime.fromisoformat(_ts(created)))
        return NewKey(key=key, token=f"{KEY_PREFIX}_{key_id}_{secret}")

    def get(self, key_id: str) -> ApiKey | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return self._row_to_key(row) if row else None

    def list_keys(self, *, tenant_id: str | None = None, include_revoked: bool = True) -> list[ApiKey]:
        sql = "SELECT * FROM api_keys WHERE 1=1"
        args: list[str] = []
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            args.append(tenant_id)
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY created_at, key_id", args).fetchall()
        return [self._row_to_key(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Mark a key revoked. False if it does not exist; revoking twice keeps the first time."""
        with self._connect() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?",
                (_ts(datetime.now(UTC)), key_id),
            )
            return cur.rowcount > 0

    def verify(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (malformed, unknown, wrong secret, revoked)."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(row["secret_hash"], _hash_secret(secret)):
            return None
        return self._row_to_key(row)


class CachedVerifier:
    """``KeyStore.verify`` behind a short TTL cache.

    Every API request is authenticated; a SQLite round trip each time is cheap but
    not free, and the cache also absorbs bursts. The TTL bounds how long a revoked
    key keeps working (and how long a just-created key may still be refused, since
    misses are cached too so that garbage tokens cannot hammer the file). Entries
    are keyed by a hash of the token so plaintext keys do not linger in memory.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        ttl_seconds: float = 2.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ttl_seconds <= 5:
            raise ValueError("ttl_seconds must be within 0..5 so revocation takes effect quickly")
        self.store = store
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> ApiKey | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = self.store.verify(token)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                # Crude but bounded: dropping everything costs one lookup per live key.
                self._cache.clear()
            self._cache[digest] = (now + self.ttl, key)
        return key

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
