"""AUDITSTREAM_BENCH_DATA_DIR: a second run reuses the generated rows instead of generating them again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditstream.bench.runner import run_all
from auditstream.bench.sizes import QUICK

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]


def test_export_family_reuses_kept_data_and_reports_rss_growth(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = tmp_path / "kept"
    monkeypatch.setenv("AUDITSTREAM_BENCH_DATA_DIR", str(kept))
    runs = []
    for i in range(2):
        _, path = run_all(
            ["export"],
            bootstrap=kafka_bootstrap,
            sizes=QUICK,
            quick=True,
            results_dir=tmp_path / f"r{i}",
            report=False,
        )
        runs.append({(m["scenario"], m["metric"]): m for m in json.loads(path.read_text())["metrics"]})
    key = "export-" + "-".join(
        str(n) for n in (QUICK.export_rows_tiny, QUICK.export_rows_small, QUICK.export_rows_big)
    )
    marker = json.loads((kept / key / "generated.json").read_text())
    for got in runs:
        assert not [k for k in got if k[0].endswith(".failed")], got
        # Same rows both times: every size exported exactly, the second time without generating.
        for label, rows in (("1k", QUICK.export_rows_tiny), ("5k", QUICK.export_rows_big)):
            assert got[(f"export.api.ndjson.{label}", "rows_per_s")]["extra"]["rows"] == rows
        growth = got[("export.api.ndjson.rss_growth_1k_5k", "rss_growth_mb")]
        peaks = [got[(f"export.api.ndjson.{label}", "peak_rss_mb")]["value"] for label in ("1k", "5k")]
        assert growth["value"] == pytest.approx(peaks[1] - peaks[0], abs=0.11)
    first, second = (r[("export.clickhouse.outfile.JSONEachRow.2k", "rows_per_s")]["sizes"] for r in runs)
    assert first["generate_s"] == second["generate_s"] == marker["generate_s"]
