"""The feed's page over copies of the feed table in other layouts, in-process (not a test).

Usage (``bench query``'s kept dataset; this tree's migrations, so the source table is the
feed's current one)::

    .venv/bin/python bench/tools/feed_layouts.py DSN SOURCE_DB TENANT [calls=100]
        [--layouts wide8192,compact8192,compact1024] [--build]

``--build`` (re)creates one database per layout, ``feed_<layout>``, holding a copy of
``SOURCE_DB``'s feed table with that part format and granule size (``INSERT … SELECT`` then
``OPTIMIZE … FINAL``, so every layout has the same parts). Then, per layout, alternating
per call: ``Store.feed_page(limit=100)`` from the start and from a cursor mid-way (p50 /
p95), and the page's read as one SELECT against a ``UNION ALL`` of one SELECT per partition
(the engine's time only: ``raw_query``, nothing decoded).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from auditstream.events.stored import COLUMNS
from auditstream.store.client import create_client
from auditstream.store.feedspan import window_end
from auditstream.store.store import FEED_TABLE, Store

SELECT_COLUMNS = ", ".join(COLUMNS)  # what Store.feed_page reads
ap = argparse.ArgumentParser()
ap.add_argument("dsn")
ap.add_argument("source")
ap.add_argument("tenant")
ap.add_argument("calls", type=int, nargs="?", default=100)
ap.add_argument("--layouts", default="wide8192,compact8192,compact1024")
ap.add_argument("--build", action="store_true")
a = ap.parse_args()
client = create_client(a.dsn)


def build(layout: str) -> None:
    db = f"feed_{layout}"
    granules = int(layout.removeprefix("wide").removeprefix("compact"))
    wide_from = 0 if layout.startswith("wide") else 1 << 40
    ddl = client.command(f"SHOW CREATE TABLE {a.source}.{FEED_TABLE}")
    ddl = str(ddl).replace("\\n", "\n").replace("\\'", "'").replace(f"{a.source}.", f"{db}.")
    head, _, settings = ddl.rpartition("SETTINGS ")
    kept = [s for s in settings.split(", ") if not s.startswith(("index_granularity", "min_bytes_for_wide"))]
    kept += [f"index_granularity = {granules}", f"min_bytes_for_wide_part = {wide_from}"]
    client.command(f"DROP DATABASE IF EXISTS {db} SYNC")
    client.command(f"CREATE DATABASE {db}")
    client.command(f"{head}SETTINGS {', '.join(kept)}")
    started = time.perf_counter()
    client.command(f"INSERT INTO {db}.{FEED_TABLE} SELECT * FROM {a.source}.{FEED_TABLE}")  # noqa: S608
    client.command(f"OPTIMIZE TABLE {db}.{FEED_TABLE} FINAL")
    print(f"{layout}: copied in {time.perf_counter() - started:.1f} s", flush=True)


def timed(call: Callable[[], Any], out: list[float]) -> None:
    started = time.perf_counter()
    call()
    out.append((time.perf_counter() - started) * 1000)


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 1)


def reads(db: str, spans: dict[int, Any], start: dict[int, int]) -> tuple[str, str, dict[str, Any]]:
    """The page's read as a UNION ALL of one SELECT per partition, and as one SELECT."""
    params: dict[str, Any] = {"t": a.tenant, "n": 101}
    each, ranges = [], []
    for i, (partition, span) in enumerate(sorted(spans.items())):
        first = start.get(partition, span.first)
        params[f"p{i}"], params[f"o{i}"], params[f"h{i}"] = partition, first, window_end(span, first, 101)
        cond = (
            f"kafka_partition = {{p{i}:UInt16}} AND kafka_offset BETWEEN {{o{i}:UInt64}} AND {{h{i}:UInt64}}"
        )
        each.append(
            f"(SELECT {SELECT_COLUMNS} FROM {db}.{FEED_TABLE}"  # noqa: S608
            f" WHERE tenant_id = {{t:String}} AND {cond}"
            " ORDER BY kafka_partition, kafka_offset LIMIT {n:UInt32})"
        )
        ranges.append(f"({cond})")
    single = (
        f"SELECT {SELECT_COLUMNS} FROM {db}.{FEED_TABLE}"  # noqa: S608
        f" WHERE tenant_id = {{t:String}} AND ({' OR '.join(ranges)})"
        " ORDER BY kafka_partition, kafka_offset LIMIT {n:UInt32} BY kafka_partition"
    )
    return " UNION ALL ".join(each), single, params


layouts = a.layouts.split(",")
if a.build:
    for layout in layouts:
        build(layout)
stores = {}
for layout in layouts:
    store = Store(a.dsn, f"feed_{layout}")
    store.open()
    stores[layout] = store
spans = stores[layouts[0]].feed_spans(a.tenant)
mid = {partition: span.first + (span.head - span.first) // 2 for partition, span in spans.items()}
for label, after in (("first page", {}), ("cursor mid-way", mid)):
    pages: dict[str, list[float]] = {layout: [] for layout in layouts}
    union: dict[str, list[float]] = {layout: [] for layout in layouts}
    single: dict[str, list[float]] = {layout: [] for layout in layouts}
    start = {partition: offset + 1 for partition, offset in after.items()}
    for _ in range(a.calls + 1):  # the first round warms up and is dropped
        for layout, store in stores.items():
            union_sql, single_sql, params = reads(f"feed_{layout}", spans, start)
            timed(lambda s=store, c=after: s.feed_page(a.tenant, c, limit=100), pages[layout])
            timed(
                lambda q=union_sql, v=params: client.raw_query(q, parameters=v, fmt="Native"), union[layout]
            )
            timed(
                lambda q=single_sql, v=params: client.raw_query(q, parameters=v, fmt="Native"), single[layout]
            )
    for layout in layouts:
        pg, un, si = pages[layout][1:], union[layout][1:], single[layout][1:]
        print(
            f"{label:15} {layout:12} feed_page p50 {statistics.median(pg):.1f} p95 {p(pg, 0.95)} ms | read:"
            f" UNION ALL p50 {statistics.median(un):.1f}, one SELECT p50 {statistics.median(si):.1f} ms",
            flush=True,
        )
