"""The migrations for a ClickHouse cluster: ``ON CLUSTER``, Replicated engines, Distributed tables.

``AUDITSTREAM_CLICKHOUSE_CLUSTER=name`` makes ``auditstream migrate`` (and a service that
migrates on start) send every migration through :class:`ClusterDDL`. The migration files
stay single-node SQL; the cluster form is derived statement by statement, engine by engine,
so a new migration needs no cluster twin:

- Every DDL statement gets ``ON CLUSTER name`` after the object it names.
- A table whose engine is of the MergeTree family (``MergeTree``, ``ReplacingMergeTree(v)``,
  ``AggregatingMergeTree``, ...) gets the Replicated form of the same engine with the same
  arguments, its replica path keyed by ``{shard}`` and ``{replica}`` (server macros).
- A table with a ``tenant_id`` column is *sharded*: the replicated table is renamed
  ``<name>_local`` and a ``Distributed`` table takes its name, sharded by
  ``cityHash64(tenant_id)``. One tenant lives on one shard, so ``FINAL`` and every
  per-tenant ordering and de-duplication rule holds on that shard as on one node, and the
  application keeps reading and writing ``<name>``.
- A MergeTree table without ``tenant_id`` is replicated to every node (one replica path
  for the whole cluster): there is no key to shard it by, and such tables are small.
- Materialised views, ``ALTER`` of indexes, projections and settings, and mutations work
  on the ``_local`` tables (a view triggers on the rows its shard stores); column changes
  are applied to the local table and then to the Distributed one, which must match it.
- ``DROP TABLE`` of a sharded table drops both its Distributed table and its ``_local`` one.
- ``INSERT ... SELECT`` (backfills) runs as written, against the Distributed tables, so it
  reads every shard and writes each row to its tenant's shard.
- ``non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``:
  the intent, de-duplicating a retried insert block, is the same.

Migrations must name tables ``{database}.table`` (they all do): that is what is matched.
Writes through a Distributed table are only durable when the insert waits for the shards
(``distributed_foreground_insert = 1``, set in deploy/cluster/clickhouse/users.xml).
"""

from __future__ import annotations

__all__ = ["ClusterDDL", "cluster_statements"]

import re
from collections.abc import Iterable

from auditstream.store.client import validate_identifier
from auditstream.store.sqltext import QUOTES, end_of_quoted

_COMMENT = re.compile(r"\s*(--[^\n]*\n|/\*.*?\*/)", re.S)
_DDL_VERBS = ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "OPTIMIZE")
_CREATE_TABLE = re.compile(r"^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?", re.I)
_CREATE_VIEW = re.compile(r"^CREATE\s+MATERIALIZED\s+VIEW\b", re.I)
_CREATE_DATABASE = re.compile(r"^CREATE\s+DATABASE\s+(IF\s+NOT\s+EXISTS\s+)?`?\w+`?", re.I)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(\w*MergeTree)\b", re.I)
_DROP_TABLE = re.compile(r"^DROP\s+TABLE\b", re.I)
_COLUMN_CHANGE = re.compile(r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)
_TENANT_COLUMN = re.compile(r"[(,]\s*`?tenant_id`?\s+\w", re.I)


def _code_start(statement: str) -> int:
    """Index of the first character after the leading comments."""
    pos = 0
    while match := _COMMENT.match(statement, pos):
        pos = match.end()
    return len(statement) - len(statement[pos:].lstrip())


def _balanced_end(text: str, open_at: int) -> int:
    """Index just after the parenthesis that closes the one at ``open_at`` (quotes respected)."""
    depth, i, n = 0, open_at, len(text)
    while i < n:
        ch = text[i]
        if ch in QUOTES:
            i = end_of_quoted(text, i)
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses in engine clause")


class ClusterDDL:
    """Turns single-node migration statements into their cluster form, in migration order.

    Feed it *every* migration's statements in order (also those already applied, whose output
    is discarded): a later ``ALTER`` must know which tables an earlier one sharded.
    """

    def __init__(self, cluster: str, database: str) -> None:
        self.cluster = validate_identifier(cluster)
        self.database = validate_identifier(database)
        self.sharded: set[str] = set()  # tables split into <name>_local + Distributed <name>
        self._qualified = re.compile(rf"`?\b{re.escape(self.database)}`?\.`?(\w+)`?")

    # --- public --------------------------------------------------------------

    def transform(self, statement: str) -> list[str]:
        """The cluster statements (one or more) that stand for one single-node statement."""
        start = _code_start(statement)
        head, code = statement[:start], statement[start:]
        verb = code.split(None, 1)[0].upper() if code.strip() else ""
        if verb not in _DDL_VERBS:
            return [statement]  # INSERT ... SELECT and queries: through the Distributed tables
        if database := _CREATE_DATABASE.match(code):
            return [f"{head}{code[: database.end()]} ON CLUSTER {self.cluster}{code[database.end() :]}"]
        if _CREATE_TABLE.match(code) and _ENGINE.search(code):
            return [head + s for s in self._create_merge_tree(code)]
        if _CREATE_VIEW.match(code) and _ENGINE.search(code):
            # A view with its own inner table: that table holds its shard's rows.
            name = self._first_table(code)
            code = self._replicated_engine(code, f"/clickhouse/tables/{{shard}}/{self.database}/{name}")
        if verb == "ALTER":
            return [head + s for s in self._alter(code)]
        if _DROP_TABLE.match(code) and (name := self._first_table(code)) in self.sharded:
            # Both halves: the Distributed table first (nothing routes to the local one after).
            local = self._to_local(code)
            self.sharded.discard(name)
            return [head + self._on_cluster(code), head + self._on_cluster(local)]
        return [head + self._on_cluster(self._to_local(code))]

    # --- statements ------------------------------------------------------------

    def _create_merge_tree(self, code: str) -> list[str]:
        name = self._first_table(code)
        sharded = bool(_TENANT_COLUMN.search(code))
        local = f"{name}_local" if sharded else name
        if sharded:
            self.sharded.add(name)
        zk_path = (
            f"/clickhouse/tables/{{shard}}/{self.database}/{local}"
            if sharded
            else (f"/clickhouse/tables/all/{self.database}/{local}")
        )
        code = self._replicated_engine(code, zk_path)
        code = re.sub(r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", code)
        code = self._on_cluster(self._to_local(code))
        if not sharded:
            return [code]
        if_not_exists = (
            "IF NOT EXISTS " if re.match(r"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS", code, re.I) else ""
        )
        distributed = (
            f"CREATE TABLE {if_not_exists}{self.database}.{name} ON CLUSTER {self.cluster} "
            f"AS {self.database}.{local} "
            f"ENGINE = Distributed({self.cluster}, {self.database}, {local}, cityHash64(tenant_id))"
        )
        return [code, distributed]

    def _alter(self, code: str) -> list[str]:
        name = self._first_table(code)
        local_form = self._on_cluster(self._to_local(code))
        match = self._qualified.search(code)
        rest = code[match.end() :] if match else ""
        if name in self.sharded and _COLUMN_CHANGE.match(rest):
            # The Distributed table mirrors the local structure: change it second.
            return [local_form, self._on_cluster(code)]
        return [local_form]

    # --- pieces ------------------------------------------------------------------

    def _first_table(self, code: str) -> str:
        match = self._qualified.search(code)
        if match is None:
            raise ValueError(f"cluster DDL: statement names no {self.database}.table: {code[:80]!r}")
        return match.group(1)

    def _to_local(self, code: str) -> str:
        """Every reference to a sharded table points at its ``_local`` replica."""

        def local(match: re.Match[str]) -> str:
            table = match.group(1)
            return f"{self.database}.{table}_local" if table in self.sharded else match.group(0)

        return self._qualified.sub(local, code)

    def _on_cluster(self, code: str) -> str:
        match = self._qualified.search(code)
        if match is None:
            raise ValueError(f"cluster DDL: statement names no {self.database}.table: {code[:80]!r}")
        return f"{code[: match.end()]} ON CLUSTER {self.cluster}{code[match.end() :]}"

    @staticmethod
    def _replicated_engine(code: str, zk_path: str) -> str:
        match = _ENGINE.search(code)
        assert match is not None
        engine = match.group(1)
        if engine.lower().startswith("replicated"):
            return code  # already written for a cluster
        after = match.end()
        gap = len(code[after:]) - len(code[after:].lstrip())
        replica_args = f"'{zk_path}', '{{replica}}'"
        if code[after + gap : after + gap + 1] == "(":
            close = _balanced_end(code, after + gap)
            inner = code[after + gap + 1 : close - 1].strip()
            args = f"{replica_args}, {inner}" if inner else replica_args
            return f"{code[: match.start(1)]}Replicated{engine}({args}){code[close:]}"
        return f"{code[: match.start(1)]}Replicated{engine}({replica_args}){code[after:]}"


def cluster_statements(cluster: str, database: str, statements: Iterable[str]) -> list[str]:
    """All of ``statements`` (one migration or several, in order) in their cluster form."""
    ddl = ClusterDDL(cluster, database)
    return [out for statement in statements for out in ddl.transform(statement)]
