"""Query latency over generated events: through the API, and the same SQL run directly.

The direct baseline calls the very ``Store`` methods the routes call (so the same SQL,
parameters and FINAL), in-process, before the API child opens the chDB path. The API
figures include HTTP, auth, validation and JSON encoding. Queries are drawn from the
data: (actor, day) pairs sampled from the largest tenant's rows, so popular actors are
queried as often as they appear. A route the API does not have yet is skipped (404),
with the reason in the results.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from auditstream.bench.apiproc import ApiProcess, create_key
from auditstream.bench.context import BenchContext, load_note
from auditstream.bench.datagen import Dataset, generate
from auditstream.bench.results import Metric, compare, percentiles
from auditstream.store.client import create_client
from auditstream.store.filters import EventFilter
from auditstream.store.store import Store

DATABASE = "bench"
TENANT = "tenant-0000"  # the largest tenant: the worst case for a tenant-scoped query
PAGE = 100
SEARCH_TERMS = ("pci internal scan 42", "user1234", "invalid password", "scn_77")


def _iso(d: datetime) -> str:
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cases(samples: list[tuple[str, str, datetime]], repeats: int, seed: int = 3) -> list[dict[str, Any]]:
    """``repeats`` concrete queries per scenario: window, actor, action, term."""
    rng = random.Random(seed)
    out = []
    for i in range(repeats):
        actor, action, day = samples[rng.randrange(len(samples))]
        since = datetime(day.year, day.month, day.day, tzinfo=UTC)
        out.append(
            {"since": since, "until": since + timedelta(days=1), "actor": actor, "action": action,
             "q": SEARCH_TERMS[i % len(SEARCH_TERMS)]}
        )  # fmt: skip
    return out


# scenario -> (API path, API params, direct Store call)
Scenario = tuple[str, Callable[[dict[str, Any]], dict[str, str]], Callable[[Store, dict[str, Any]], object]]


def _scenarios() -> dict[str, Scenario]:
    def window(c: dict[str, Any]) -> dict[str, str]:
        return {"since": _iso(c["since"]), "until": _iso(c["until"]), "limit": str(PAGE)}

    def f(c: dict[str, Any], **kw: Any) -> EventFilter:
        return EventFilter(TENANT, since=c["since"], until=c["until"], **kw)

    def stats_direct(s: Store, c: dict[str, Any]) -> object:
        grouped = getattr(s, "count_grouped", None)
        if grouped is None:
            raise NotImplementedError("Store.count_grouped does not exist yet")
        return grouped(f(c), "action")

    def feed_direct(s: Store, c: dict[str, Any]) -> object:
        page = getattr(s, "feed_page", None)
        if page is None:
            raise NotImplementedError("Store.feed_page does not exist yet")
        return page(TENANT, {}, limit=PAGE)

    return {
        "events_day_actor": (
            "/v1/events",
            lambda c: window(c) | {"actor": c["actor"]},
            lambda s, c: s.query_events(f(c, actors=[c["actor"]]), limit=PAGE + 1),
        ),
        "events_day_action": (
            "/v1/events",
            lambda c: window(c) | {"action": c["action"]},
            lambda s, c: s.query_events(f(c, actions=[c["action"]]), limit=PAGE + 1),
        ),
        "events_day_actor_action": (
            "/v1/events",
            lambda c: window(c) | {"actor": c["actor"], "action": c["action"]},
            lambda s, c: s.query_events(f(c, actors=[c["actor"]], actions=[c["action"]]), limit=PAGE + 1),
        ),
        "events_q_7d": (
            "/v1/events",
            lambda c: {
                "since": _iso(c["until"] - timedelta(days=7)),
                "until": _iso(c["until"]),
                "q": c["q"],
                "limit": str(PAGE),
            },
            lambda s, c: s.query_events(
                EventFilter(TENANT, since=c["until"] - timedelta(days=7), until=c["until"], text=c["q"]),
                limit=PAGE + 1,
            ),
        ),
        "stats_day_by_action": (
            "/v1/stats",
            lambda c: {"since": _iso(c["since"]), "until": _iso(c["until"]), "group_by": "action"},
            stats_direct,
        ),
        "feed_first_page": ("/v1/feed", lambda c: {"limit": str(PAGE)}, feed_direct),
    }


def _direct(
    store: Store, call: Callable[[Store, dict[str, Any]], object], cases: list[dict[str, Any]]
) -> list[float]:
    call(store, cases[0])  # warm-up (parse caches, first reads): not counted
    out = []
    for c in cases:
        t0 = time.perf_counter()
        call(store, c)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _api(
    http: httpx.Client,
    path: str,
    params: Callable[[dict[str, Any]], dict[str, str]],
    cases: list[dict[str, Any]],
) -> tuple[list[float], str | None]:
    first = http.get(path, params=params(cases[0]))
    if first.status_code != 200:
        return [], f"HTTP {first.status_code}: {first.text[:200]}"
    out = []
    for c in cases:
        t0 = time.perf_counter()
        r = http.get(path, params=params(c))
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            return [], f"HTTP {r.status_code}: {r.text[:200]}"
    return out, None


def _latency_metrics(
    scenario: str, samples: list[float], sizes: dict[str, Any], note: str | None
) -> list[Metric]:
    if not samples:
        return [Metric(scenario, "p95_ms", None, "ms", sizes=sizes, extra={"skipped": note or "no samples"})]
    pct = percentiles(samples)
    extra = {"samples": len(samples), **load_note()}
    return [
        Metric(scenario, f"{k}_ms", round(pct[k], 2), "ms", sizes=sizes, extra=extra)
        for k in ("p50", "p95", "p99")
    ]


async def run(ctx: BenchContext) -> list[Metric]:
    s = ctx.sizes
    kept = ctx.use_dataset(f"query-{s.query_rows}")
    store = Store(ctx.chdb_dsn, DATABASE)
    await asyncio.to_thread(store.open)
    client = create_client(ctx.chdb_dsn)
    t0 = time.monotonic()
    if kept is None:
        ds = Dataset(rows=s.query_rows)
        await asyncio.to_thread(generate, client, DATABASE, ds)
        gen_s = time.monotonic() - t0
        ctx.dataset_generated({"generate_s": round(gen_s, 1)})
    else:  # AUDITSTREAM_BENCH_DATA_DIR: the rows of an earlier run
        gen_s = float(kept["generate_s"])
    rows = client.query(
        f"SELECT actor_id, action, occurred_at FROM {DATABASE}.audit_events"  # noqa: S608
        " WHERE tenant_id = {t:String} ORDER BY cityHash64(event_id) LIMIT 500",
        parameters={"t": TENANT},
    ).result_rows
    client.close()
    cases = _cases([(a, b, c) for a, b, c in rows], s.query_repeats)
    sizes = {
        "rows": s.query_rows,
        "tenant_rows_share": "~11% (largest tenant)",
        "generate_s": round(gen_s, 1),
        "reused_data": kept is not None,
    }

    metrics: list[Metric] = []
    scenarios = _scenarios()
    for name, (_, _, call) in scenarios.items():
        try:
            samples = await asyncio.to_thread(_direct, store, call, cases)
            metrics += _latency_metrics(f"query.direct.{name}", samples, sizes, None)
        except Exception as exc:  # a store method that does not exist yet, or fails
            metrics += _latency_metrics(f"query.direct.{name}", [], sizes, f"{type(exc).__name__}: {exc}")
    await asyncio.to_thread(store.close)  # the API child needs the chDB path

    api = ApiProcess(ctx.workdir, ctx.chdb_dsn, DATABASE, ctx.bootstrap)
    await asyncio.to_thread(api.start)
    try:
        # exporter: the feed scenario needs it (issue 9); the other routes only need reader.
        token = await asyncio.to_thread(create_key, api.keys_path, TENANT, "exporter")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=60.0) as http:
            for name, (path, params, _) in scenarios.items():
                samples, note = await asyncio.to_thread(_api, http, path, params, cases)
                metrics += _latency_metrics(f"query.api.{name}", samples, sizes, note)
    finally:
        await asyncio.to_thread(api.stop)
    for name in scenarios:
        for k in ("p50", "p95", "p99"):
            compare(metrics, f"query.api.{name}", [f"query.direct.{name}"], f"{k}_ms", lower_is_better=True)
    return metrics
