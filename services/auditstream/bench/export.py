"""Export through the API (NDJSON, JSON, CSV) against ClickHouse's own formats on the same rows.

Three single-tenant datasets (``export-tiny``, ``export-small``, ``export-big``: 10k, 1M and
10M rows at full size) are generated in chDB (kept across runs with
``AUDITSTREAM_BENCH_DATA_DIR``, see ``BenchContext.use_dataset``). The
baselines run ``SELECT ... FINAL ... ORDER BY ... FORMAT JSONEachRow`` / ``CSVWithNames``
(same rows, same FINAL and order as the API) in three ways:

* ``export.clickhouse.outfile.*``: ``INTO OUTFILE ... TRUNCATE``, the engine writing the
  file itself (no client, no Python per byte) — the figure the API's ratios are against,
  at every size.
* ``export.clickhouse.materialized.*``: one ``raw_query``, the whole result in memory —
  what a client gets from chDB in one call. Its RSS
  (this process, sampled every 0.1 s) is recorded too: it grows with the export. Not
  run above ``MATERIALIZED_MAX_ROWS`` (10M rows would be ~8 GB of result).
* ``export.clickhouse.streamed.*``: clickhouse-connect's ``raw_stream`` read in 1 MiB
  pieces, the way the API's export reads it. On chDB JSONEachRow streams block by block;
  CSVWithNames (a header) is not one of the formats clickhouse-connect streams from chDB,
  so it arrives only once the whole result is built (10M rows: no row within 30 s);
  recorded for reference, stopped after ``STREAMED_LIMIT_S`` (the rate is over the rows
  read). Until stop 28 this read the stream line by line, which on that file object is
  one byte per call: the ~2k rows/s it reported were the reader's.

Then the engine is closed and the API runs as a child process on the same path, read by
a real HTTP client. The child's RSS is sampled from /proc every 0.2 s during each export
(peak VmRSS per export), and VmHWM (peak since start) after it; the growth of the
peak from the smallest to the largest export is a metric of its own per format.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from auditstream.bench.apiproc import ApiProcess, create_key, memory_kb
from auditstream.bench.context import BenchContext, load_note
from auditstream.bench.datagen import Dataset, generate
from auditstream.bench.results import Metric, compare
from auditstream.events.stored import COLUMNS
from auditstream.store.client import create_client
from auditstream.store.store import Store

DATABASE = "bench"
CH_FORMATS = {"ndjson": "JSONEachRow", "csv": "CSVWithNames"}
API_FORMATS = ("ndjson", "json", "csv")
MATERIALIZED_MAX_ROWS = 2_000_000
STREAMED_LIMIT_S = 30.0
STREAMED_READ_BYTES = 1 << 20


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows >= 1_000_000 else f"{rows // 1000}k"


def _baseline_sql(tenant: str, fmt: str) -> str:
    return (
        f"SELECT {', '.join(COLUMNS)} FROM {DATABASE}.audit_events FINAL"  # noqa: S608 - constants only
        f" WHERE tenant_id = '{tenant}' ORDER BY occurred_at DESC, event_id DESC FORMAT {fmt}"
    )


def _clickhouse_streamed(dsn: str, tenant: str, fmt: str, deadline_s: float) -> dict[str, Any]:
    client = create_client(dsn)
    t0 = time.monotonic()
    lines = nbytes = 0
    complete = True
    try:
        stream = client.raw_stream(_baseline_sql(tenant, CH_FORMATS[fmt]))
        while chunk := stream.read(STREAMED_READ_BYTES):
            lines += chunk.count(b"\n")
            nbytes += len(chunk)
            if time.monotonic() - t0 > deadline_s:
                complete = False
                break
        stream.close()
    finally:
        client.close()
    rows = lines - (1 if fmt == "csv" else 0)
    seconds = time.monotonic() - t0
    return {"rows": rows, "bytes": nbytes, "seconds": seconds, "complete": complete}


class PeakRss:
    """Samples a process's VmRSS on a thread while the ``with`` block runs; keeps the highest."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid = pid
        self.every_s = every_s
        self.before_kb = memory_kb(pid).get("VmRSS", 0)
        self.peak_kb = self.before_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> None:
        self.peak_kb = max(self.peak_kb, memory_kb(self.pid).get("VmRSS", 0))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    @property
    def figures(self) -> dict[str, float]:
        return {
            "peak_rss_mb": round(self.peak_kb / 1024, 1),
            "rss_before_mb": round(self.before_kb / 1024, 1),
        }


def _clickhouse_outfile(dsn: str, tenant: str, fmt: str, workdir: Path) -> dict[str, Any]:
    """The engine writing the export itself: ``INTO OUTFILE``, no client, no Python per byte."""
    client = create_client(dsn)
    path = workdir / f"outfile-{tenant}.{fmt}"
    sql = _baseline_sql(tenant, CH_FORMATS[fmt]).replace(
        f" FORMAT {CH_FORMATS[fmt]}", f" INTO OUTFILE '{path}' TRUNCATE FORMAT {CH_FORMATS[fmt]}"
    )
    try:
        with PeakRss(os.getpid(), 0.1) as rss:
            t0 = time.monotonic()
            client.command(sql)
            seconds = time.monotonic() - t0
    finally:
        client.close()
    lines = 0
    with path.open("rb") as f:
        while block := f.read(16 << 20):
            lines += block.count(b"\n")
    nbytes = path.stat().st_size
    path.unlink()
    rows = lines - (1 if fmt == "csv" else 0)
    return {"rows": rows, "bytes": nbytes, "seconds": seconds, "complete": True} | rss.figures


def _clickhouse_materialized(dsn: str, tenant: str, fmt: str) -> dict[str, Any]:
    client = create_client(dsn)
    try:
        with PeakRss(os.getpid(), 0.1) as rss:
            t0 = time.monotonic()
            data = client.raw_query(_baseline_sql(tenant, CH_FORMATS[fmt]))
            seconds = time.monotonic() - t0
            rss.sample()  # the whole result is held right now
            rows = data.count(b"\n") - (1 if fmt == "csv" else 0)
            nbytes = len(data)
            del data
    finally:
        client.close()
    return {"rows": rows, "bytes": nbytes, "seconds": seconds, "complete": True} | rss.figures


def _api_export(api: ApiProcess, token: str, params: dict[str, str], deadline_s: float) -> dict[str, Any]:
    t0 = time.monotonic()
    lines = nbytes = 0
    complete = True
    status = 0
    error = None
    first_byte_s: float | None = None
    with PeakRss(api.pid, 0.2) as rss:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(60.0)) as http,
                http.stream(
                    "GET", f"{api.url}/v1/export", params=params, headers={"Authorization": f"Bearer {token}"}
                ) as response,
            ):
                status = response.status_code
                if status != 200:
                    error = response.read().decode(errors="replace")[:300]
                else:
                    for chunk in response.iter_raw(256 * 1024):
                        if first_byte_s is None:
                            first_byte_s = round(time.monotonic() - t0, 3)
                        lines += chunk.count(b"\n")
                        nbytes += len(chunk)
                        if time.monotonic() - t0 > deadline_s:
                            complete = False  # leaving the block closes the stream: the API stops
                            break
        except httpx.HTTPError as exc:
            # A timeout (no first byte within 60 s) is a result to record, not a reason to
            # lose the other export figures of the run.
            error = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - t0
    rows = lines - (1 if params["format"] == "csv" and lines else 0)
    return {
        "status": status,
        "error": error,
        "rows": rows,
        "bytes": nbytes,
        "seconds": seconds,
        "complete": complete,
        "first_byte_s": first_byte_s,
        "peak_rss_mb": rss.figures["peak_rss_mb"],
        "vmhwm_mb": round(memory_kb(api.pid).get("VmHWM", 0) / 1024, 1),
    }


def _rate_metric(scenario: str, r: dict[str, Any], sizes: dict[str, Any]) -> Metric:
    keys = ("rows", "bytes", "seconds", "complete", "first_byte_s")
    extra = {k: r[k] for k in keys if k in r} | load_note()
    if not r["complete"]:
        extra["partial"] = "stopped at the export time limit; rate over the rows read"
    value = r["rows"] / r["seconds"] if r["seconds"] > 0 and r["rows"] > 0 else None
    return Metric(scenario, "rows_per_s", value, "rows/s", sizes=sizes, extra=extra)


async def run(ctx: BenchContext) -> list[Metric]:
    s = ctx.sizes
    plan: list[tuple[str, int]] = []
    for tenant, rows in (
        ("export-tiny", s.export_rows_tiny),
        ("export-small", s.export_rows_small),
        ("export-big", s.export_rows_big),
    ):
        if rows not in {r for _, r in plan}:  # same size, same scenario names: one dataset
            plan.append((tenant, rows))
    kept = ctx.use_dataset("export-" + "-".join(str(r) for _, r in plan))
    store = Store(ctx.chdb_dsn, DATABASE)
    await asyncio.to_thread(store.open)
    client = create_client(ctx.chdb_dsn)
    datasets = {}
    t0 = time.monotonic()
    # One end for the run: a Dataset without one takes "now" whenever its window is read,
    # which would move the API's window past the oldest generated rows.
    if kept is None:
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    else:  # AUDITSTREAM_BENCH_DATA_DIR: the rows of an earlier run, with its end
        end = datetime.fromisoformat(kept["end"])
    for i, (tenant, rows) in enumerate(plan):
        ds = Dataset(rows=rows, single_tenant=tenant, first_number=i * 1_000_000_000, end=end)
        if kept is None:
            await asyncio.to_thread(generate, client, DATABASE, ds)
        datasets[tenant] = ds
    if kept is None:
        await asyncio.to_thread(client.command, f"OPTIMIZE TABLE {DATABASE}.audit_events FINAL")
        gen_s = time.monotonic() - t0
        ctx.dataset_generated({"end": end.isoformat(), "generate_s": round(gen_s, 1)})
    else:
        gen_s = float(kept["generate_s"])
    client.close()

    metrics: list[Metric] = []
    baselines: dict[tuple[str, str], str] = {}
    for tenant, ds in datasets.items():
        sizes = {"rows": ds.rows, "generate_s": round(gen_s, 1)}
        for fmt in ("ndjson", "csv"):
            # The bar: ClickHouse writing the same rows itself, at every size.
            name = f"export.clickhouse.outfile.{CH_FORMATS[fmt]}.{_label(ds.rows)}"
            baselines[(tenant, fmt)] = name
            r = await asyncio.to_thread(_clickhouse_outfile, ctx.chdb_dsn, tenant, fmt, ctx.workdir)
            metrics.append(_rate_metric(name, r, sizes))
            mem_extra = {"rss_before_mb": r["rss_before_mb"], "note": "bench process (chDB in-process)"}
            metrics.append(Metric(name, "peak_rss_mb", r["peak_rss_mb"], "MB", sizes=sizes, extra=mem_extra))
            name = f"export.clickhouse.materialized.{CH_FORMATS[fmt]}.{_label(ds.rows)}"
            if ds.rows > MATERIALIZED_MAX_ROWS:
                skipped = f"not run above {MATERIALIZED_MAX_ROWS:,} rows: the whole result is held in memory"
                metrics.append(
                    Metric(name, "rows_per_s", None, "rows/s", sizes=sizes, extra={"skipped": skipped})
                )
                continue
            r = await asyncio.to_thread(_clickhouse_materialized, ctx.chdb_dsn, tenant, fmt)
            metrics.append(_rate_metric(name, r, sizes))
            mem_extra = {"rss_before_mb": r["rss_before_mb"], "note": "bench process (chDB in-process)"}
            metrics.append(Metric(name, "peak_rss_mb", r["peak_rss_mb"], "MB", sizes=sizes, extra=mem_extra))
        for fmt in ("ndjson", "csv"):
            deadline = min(s.export_timeout_s, STREAMED_LIMIT_S)
            r = await asyncio.to_thread(_clickhouse_streamed, ctx.chdb_dsn, tenant, fmt, deadline)
            name = f"export.clickhouse.streamed.{CH_FORMATS[fmt]}.{_label(ds.rows)}"
            metrics.append(_rate_metric(name, r, sizes))
    await asyncio.to_thread(store.close)  # the API child needs the chDB path

    api = ApiProcess(ctx.workdir, ctx.chdb_dsn, DATABASE, ctx.bootstrap)
    await asyncio.to_thread(api.start)
    try:
        rss_idle = memory_kb(api.pid).get("VmRSS", 0) / 1024
        for tenant, ds in datasets.items():
            token = await asyncio.to_thread(create_key, api.keys_path, tenant)
            since, until = ds.window
            for fmt in API_FORMATS:
                params = {
                    "format": fmt,
                    "since": (since - timedelta(minutes=1)).isoformat(),
                    "until": (until + timedelta(minutes=1)).isoformat(),
                }
                r = await asyncio.to_thread(_api_export, api, token, params, s.export_timeout_s)
                name = f"export.api.{fmt}.{_label(ds.rows)}"
                sizes = {"rows": ds.rows}
                if r["status"] != 200:
                    extra = {"skipped": f"HTTP {r['status']}: {r['error']}"}
                    metrics.append(Metric(name, "rows_per_s", None, "rows/s", extra=extra))
                    compare(metrics, name, [baselines[(tenant, "ndjson")]], "rows_per_s")
                    continue
                metrics.append(_rate_metric(name, r, sizes))
                mem_extra = {"idle_rss_mb": round(rss_idle, 1), "vmhwm_mb_after": r["vmhwm_mb"]}
                metrics.append(
                    Metric(name, "peak_rss_mb", r["peak_rss_mb"], "MB", sizes=sizes, extra=mem_extra)
                )
                # Every format against ClickHouse's own JSONEachRow (the product bar), CSV against
                # ClickHouse's materialised CSV too.
                versus = [baselines[(tenant, "ndjson")]] + (
                    [baselines[(tenant, "csv")]] if fmt == "csv" else []
                )
                compare(metrics, name, versus, "rows_per_s")
    finally:
        await asyncio.to_thread(api.stop)
    metrics += _rss_growth(metrics, datasets)
    return metrics


def _rss_growth(metrics: list[Metric], datasets: dict[str, Dataset]) -> list[Metric]:
    """Per API format: peak RSS at the largest export minus at the smallest (the memory bar)."""
    sizes = sorted(ds.rows for ds in datasets.values())
    if len(sizes) < 2:
        return []
    small, big = _label(sizes[0]), _label(sizes[-1])
    peaks = {m.scenario: m.value for m in metrics if m.metric == "peak_rss_mb" and m.value is not None}
    out = []
    for fmt in API_FORMATS:
        a, b = peaks.get(f"export.api.{fmt}.{small}"), peaks.get(f"export.api.{fmt}.{big}")
        if a is None or b is None:
            continue
        extra = {"from_mb": a, "to_mb": b, "from_rows": sizes[0], "to_rows": sizes[-1]}
        out.append(
            Metric(f"export.api.{fmt}.rss_growth_{small}_{big}", "rss_growth_mb", round(b - a, 1), "MB",
                   extra=extra)
        )  # fmt: skip
    return out
