"""Benchmarks of issue 5: ingest, latency, export and query against baselines in the same run.

One module per scenario family (``ingest``, ``latency``, ``export``, ``query``), each an
``async def run(ctx) -> list[Metric]``; ``runner`` runs each family in its own child
process (chDB allows one engine path per process, and each family wants a fresh one),
then ``results``, ``report`` and ``plot`` write the JSON, ``bench/RESULTS.md`` and PNGs.
``datagen`` fills a table inside ClickHouse (``INSERT ... SELECT`` from ``numbers()``) and
is meant to be shared with the query-latency work of issue 4.
"""
