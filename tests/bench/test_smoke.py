"""Each benchmark family runs end to end on tiny sizes (real broker, chDB) and reports its figures.

No wall-clock assertions: on a shared 2-core box the figures say nothing in a test. What
is checked is that every scenario ran and wrote its metrics to the results file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditstream.bench.runner import run_all
from auditstream.bench.sizes import QUICK

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.timeout(900)]

EXPECTED = {
    "ingest": {
        ("ingest.ours", "events_per_s"),
        ("ingest.baseline_raw_insert", "events_per_s"),
        ("ingest.baseline_kafka_engine", "events_per_s"),  # value None when chDB cannot (recorded why)
        ("ingest.baseline_raw_consume", "events_per_s"),
    },
    "latency": {("latency.produce_to_queryable", "p50_ms"), ("latency.produce_to_queryable", "p99_ms")},
    "alerts": {("alerts.produce_to_webhook", "p50_ms"), ("alerts.produce_to_webhook", "p99_ms")},
    "export": {
        ("export.clickhouse.outfile.JSONEachRow.2k", "rows_per_s"),
        ("export.clickhouse.outfile.CSVWithNames.5k", "peak_rss_mb"),
        ("export.clickhouse.materialized.JSONEachRow.2k", "rows_per_s"),
        ("export.clickhouse.streamed.JSONEachRow.2k", "rows_per_s"),
        ("export.api.ndjson.2k", "rows_per_s"),
        ("export.api.json.2k", "rows_per_s"),
        ("export.api.ndjson.5k", "peak_rss_mb"),
        ("export.api.csv.5k", "rows_per_s"),
        ("export.api.ndjson.1k", "peak_rss_mb"),
        ("export.api.ndjson.rss_growth_1k_5k", "rss_growth_mb"),
    },
    "query": {
        ("query.direct.events_day_actor", "p95_ms"),
        ("query.api.events_day_actor", "p95_ms"),
        ("query.api.events_day_action", "p95_ms"),
        ("query.api.events_q_7d", "p95_ms"),
        ("query.api.stats_day_by_action", "p95_ms"),
        ("query.api.feed_first_page", "p95_ms"),
    },
}


def test_every_scenario_reports_its_metrics(kafka_bootstrap: str, tmp_path: Path) -> None:
    _, path = run_all(
        list(EXPECTED), bootstrap=kafka_bootstrap, sizes=QUICK, quick=True, results_dir=tmp_path, report=False
    )
    saved = json.loads(path.read_text())
    assert saved["machine"]["cores"] and saved["machine"]["versions"]["chdb"]
    got = {(m["scenario"], m["metric"]) for m in saved["metrics"]}
    failed = [m for m in saved["metrics"] if m["scenario"].endswith(".failed")]
    assert not failed, failed
    for family, wanted in EXPECTED.items():
        assert wanted <= got, f"{family}: missing {sorted(wanted - got)}"
    by_key = {(m["scenario"], m["metric"]): m for m in saved["metrics"]}
    # Ours and the baselines that can run must have measured something.
    for key in [("ingest.ours", "events_per_s"), ("ingest.baseline_raw_insert", "events_per_s")]:
        assert by_key[key]["value"], key
    # Every ingest scenario after the first started once the engine had merged the one before.
    assert "waited_for_merges_s" in by_key[("ingest.baseline_raw_insert", "events_per_s")]["extra"]
    kafka_engine = by_key[("ingest.baseline_kafka_engine", "events_per_s")]
    assert kafka_engine["value"] or kafka_engine["extra"].get("error")
    ours_rows = [
        m for m in saved["metrics"] if m["scenario"] == "ingest.ours" and m["metric"] == "events_per_s"
    ]
    assert {m["baseline"] for m in ours_rows} >= {"ingest.baseline_raw_insert", "ingest.baseline_raw_consume"}
    assert any(name.endswith("ingest_throughput.png") for name in saved.get("plots", []))
    # The API's exports are compared with ClickHouse writing the same rows itself.
    compared = {m.get("baseline") for m in saved["metrics"] if m["scenario"] == "export.api.ndjson.2k"}
    assert compared - {None} == {"export.clickhouse.outfile.JSONEachRow.2k"}
    assert by_key[("export.clickhouse.outfile.JSONEachRow.2k", "rows_per_s")]["extra"]["rows"] == 2000
    # Every triggering event's alert reached the receiver (delivery loses nothing).
    alerts = by_key[("alerts.produce_to_webhook", "p99_ms")]["extra"]
    assert alerts["expected_alerts"] > 0 and alerts["missing"] == 0, alerts
