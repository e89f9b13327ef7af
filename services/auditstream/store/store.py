"""The ClickHouse store: schema on open, batch inserts, de-duplicated keyset reads.

Reads de-duplicate with ``FINAL``: the pipeline is at-least-once, so until
ReplacingMergeTree has merged, an event may exist in several parts. ``FINAL`` collapses
rows with the same sorting key at read time. Measured against ``LIMIT 1 BY event_id``
on one million rows with 5% duplicates in chDB (tests/store/test_bench_dedup.py, two
runs), it was as fast or faster for 100-row pages (one day: 10-12 ms vs 10-19 ms; a
whole tenant: 18-38 ms vs 23-54 ms) and for counts over wide ranges (11-19 ms vs
22-35 ms with uniqExact), and it de-duplicates inside aggregates too, which LIMIT BY
cannot.
"""

from __future__ import annotations

__all__ = ["FEED_TABLE", "GROUP_BY", "FeedPage", "FeedRow", "Store"]

import heapq
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from clickhouse_connect.driver.client import Client

from auditstream.config import Settings
from auditstream.events.stored import COLUMNS
from auditstream.resources import Resource, schemas_root
from auditstream.store.client import ClientPool, insert_releasing, known_settings, validate_identifier
from auditstream.store.errors import StoreError, StoreRejected, classify
from auditstream.store.feedspan import FeedSpan, window_end
from auditstream.store.filters import DT64, EventFilter, build_where
from auditstream.store.migrations import apply_migrations
from auditstream.store.native import EncodedRows, encode_native

log = logging.getLogger(__name__)

Order = Literal["asc", "desc"]

_SELECT_COLUMNS = ", ".join(COLUMNS)

# /v1/stats groupings -> the SQL expression of the group key (fixed text, never user input).
GROUP_BY: dict[str, str] = {
    "action": "action",
    "actor": "actor_id",
    "outcome": "outcome",
    "category": "category",
    "severity": "severity",
    "hour": "toStartOfHour(occurred_at)",
    "day": "toStartOfDay(occurred_at)",
}

MAX_FEED_PARTITIONS = 1024
# A feed page of at most this many rows over all partitions read (limit x partitions)
# takes its whole rows in one query; a larger one reads positions, then rows.
FEED_ONE_READ_ROWS = 3000
# The feed's copy of the events in ingest order (migrations 0002, 0010).
FEED_TABLE = "audit_feed_v2"
# The session's temporary table of the ids a first-write-wins lookup asks for.
_PROBE = "auditstream_identity_probe"


@dataclass(slots=True)
class FeedRow:
    """One position of the feed: where (partition, offset) and when it was received."""

    partition: int
    offset: int
    received_at: datetime


@dataclass(slots=True)
class FeedPage:
    """Rows in ingest order and the positions after them (partition -> last offset).

    ``rows`` carry every column plus ``_matched`` (whether the row passes the page's
    filter; always true without one). ``positions`` include the cursor's own
    partitions unchanged; ``more`` says whether the index had rows beyond this page.
    ``watermark`` is the tenant's highest stored offset per partition that the page
    was read against (``feed_watermark``), so a caller need not ask for it again.
    """

    rows: list[dict[str, Any]]
    positions: dict[int, int]
    more: bool
    watermark: dict[int, int] = field(default_factory=dict)


def _check_width(rows: Sequence[tuple]) -> None:
    width = len(COLUMNS)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise StoreRejected(f"row {index} has {len(row)} values, expected {width}")


# What every events insert asks of the engine beyond its defaults: work it would otherwise
# do twice (bench/RESULTS.md, "Issue 12, stop 26").
# - optimize_on_insert = 0: a ReplacingMergeTree otherwise applies its merge to each inserted
#   block alone, to collapse repeats of a sorting key inside it (audit_events, and through
#   their views audit_feed_v2 and audit_ids). The processor's batches hold no repeats (the
#   write step settles them first); repeats another writer sends stay in the part until a
#   merge, as repeats across parts do, and every read already de-duplicates those (FINAL).
# - the n-gram index of search_text is built by merges, not by inserts: it is the costliest
#   index to build, and the first merge to take the part in builds it again anyway. An index
#   only skips granules, so a part no merge has reached yet (at most a few recent batches) is
#   searched by reading its search_text: slower for that part, never another answer. The
#   bloom filters stay on insert: they are cheap, and fresh rows are looked up by id.
# Only those the engine knows are sent (known_settings): ClickHouse before 25.10 lacks
# exclude_materialize_skip_indexes_on_insert and would refuse every insert naming it.
_ENGINE_INSERT_SETTINGS: dict[str, Any] = {
    "optimize_on_insert": 0,
    "exclude_materialize_skip_indexes_on_insert": "idx_search_text",
}


def _insert_settings(dedup_token: str | None, engine: dict[str, Any]) -> dict[str, Any]:
    # async_insert=0: the insert returns once the rows are in a part (the processor commits after it).
    settings: dict[str, Any] = {"async_insert": 0, **engine}
    if dedup_token is not None:
        settings["insert_deduplicate"] = 1
        settings["insert_deduplication_token"] = dedup_token
    return settings


class Store:
    """Access to ``{database}.audit_events`` for the processor and the API.

    Thread-safe: every thread gets its own clickhouse-connect client (see ``client.py``).
    All failures surface as ``StoreError`` subclasses (``errors.py``).
    """

    def __init__(
        self,
        dsn: str,
        database: str,
        retention_days: int = 365,
        *,
        schemas_dir: Resource | None = None,
        cluster: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.database = validate_identifier(database)
        self.retention_days = retention_days
        # Default: AUDITSTREAM_SCHEMAS_DIR when set, else the migrations inside the package.
        self.schemas_dir = schemas_dir if schemas_dir is not None else schemas_root()
        # A service that migrates on start must use the cluster form too (never local tables).
        self.cluster = cluster if cluster is not None else Settings().clickhouse_cluster
        self._table = f"{self.database}.audit_events"
        self._pool: ClientPool | None = None
        self._probe_lock = threading.Lock()
        # The events table's column types for ``encode_rows``, read once (DESCRIBE).
        self._insert_types: list[Any] | None = None
        # _ENGINE_INSERT_SETTINGS as far as the engine knows them, read on open.
        self._engine_insert_settings: dict[str, Any] = {}
        self._types_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------

    def open(self) -> list[str]:
        """Connect, create the database if missing, apply pending migrations.

        Returns the labels of the migrations applied now (empty when up to date).
        """
        if self._pool is None:
            self._pool = ClientPool(self.dsn)
        # Migrations may change the events table: its column types are read again when needed.
        self._insert_types = None
        try:
            client = self._pool.get()
            self._engine_insert_settings = known_settings(client, _ENGINE_INSERT_SETTINGS)
            if left_out := sorted(set(_ENGINE_INSERT_SETTINGS) - set(self._engine_insert_settings)):
                # Not an error: inserts then do that work themselves, as before (slower).
                log.info("engine lacks insert settings; inserts do that work", extra={"settings": left_out})
        except Exception as exc:
            raise classify(exc) from exc
        return apply_migrations(
            client, self.database, self.schemas_dir, self.retention_days, cluster=self.cluster
        )

    def close(self) -> None:
        """Close every per-thread client; ``open()`` may be called again afterwards."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ping(self) -> bool:
        """True when the engine answers a trivial query (readiness probe)."""
        try:
            return self._client().command("SELECT 1") == 1
        except Exception:
            return False

    def _client(self) -> Client:
        if self._pool is None:
            raise StoreError("store is not open")
        try:
            return self._pool.get()
        except Exception as exc:
            raise classify(exc) from exc

    # --- writes ----------------------------------------------------------------

    def insert_rows(self, rows: Sequence[tuple], *, dedup_token: str | None = None) -> None:
        """Insert rows (tuples in ``COLUMNS`` order, or ``encode_rows``'s result) synchronously.

        ``async_insert=0`` makes the call return only once the rows are in a part, so the
        processor may commit its Kafka offsets afterwards. With ``dedup_token`` a repeated
        insert of the same batch (a retry after an ambiguous failure) is dropped by the
        table's deduplication window. Raises ``StoreRejected`` for rows the table cannot
        take (retrying will not help) and ``StoreUnavailable`` for everything else.
        """
        if not rows:
            return
        _check_width(rows)
        settings = _insert_settings(dedup_token, self._engine_insert_settings)
        client = self._client()
        try:
            if isinstance(rows, EncodedRows) and rows.table == self._table and rows.columns == COLUMNS:
                # Encoded ahead (encode_rows): the engine gets the bytes as they are.
                client.raw_insert(
                    rows.table, rows.columns, insert_block=rows.body, settings=settings, fmt="Native"
                )
            else:
                insert_releasing(client, self._table, rows, column_names=COLUMNS, settings=settings)
        except Exception as exc:
            raise classify(exc, encoding=True) from exc

    def encode_rows(self, rows: Sequence[tuple]) -> EncodedRows:
        """``rows`` (tuples in ``COLUMNS`` order) with the body of their insert, for ``insert_rows``.

        Encodes on the calling thread what ``insert_rows`` would encode inside the
        insert (store/native.py says why that pays). Raises ``StoreRejected`` for a
        value a column cannot take, as ``insert_rows`` would for those rows.
        """
        _check_width(rows)
        client = self._client()
        try:
            types = self._column_types(client)
            return encode_native(self._table, COLUMNS, types, rows, server_tz=client.server_tz)
        except Exception as exc:
            raise classify(exc, encoding=True) from exc

    def adopt_encoded(
        self, rows: Sequence[tuple], body: bytes, columns: Sequence[tuple[str, str]]
    ) -> EncodedRows | None:
        """``rows`` with ``body``, the Native body written for them elsewhere, for ``insert_rows``.

        ``columns`` are the (name, type) pairs the body was written for (the processor's
        native fast path, events/fastpath.py). ``None`` unless they are exactly the table's
        columns and insert types: after a migration that changes a column the rows are
        encoded here again, never written as the old layout. Raises ``StoreUnavailable``
        when the types cannot be read now.
        """
        _check_width(rows)
        try:
            types = self._column_types(self._client())
        except Exception as exc:
            raise classify(exc) from exc
        if list(columns) != [(c, t.insert_name) for c, t in zip(COLUMNS, types, strict=True)]:
            return None
        return EncodedRows(self._table, COLUMNS, tuple(rows), body)

    def _column_types(self, client: Any) -> list[Any]:
        with self._types_lock:
            if self._insert_types is None:
                # No rows: only the table's column types are looked up.
                self._insert_types = list(client.create_insert_context(self._table, COLUMNS).column_types)
            return self._insert_types

    # --- reads -----------------------------------------------------------------

    def _select(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            result = self._client().query(sql, parameters=params)
        except StoreError:
            raise
        except Exception as exc:
            raise classify(exc, query=True) from exc
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def query_events(
        self,
        f: EventFilter,
        *,
        order: Order = "desc",
        limit: int = 100,
        after: tuple[datetime, UUID] | None = None,
    ) -> list[dict[str, Any]]:
        """One page of events matching ``f``, ordered by (occurred_at, event_id).

        ``after`` is the (occurred_at, event_id) of the last row of the previous page;
        the next page starts strictly after it in the chosen order, so pages neither skip
        nor repeat rows even when many events share a timestamp. No event_id is returned
        twice, whether or not background merges have run.
        """
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where, params = build_where(f)
        if after is not None:
            after_ts, after_id = after
            cmp = "<" if order == "desc" else ">"
            # The first clause is a plain range on the sorting key (index pruning); the
            # second breaks ties on event_id within the boundary millisecond.
            where += (
                f" AND occurred_at {cmp}= {{k_ts:{DT64}}}"
                f" AND (occurred_at {cmp} {{k_ts:{DT64}}} OR event_id {cmp} {{k_id:UUID}})"
            )
            params["k_ts"] = after_ts
            params["k_id"] = after_id if isinstance(after_id, UUID) else UUID(str(after_id))
        direction = "DESC" if order == "desc" else "ASC"
        params["k_limit"] = int(limit)
        sql = (
            f"SELECT {_SELECT_COLUMNS} FROM {self._table} FINAL WHERE {where}"  # noqa: S608 - values are parameters
            f" ORDER BY occurred_at {direction}, event_id {direction} LIMIT {{k_limit:UInt32}}"
        )
        return self._select(sql, params)

    def get_event(self, tenant_id: str, event_id: UUID | str) -> dict[str, Any] | None:
        """The event with this id in this tenant, or None (also for a malformed id)."""
        if not isinstance(event_id, UUID):
            try:
                event_id = UUID(str(event_id))
            except ValueError:
                return None
        sql = (
            f"SELECT {_SELECT_COLUMNS} FROM {self._table}"  # noqa: S608 - values are parameters
            " WHERE tenant_id = {t:String} AND event_id = {id:UUID} LIMIT 1"
        )
        rows = self._select(sql, {"t": tenant_id, "id": event_id})
        return rows[0] if rows else None

    def iter_events(
        self, f: EventFilter, *, order: Order = "desc", chunk: int = 10000
    ) -> Iterator[list[dict[str, Any]]]:
        """Every matching event, as lists of at most ``chunk`` rows.

        Each chunk is one keyset query, so memory is bounded by ``chunk`` whatever the
        total, and no query or engine lock is held between chunks (the consumer of an
        export may be slow).
        """
        after: tuple[datetime, UUID] | None = None
        while True:
            rows = self.query_events(f, order=order, limit=chunk, after=after)
            if not rows:
                return
            yield rows
            if len(rows) < chunk:
                return
            last = rows[-1]
            after = (last["occurred_at"], last["event_id"])

    def count_events(self, f: EventFilter) -> int:
        """How many distinct events match ``f``."""
        where, params = build_where(f)
        sql = f"SELECT count() AS n FROM {self._table} FINAL WHERE {where}"  # noqa: S608 - values are parameters
        return int(self._select(sql, params)[0]["n"])

    def count_grouped(
        self, f: EventFilter, group_by: str, *, limit: int = 100
    ) -> tuple[list[tuple[Any, int]], int, int]:
        """Distinct events per group: ``(groups, total, group_count)``.

        ``groups`` are (key, count) pairs, the largest first (ties by key), at most
        ``limit`` of them; for ``hour``/``day`` the buckets come in time order instead.
        ``total`` counts every matching event and ``group_count`` every group, including
        those beyond ``limit``. FINAL de-duplicates before counting.
        """
        if group_by not in GROUP_BY:
            raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
        where, params = build_where(f)
        params["k_limit"] = int(limit)
        order = "key ASC" if group_by in ("hour", "day") else "n DESC, key ASC"
        sql = (
            f"SELECT {GROUP_BY[group_by]} AS key, count() AS n,"  # noqa: S608 - values are parameters
            " sum(count()) OVER () AS total, count() OVER () AS groups"
            f" FROM {self._table} FINAL WHERE {where} GROUP BY key ORDER BY {order} LIMIT {{k_limit:UInt32}}"
        )
        rows = self._select(sql, params)
        if not rows:
            return [], 0, 0
        return [(r["key"], int(r["n"])) for r in rows], int(rows[0]["total"]), int(rows[0]["groups"])

    def suggest_actors(self, f: EventFilter, prefix: str, *, limit: int = 10) -> list[dict[str, Any]]:
        """Actors of events matching ``f`` whose id, name or email starts with ``prefix``.

        Case-insensitive; the most active first, at most ``limit``. Each row is
        ``{actor_id, last_name, last_email, n}`` (the latest name and email seen).
        The caller bounds ``f``'s time window, so a type-ahead never scans all history.
        """
        where, params = build_where(f)
        params["k_prefix"] = prefix.lower()
        params["k_limit"] = int(limit)
        sql = (
            "SELECT actor_id, argMax(actor_name, occurred_at) AS last_name,"  # noqa: S608 - values are parameters
            " argMax(actor_email, occurred_at) AS last_email, count() AS n"
            f" FROM {self._table} WHERE {where}"
            " AND (startsWith(lower(actor_id), {k_prefix:String})"
            " OR startsWith(lower(actor_name), {k_prefix:String})"
            " OR startsWith(lower(actor_email), {k_prefix:String}))"
            " GROUP BY actor_id ORDER BY n DESC, actor_id ASC LIMIT {k_limit:UInt32}"
        )
        return self._select(sql, params)

    # --- the SIEM feed: ingest order --------------------------------------------

    def feed_page(
        self,
        tenant_id: str,
        after: dict[int, int],
        *,
        limit: int = 1000,
        f: EventFilter | None = None,
    ) -> FeedPage:
        """The next ``limit`` events of ``tenant_id`` after the per-partition ``after`` offsets.

        Gap-free: within each Kafka partition a page is a prefix, in offset order, of
        what ``audit_feed_v2`` holds after the cursor, and that table becomes visible one
        whole processor batch at a time (migrations 0002, 0010), so following
        ``positions`` never steps over an event. Partitions are interleaved by
        ``received_at`` (a k-way merge of per-partition prefixes) so a busy partition
        cannot starve the others.

        First the tenant's spans (``feed_spans``: a few rows of the ``feed_heads``
        projection, migrations 0003, 0009, 0010), which name the partitions and bound the
        page: a partition whose head is not past the cursor is not read at all, and a
        poll with nothing new costs this one query. The projection lives in the same
        parts as the rows, so a head is never ahead of the rows it counts. Then ranges
        of the feed table's primary index (tenant, partition, offset): the next positions
        of every partition in a window sized from the span (``feedspan.py``; read on to
        the head when it comes back short), with the whole rows for a small page, or
        followed by a read of the chosen prefixes' rows for a large one. No FINAL (it
        would cost more than the read): a copy left by a re-delivered batch has the
        same position, and positions are de-duplicated here.

        ``f`` (optional, its tenant must be ``tenant_id``) does not change what the page
        walks over: each returned row carries ``_matched`` so a caller may hide the rest
        while still advancing past them (live mode).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if len(after) > MAX_FEED_PARTITIONS:
            raise ValueError("too many partitions in the cursor")
        spans = self.feed_spans(tenant_id)
        heads = {p: span.head for p, span in spans.items()}
        partitions = sorted(p for p, head in heads.items() if head > after.get(p, -1))
        if not partitions:
            return FeedPage([], dict(after), more=False, watermark=heads)
        # A small page reads whole rows in the prefix query itself (one read instead of
        # two): ClickHouse's lazy materialisation reads the other columns only for the
        # rows the per-partition ORDER BY ... LIMIT keeps. A large one reads positions
        # first, so at most ``limit`` whole rows are read, not ``limit`` per partition.
        whole = int(limit) * len(partitions) <= FEED_ONE_READ_ROWS
        want = int(limit) + 1
        params: dict[str, Any] = {"t": tenant_id, "n": want}
        columns = "kafka_partition, kafka_offset, received_at"
        if whole:
            matched, mparams = self._feed_matched(tenant_id, f)
            params.update(mparams)
            columns = f"{_SELECT_COLUMNS}, ({matched}) AS _matched"
        # Each partition is read in a window of the offsets likely to hold ``want`` rows
        # (feedspan.py), so only the parts holding those offsets are opened. A window that
        # returns fewer rows than asked without reaching the head is read on to the head:
        # together the two reads are the prefix a read up to the head would have given.
        windows: dict[int, tuple[int, int]] = {}
        for partition in partitions:
            start = after.get(partition, -1) + 1
            windows[partition] = (start, window_end(spans[partition], start, want))
        fetched = self._feed_prefixes(windows, columns, params)
        rest = {
            p: (end + 1, heads[p])
            for p, (_, end) in windows.items()
            if end < heads[p] and len(fetched.get(p, ())) < want
        }
        if rest:
            for p, more_rows in self._feed_prefixes(rest, columns, params).items():
                taken = fetched.setdefault(p, [])
                taken.extend(more_rows[: want - len(taken)])
        per_partition: dict[int, list[FeedRow]] = {}
        read: dict[tuple[int, int], dict[str, Any]] = {}
        for partition in sorted(fetched):
            rows = per_partition.setdefault(partition, [])
            for r in fetched[partition]:
                offset = int(r["kafka_offset"])
                if not rows or rows[-1].offset != offset:  # a not-yet-merged copy: same position
                    rows.append(FeedRow(partition, offset, r["received_at"]))
                    if whole:
                        r["_matched"] = bool(r["_matched"])
                        read[(partition, offset)] = r
        merged = list(
            heapq.merge(*per_partition.values(), key=lambda r: (r.received_at, r.partition, r.offset))
        )
        merged = merged[:limit]
        positions = dict(after)
        for position in merged:
            positions[position.partition] = position.offset
        # More is stored iff a partition stops short of its head. (Counting rows would
        # miss it when not-yet-merged copies filled the LIMIT of a partition's read.)
        more = any(positions.get(p, -1) < head for p, head in heads.items())
        if not merged:
            return FeedPage([], positions, more=more, watermark=heads)
        if not whole:
            read = self._feed_rows(tenant_id, after, positions, f)
        out = []
        for position in merged:
            row = read.get((position.partition, position.offset))
            if row is not None:  # None only if retention dropped it between the two reads
                out.append(row)
        return FeedPage(out, positions, more=more, watermark=heads)

    def _feed_prefixes(
        self, windows: dict[int, tuple[int, int]], columns: str, params: dict[str, Any]
    ) -> dict[int, list[dict[str, Any]]]:
        """Per partition, the first ``params["n"]`` rows in its window [first, last], in offset order.

        One SELECT over every window (ranges of the primary index, OR-ed) with ``LIMIT n BY
        kafka_partition``; ``params`` holds the tenant (``t``), the limit (``n``) and whatever
        ``columns`` refers to. Not a UNION ALL of one read per partition: the engine's work
        before it reads a row (analysis, the pipeline) is most of a window's cost and is paid
        per SELECT (bench/RESULTS.md, stop 25: 3 partitions, 24.9 -> 14.4 ms). A window holds
        about ``WINDOW_SLACK`` times ``n`` rows, so reading it whole before the limit costs
        little.
        """
        params = dict(params)
        ranges = []
        for i, (partition, (first, last)) in enumerate(sorted(windows.items())):
            # UInt64 bounds so both are primary-key conditions.
            params[f"p{i}"], params[f"o{i}"], params[f"h{i}"] = partition, first, last
            ranges.append(
                f"(kafka_partition = {{p{i}:UInt16}}"
                f" AND kafka_offset >= {{o{i}:UInt64}} AND kafka_offset <= {{h{i}:UInt64}})"
            )
        sql = (
            f"SELECT {columns} FROM {self.database}.{FEED_TABLE}"  # noqa: S608
            f" WHERE tenant_id = {{t:String}} AND ({' OR '.join(ranges)})"
            " ORDER BY kafka_partition, kafka_offset LIMIT {n:UInt32} BY kafka_partition"
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for r in self._select(sql, params):
            out.setdefault(int(r["kafka_partition"]), []).append(r)
        return out

    @staticmethod
    def _feed_matched(tenant_id: str, f: EventFilter | None) -> tuple[str, dict[str, Any]]:
        """The SQL of a feed row's ``_matched`` flag for ``f`` (``1`` without one), and its parameters."""
        if f is None:
            return "1", {}
        if f.tenant_id != tenant_id:
            raise ValueError("the filter's tenant must be the feed's tenant")
        return build_where(f)

    def _feed_rows(
        self, tenant_id: str, after: dict[int, int], upto: dict[int, int], f: EventFilter | None
    ) -> dict[tuple[int, int], dict[str, Any]]:
        """The rows in (after[p], upto[p]] of each partition, keyed by position."""
        matched, fparams = self._feed_matched(tenant_id, f)
        params: dict[str, Any] = {"t": tenant_id, **fparams}
        ranges = []
        for i, (partition, last) in enumerate(upto.items()):
            first = after.get(partition, -1)
            if last <= first:
                continue
            params[f"rp{i}"], params[f"ra{i}"], params[f"rb{i}"] = partition, first, last
            ranges.append(
                f"(kafka_partition = {{rp{i}:UInt16}} AND kafka_offset > {{ra{i}:Int64}}"
                f" AND kafka_offset <= {{rb{i}:Int64}})"
            )
        sql = (
            f"SELECT {_SELECT_COLUMNS}, ({matched}) AS _matched"  # noqa: S608
            f" FROM {self.database}.{FEED_TABLE} WHERE tenant_id = {{t:String}} AND ({' OR '.join(ranges)})"
        )
        out: dict[tuple[int, int], dict[str, Any]] = {}
        for row in self._select(sql, params):
            row["_matched"] = bool(row["_matched"])
            out[(int(row["kafka_partition"]), int(row["kafka_offset"]))] = row
        return out

    def feed_watermark(self, tenant_id: str) -> dict[int, int]:
        """Per Kafka partition, the highest offset stored for this tenant.

        Answered by the feed table's ``feed_heads`` projection (migrations 0003, 0010): ClickHouse
        picks it for exactly this shape (filter on tenant_id, GROUP BY kafka_partition,
        max(kafka_offset)) and reads a few rows per part instead of the tenant's range.
        Keep the shape (tests/store/test_feed.py checks the plan).
        """
        sql = (
            "SELECT kafka_partition, max(kafka_offset) AS o"  # noqa: S608
            f" FROM {self.database}.{FEED_TABLE} WHERE tenant_id = {{t:String}} GROUP BY kafka_partition"
        )
        return {int(r["kafka_partition"]): int(r["o"]) for r in self._select(sql, {"t": tenant_id})}

    def feed_spans(self, tenant_id: str) -> dict[int, FeedSpan]:
        """Per Kafka partition, the tenant's first and highest stored offset and its row count.

        The same ``feed_heads`` projection as ``feed_watermark`` (migration 0009 added the
        first offset and the count); ``feed_page`` sizes its reads with it.
        """
        sql = (
            "SELECT kafka_partition, min(kafka_offset) AS a, max(kafka_offset) AS o, count() AS n"  # noqa: S608
            f" FROM {self.database}.{FEED_TABLE} WHERE tenant_id = {{t:String}} GROUP BY kafka_partition"
        )
        return {
            int(r["kafka_partition"]): FeedSpan(int(r["a"]), int(r["o"]), int(r["n"]))
            for r in self._select(sql, {"t": tenant_id})
        }

    def feed_heads_all(self) -> dict[str, dict[int, int]]:
        """Per tenant, per Kafka partition, the highest stored offset (every tenant at once).

        For followers of the feed (the Merkle sealer, alert evaluation) that must find the
        tenants with new events: the same shape as ``feed_watermark`` without the tenant
        filter, so the ``feed_heads`` projection answers it too.
        """
        sql = (
            "SELECT tenant_id, kafka_partition, max(kafka_offset) AS o"  # noqa: S608
            f" FROM {self.database}.{FEED_TABLE} GROUP BY tenant_id, kafka_partition"
        )
        out: dict[str, dict[int, int]] = {}
        for r in self._select(sql, {}):
            out.setdefault(r["tenant_id"], {})[int(r["kafka_partition"])] = int(r["o"])
        return out

    def count_by_tenant(self) -> dict[str, int]:
        """Distinct events per tenant (operators' overview, metrics)."""
        sql = f"SELECT tenant_id, count() AS n FROM {self._table} FINAL GROUP BY tenant_id"  # noqa: S608
        return {row["tenant_id"]: int(row["n"]) for row in self._select(sql, {})}

    # --- reconciliation (auditstream reconcile) ----------------------------------

    def stored_offsets(self, topic: str, partition: int, start: int, end: int) -> set[int]:
        """Kafka offsets in ``[start, end)`` of ``topic``/``partition`` that have a stored row.

        Without FINAL on purpose: any copy of an event accounts for the offset it came from.
        """
        sql = (
            f"SELECT DISTINCT kafka_offset AS o FROM {self._table}"  # noqa: S608 - values are parameters
            " WHERE kafka_topic = {t:String} AND kafka_partition = {p:UInt16}"
            " AND kafka_offset >= {s:UInt64} AND kafka_offset < {e:UInt64}"
        )
        rows = self._select(sql, {"t": topic, "p": partition, "s": start, "e": end})
        return {int(r["o"]) for r in rows}

    def stored_identities(self, keys: Sequence[tuple[str, UUID]]) -> dict[tuple[str, UUID], bytes]:
        """Which ``(tenant_id, event_id)`` of ``keys`` are stored, with their content hashes.

        The processor's first-write-wins check (migration 0004), once per batch. The ids go
        to the engine as a binary insert into a temporary table, and ``audit_ids`` is read
        with ``event_id GLOBAL IN`` that table (plus the batch's few tenants as a plain
        array), then exact pairs are kept here. Measured in chDB on 1M stored events, a batch
        of 20,000 ids bound as an ``Array(UUID)`` literal cost ~330 ms, of which ~150 ms only
        to parse the literal; the binary insert and the read cost a fraction of that
        (bench/tools/identity_cost.py). ``GLOBAL`` ships the ids to every shard when
        ``audit_ids`` is a Distributed table; on one node it is a plain IN.

        A temporary table lives in a session: over HTTP each call opens its own (a fresh,
        empty table that the server drops with the session); chDB has one session per
        process, so calls there are serialised and the table is emptied first.
        """
        if not keys:
            return {}
        found: dict[tuple[str, UUID], bytes] = {}
        rows = self._rows_with_ids(keys, "audit_ids", "content_hash")
        if not rows:  # the common case, a batch of new events: no set of 20,000 pairs to build
            return found
        wanted = set(keys)
        for tenant_id, event_id, digest in rows:
            key = (tenant_id, event_id)
            if key in wanted:
                found[key] = digest if isinstance(digest, bytes) else bytes(digest, "latin-1")
        return found

    def _rows_with_ids(self, keys: Sequence[tuple[str, UUID]], table: str, column: str) -> list[tuple]:
        """``(tenant_id, event_id, column)`` of ``table``'s rows with a tenant and an id of ``keys``.

        A superset of the pairs (a tenant of one key with the id of another): callers keep
        the exact ones. Repeated keys are harmless (the ids are a set on the engine's side).
        """
        client = self._client()
        settings: dict[str, Any] = {}
        if not self.dsn.startswith("chdb:"):
            settings["session_id"] = f"auditstream-ids-{uuid4().hex}"
        sql = (
            f"SELECT tenant_id, event_id, {column}"  # noqa: S608 - fixed identifiers, values are parameters
            f" FROM {self.database}.{table} WHERE tenant_id IN {{t:Array(String)}}"
            f" AND event_id GLOBAL IN (SELECT event_id FROM {_PROBE})"
        )
        with self._probe_lock:
            try:
                client.command(
                    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PROBE} (event_id UUID) ENGINE = Memory",
                    settings=settings,
                )
                client.command(f"TRUNCATE TABLE {_PROBE}", settings=settings)
                # Column-oriented: one list of ids, no tuple per row.
                ids = [i for _, i in keys]
                insert_releasing(
                    client, _PROBE, [ids], column_names=["event_id"], column_oriented=True, settings=settings
                )
                tenants = sorted({t for t, _ in keys})
                result = client.query(sql, parameters={"t": tenants}, settings=settings)
            except StoreError:
                raise
            except Exception as exc:
                raise classify(exc) from exc
        return result.result_rows

    def stored_event_keys(self, keys: Sequence[tuple[str, UUID]]) -> set[tuple[str, UUID]]:
        """Which ``(tenant_id, event_id)`` of ``keys`` have a row in ``audit_events`` (at any position).

        For ``reconcile``, which must not trust the identity index: it asks the events table
        itself, so a row deleted behind the processor's back shows as a gap.
        """
        if not keys:
            return set()
        wanted = set(keys)
        return {(t, i) for t, i, _ in self._rows_with_ids(keys, "audit_events", "1") if (t, i) in wanted}

    def row_counts(self, topic: str) -> dict[str, int]:
        """Rows of ``topic`` as stored (``rows``: duplicates not merged yet included) and as read."""
        sql = (
            f"SELECT count() AS rows, uniqExact(tenant_id, event_id) AS distinct_ids FROM {self._table}"  # noqa: S608
            " WHERE kafka_topic = {t:String}"
        )
        raw = self._select(sql, {"t": topic})[0]
        final_sql = f"SELECT count() AS n FROM {self._table} FINAL WHERE kafka_topic = {{t:String}}"  # noqa: S608
        final = self._select(final_sql, {"t": topic})[0]
        return {
            "rows": int(raw["rows"]),
            "distinct_ids": int(raw["distinct_ids"]),
            "final_rows": int(final["n"]),
        }
