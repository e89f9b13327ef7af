"""ClickHouse access for the Merkle log: ``merkle_leaves``, ``checkpoints`` (0005), ``merkle_subtrees``.

The tables live next to the events in the store's database; this module opens its own
per-thread clients on the store's DSN (``ClientPool``), so the integrity code adds no
method to ``Store`` and needs no other database. Every statement is parameterised; the
database name is the store's validated identifier.
"""

from __future__ import annotations

__all__ = ["SUBTREE_MIN_LEVEL", "CheckpointRow", "LeafRow", "LeavesMissing", "Ledger"]

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from auditstream.events.stored import COLUMNS
from auditstream.store.client import ClientPool, insert_releasing, validate_identifier
from auditstream.store.errors import StoreError, classify
from auditstream.store.store import FEED_TABLE

_EVENT_COLUMNS = ", ".join(COLUMNS)

# merkle_subtrees holds the complete subtrees of this height and up (migration 0008):
# below it, proofs recompute from at most 256 leaves.
SUBTREE_MIN_LEVEL = 8
_LOOKUP_CHUNK = 500  # (level, node_index) keys per lookup query


class LeavesMissing(StoreError):
    """Leaf rows a checkpoint covers are not stored: the log was damaged (``verify`` says how)."""


@dataclass(frozen=True, slots=True)
class LeafRow:
    leaf_index: int
    leaf_hash: bytes
    event_id: UUID
    partition: int
    offset: int
    occurred_at: datetime
    sealed_at: datetime
    leaf_format: int = 1


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    tenant_id: str
    tree_size: int
    root_hash: bytes
    created_at: datetime
    note: str
    frontier: list[bytes]


def _checkpoint_row(r: tuple) -> CheckpointRow:
    raw = bytes.fromhex(r[5]) if r[5] else b""
    frontier = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    return CheckpointRow(r[0], int(r[1]), r[2], r[3], r[4], frontier)


class Ledger:
    """Reads and appends of the Merkle tables; thread-safe like ``Store``."""

    def __init__(self, dsn: str, database: str) -> None:
        self.database = validate_identifier(database)
        self._pool = ClientPool(dsn)

    def close(self) -> None:
        self._pool.close()

    def _query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        try:
            return self._pool.get().query(sql, parameters=params or {}).result_rows
        except StoreError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    def _insert(self, table: str, rows: Sequence[tuple], columns: Sequence[str], token: str) -> None:
        settings = {"async_insert": 0, "insert_deduplicate": 1, "insert_deduplication_token": token}
        try:
            insert_releasing(
                self._pool.get(),
                f"{self.database}.{table}",
                rows,
                column_names=list(columns),
                settings=settings,
            )
        except Exception as exc:
            raise classify(exc, encoding=True) from exc

    # --- leaves -------------------------------------------------------------------

    def tree_position(self, tenant_id: str) -> tuple[int, dict[int, int]]:
        """(tree size, per partition the highest sealed offset) as stored: the sealer's position."""
        rows = self._query(
            "SELECT kafka_partition, max(kafka_offset), max(leaf_index) + 1"  # noqa: S608
            f" FROM {self.database}.merkle_leaves WHERE tenant_id = {{t:String}} GROUP BY kafka_partition",
            {"t": tenant_id},
        )
        size = max((int(r[2]) for r in rows), default=0)
        return size, {int(r[0]): int(r[1]) for r in rows}

    def append_leaves(
        self, tenant_id: str, first_index: int, rows: Sequence[tuple], *, leaf_format: int = 1
    ) -> None:
        """Insert leaves from ``first_index`` on.

        Rows are (hash, event_id, partition, offset, occurred_at, sealed_at), all of
        leaf format ``leaf_format``.

        The dedup token names the index range, so a retried insert of the same range
        (after an ambiguous failure) is dropped by ClickHouse instead of stored twice.
        """
        if not rows:
            return
        full = [(tenant_id, first_index + i, *row, leaf_format) for i, row in enumerate(rows)]
        token = f"merkle:{tenant_id}:{first_index}:{first_index + len(rows)}"
        columns = (
            "tenant_id",
            "leaf_index",
            "leaf_hash",
            "event_id",
            "kafka_partition",
            "kafka_offset",
            "occurred_at",
            "sealed_at",
            "leaf_format",
        )
        self._insert("merkle_leaves", full, columns, token)

    def sealed_ids(self, tenant_id: str, event_ids: Sequence[UUID]) -> set[UUID]:
        if not event_ids:
            return set()
        rows = self._query(
            f"SELECT DISTINCT event_id FROM {self.database}.merkle_leaves"  # noqa: S608
            " WHERE tenant_id = {t:String} AND event_id IN {ids:Array(UUID)}",
            {"t": tenant_id, "ids": list(event_ids)},
        )
        return {r[0] for r in rows}

    def leaf_of(self, tenant_id: str, event_id: UUID) -> LeafRow | None:
        rows = self._query(
            "SELECT leaf_index, leaf_hash, event_id, kafka_partition, kafka_offset,"  # noqa: S608
            " occurred_at, sealed_at, leaf_format"
            f" FROM {self.database}.merkle_leaves WHERE tenant_id = {{t:String}} AND event_id = {{id:UUID}}"
            " ORDER BY leaf_index LIMIT 1",
            {"t": tenant_id, "id": event_id},
        )
        if not rows:
            return None
        r = rows[0]
        return LeafRow(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), r[5], r[6], int(r[7]))

    def iter_leaves(self, tenant_id: str, start: int, end: int, chunk: int = 100_000) -> Iterator[LeafRow]:
        """Stored leaf rows with ``start <= index < end`` in index order.

        Duplicate rows at an index are returned too: they are evidence, not versions.
        """
        for position in range(start, end, chunk):
            rows = self._query(
                "SELECT leaf_index, leaf_hash, event_id, kafka_partition, kafka_offset,"  # noqa: S608
                " occurred_at, sealed_at, leaf_format"
                f" FROM {self.database}.merkle_leaves WHERE tenant_id = {{t:String}}"
                " AND leaf_index >= {a:UInt64} AND leaf_index < {b:UInt64} ORDER BY leaf_index",
                {"t": tenant_id, "a": position, "b": min(position + chunk, end)},
            )
            for r in rows:
                yield LeafRow(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), r[5], r[6], int(r[7]))

    def leaves_matching(
        self, tenant_id: str, size: int, where: str, params: dict[str, Any]
    ) -> list[tuple[int, UUID]]:
        """(leaf index, event id) below ``size`` of the events ``audit_events`` has for ``where``.

        ``where``/``params`` come from ``store.filters.build_where`` (an export's filter).
        """
        rows = self._query(
            f"SELECT leaf_index, event_id FROM {self.database}.merkle_leaves"  # noqa: S608
            " WHERE tenant_id = {lm_tenant:String} AND leaf_index < {lm_size:UInt64}"
            f" AND event_id IN (SELECT event_id FROM {self.database}.audit_events WHERE {where})"
            " ORDER BY leaf_index",
            {**params, "lm_tenant": tenant_id, "lm_size": size},
        )
        return [(int(r[0]), r[1]) for r in rows]

    def leaf_hashes(self, tenant_id: str, size: int) -> list[bytes]:
        """The first ``size`` leaf hashes, one per index (what proofs are computed from)."""
        out: list[bytes] = []
        for leaf in self.iter_leaves(tenant_id, 0, size):
            if leaf.leaf_index == len(out):
                out.append(leaf.leaf_hash)
        if len(out) != size:
            raise LeavesMissing(
                f"the leaves of tenant {tenant_id} stop at {len(out)}, below tree size {size}"
            )
        return out

    def leaf_hash_range(self, tenant_id: str, start: int, end: int) -> list[bytes]:
        """The leaf hashes of ``start <= index < end``, one per index; LeavesMissing on a gap."""
        out: list[bytes] = []
        for leaf in self.iter_leaves(tenant_id, start, end):
            if leaf.leaf_index == start + len(out):
                out.append(leaf.leaf_hash)
        if len(out) != end - start:
            raise LeavesMissing(
                f"the leaves of tenant {tenant_id} stop at {start + len(out)}, below tree size {end}"
            )
        return out

    # --- subtree hashes (0008) -------------------------------------------------------

    def append_subtrees(self, tenant_id: str, nodes: Sequence[tuple[int, int, bytes]], token: str) -> None:
        """Store complete subtrees (level, node index, hash); ``token`` de-duplicates a retry."""
        if not nodes:
            return
        rows = [(tenant_id, level, index, h) for level, index, h in nodes]
        self._insert(
            "merkle_subtrees", rows, ("tenant_id", "level", "node_index", "hash"), f"subtrees:{token}"
        )

    def subtree_hashes(self, tenant_id: str, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored hash of each (level, node index) key that has exactly one stored value.

        A key with two different values (unmerged rows that disagree: damage) is left out,
        so the caller recomputes it from the leaves like a missing one.
        """
        found: dict[tuple[int, int], bytes] = {}
        conflicting: set[tuple[int, int]] = set()
        unique = sorted(set(keys))
        for i in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[i : i + _LOOKUP_CHUNK]
            rows = self._query(
                "SELECT level, node_index, hash"  # noqa: S608
                f" FROM {self.database}.merkle_subtrees WHERE tenant_id = {{t:String}}"
                " AND (level, node_index) IN {keys:Array(Tuple(UInt8, UInt64))}",
                {"t": tenant_id, "keys": chunk},
            )
            for level, index, h in rows:
                key = (int(level), int(index))
                if found.setdefault(key, h) != h:
                    conflicting.add(key)
        for key in conflicting:
            del found[key]
        return found

    def subtrees_complete(self, tenant_id: str, size: int) -> bool:
        """Whether every complete subtree of height >= SUBTREE_MIN_LEVEL below ``size`` is stored."""
        expected = {
            level: size >> level for level in range(SUBTREE_MIN_LEVEL, size.bit_length()) if size >> level
        }
        if not expected:
            return True
        rows = self._query(
            "SELECT level, uniqExact(node_index)"  # noqa: S608
            f" FROM {self.database}.merkle_subtrees WHERE tenant_id = {{t:String}}"
            " AND level >= {lo:UInt8} AND node_index < bitShiftRight({size:UInt64}, level)"
            " GROUP BY level",
            {"t": tenant_id, "lo": SUBTREE_MIN_LEVEL, "size": size},
        )
        stored = {int(r[0]): int(r[1]) for r in rows}
        return all(stored.get(level, 0) == count for level, count in expected.items())

    # --- checkpoints --------------------------------------------------------------

    def add_checkpoint(self, row: CheckpointRow) -> None:
        token = f"checkpoint:{row.tenant_id}:{row.tree_size}:{row.root_hash.hex()}"
        self._insert(
            "checkpoints",
            [
                (
                    row.tenant_id,
                    row.tree_size,
                    row.root_hash,
                    row.created_at,
                    row.note,
                    b"".join(row.frontier).hex(),
                )
            ],
            ("tenant_id", "tree_size", "root_hash", "created_at", "note", "frontier"),
            token,
        )

    def checkpoints(
        self, tenant_id: str, *, limit: int | None = None, latest_first: bool = False
    ) -> list[CheckpointRow]:
        # Sizes only grow, so the size orders the chain (a clock that jumps back cannot reorder it).
        order = "DESC" if latest_first else "ASC"
        sql = (
            "SELECT tenant_id, tree_size, root_hash, created_at, note, frontier"  # noqa: S608
            f" FROM {self.database}.checkpoints WHERE tenant_id = {{t:String}}"
            f" ORDER BY tree_size {order}, created_at {order}"
        )
        params: dict[str, Any] = {"t": tenant_id}
        if limit is not None:
            sql += " LIMIT {n:UInt32}"
            params["n"] = limit
        return [_checkpoint_row(r) for r in self._query(sql, params)]

    def checkpoint_at(self, tenant_id: str, tree_size: int) -> CheckpointRow | None:
        """The first stored checkpoint of ``tree_size`` (one keyed read, not the whole chain)."""
        rows = self._query(
            "SELECT tenant_id, tree_size, root_hash, created_at, note, frontier"  # noqa: S608
            f" FROM {self.database}.checkpoints WHERE tenant_id = {{t:String}} AND tree_size = {{s:UInt64}}"
            " ORDER BY created_at LIMIT 1",
            {"t": tenant_id, "s": tree_size},
        )
        return _checkpoint_row(rows[0]) if rows else None

    def tenants(self) -> list[str]:
        rows = self._query(f"SELECT DISTINCT tenant_id FROM {self.database}.checkpoints ORDER BY tenant_id")  # noqa: S608
        return [r[0] for r in rows]

    # --- events (verification reads them as stored, bypassing the sealer's feed path) ---

    def iter_events(self, tenant_id: str, table: str = "audit_events") -> Iterator[dict[str, Any]]:
        """Every stored row of the tenant in ``table`` (audit_events or the feed's copy), FINAL, streamed."""
        if table not in ("audit_events", FEED_TABLE):
            raise ValueError(f"table must be audit_events or {FEED_TABLE}")
        sql = f"SELECT {_EVENT_COLUMNS} FROM {self.database}.{table} FINAL WHERE tenant_id = {{t:String}}"  # noqa: S608
        try:
            client = self._pool.get()
            with client.query_row_block_stream(sql, parameters={"t": tenant_id}) as stream:
                names = stream.source.column_names
                for block in stream:
                    for row in block:
                        yield dict(zip(names, row, strict=True))
        except StoreError:
            raise
        except Exception as exc:
            raise classify(exc) from exc
