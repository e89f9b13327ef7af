"""The viewer's first view over the benchmark data: bytes transferred and time to the first row.

    .venv/bin/python bench/tools/viewer_first_row.py --rows 10000000 [--runs 5]

Generates the query benchmark's dataset inside chDB (``bench.datagen``: 500 tenants,
Zipf, ``tenant-0000`` holds ~11% of the rows over 30 days), starts the API child
(``auditstream api``, which serves the viewer), signs in as a reader of ``tenant-0000``
in Debian's Chromium, then opens ``/`` in a fresh browser context (cold cache) ``--runs``
times: the default view (last 7 days, histogram and the first 50 rows). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from auditstream.bench.apiproc import ApiProcess, create_key
from auditstream.bench.datagen import Dataset, generate
from auditstream.store import Store
from auditstream.store.client import create_client

TENANT = "tenant-0000"
DATABASE = "viewerbench"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEIGHT_JS = (
    "() => { const n = performance.getEntriesByType('navigation')[0];"
    " const r = performance.getEntriesByType('resource');"
    " return {transfer_bytes: n.transferSize + r.reduce((s, e) => s + e.transferSize, 0),"
    " requests: 1 + r.length, rows: document.querySelectorAll('tr[data-event-id]').length,"
    " total: document.querySelector('#count').textContent.replace(/\\s+/g, ' ').trim()}; }"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auditstream-viewerbench-"))
    dsn = f"chdb://{work / 'clickhouse'}"
    try:
        store = Store(dsn, DATABASE)
        store.open()
        client = create_client(dsn)
        t0 = time.monotonic()
        generate(client, DATABASE, Dataset(rows=args.rows))
        generate_s = time.monotonic() - t0
        tenant_rows = int(store.count_by_tenant().get(TENANT, 0))
        client.close()
        store.close()  # the API child opens the chDB path
        # No broker: the viewer's reads need none (exports would).
        api = ApiProcess(work, dsn, DATABASE, "127.0.0.1:1")
        api.start()
        try:
            token = create_key(api.keys_path, TENANT, "reader")
            runs = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                first = browser.new_context(base_url=api.url)
                page = first.new_page()
                page.goto("/signin")
                page.fill('input[name="api_key"]', token)
                page.click('button[type="submit"]')
                page.wait_for_selector("tr[data-event-id]", timeout=60_000)
                cookies = first.cookies()
                first.close()
                for _ in range(args.runs):
                    context = browser.new_context(base_url=api.url)
                    context.add_cookies(cookies)
                    page = context.new_page()
                    started = time.perf_counter()
                    page.goto("/", wait_until="commit")
                    page.wait_for_selector("tr[data-event-id]", timeout=60_000)
                    elapsed = (time.perf_counter() - started) * 1000
                    # The first view is complete with its histogram (fetched by htmx after the table).
                    page.wait_for_selector(".histogram svg", state="attached", timeout=60_000)
                    chart_ms = (time.perf_counter() - started) * 1000
                    page.wait_for_load_state("load")
                    figures = page.evaluate(WEIGHT_JS)
                    runs.append(
                        {"first_row_ms": round(elapsed, 1), "histogram_ms": round(chart_ms, 1), **figures}
                    )
                    context.close()
                browser.close()
        finally:
            api.stop()
        times = [r["first_row_ms"] for r in runs]
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "tenant": TENANT,
                    "tenant_rows": tenant_rows,
                    "generate_s": round(generate_s, 1),
                    "first_row_ms_median": statistics.median(times),
                    "first_row_ms_max": max(times),
                    "runs": runs,
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
