"""A/B of the API export on a kept bench dataset: ClickHouse's INTO OUTFILE bar, then
``GET /v1/export`` from an API child process at each size (not a test; one JSON line per
figure: rows/s, sampled peak VmRSS and VmHWM of the API process, load average).

Usage (the dataset of ``auditstream bench export --rows 10000000`` kept with
``AUDITSTREAM_BENCH_DATA_DIR``; a broker's port in /tmp/s17exp/kafka_port):

    .venv/bin/python bench/tools/export_ab.py LABEL [--outfile] [--formats ndjson,json,csv]
        [--sizes tiny,small,big] [--data DIR] [--end ISO]

Main's code for the A side: ``git archive main services | tar -x -C /tmp/main`` and
``PYTHONPATH=/tmp/main/services`` (the API child inherits it). It reuses the bench's own
helpers, so the figures are measured exactly as ``auditstream bench export`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import auditstream.store.export as code
from auditstream.bench.apiproc import ApiProcess, create_key, memory_kb
from auditstream.bench.export import _api_export, _clickhouse_outfile

ap = argparse.ArgumentParser()
ap.add_argument("label")
ap.add_argument("--outfile", action="store_true")
ap.add_argument("--formats", default="ndjson")
ap.add_argument("--sizes", default="tiny,small,big")
ap.add_argument("--data", default="/tmp/s17exp/data/export-10000-1000000-10000000")
ap.add_argument("--end", default=None, help="the dataset's end (default: its generated.json)")
ap.add_argument("--kafka-port-file", default="/tmp/s17exp/kafka_port")
a = ap.parse_args()
data = Path(a.data)
dsn = f"chdb://{data / 'clickhouse'}"
end = datetime.fromisoformat(a.end or json.loads((data / "generated.json").read_text())["end"])
since, until = end - timedelta(days=30, minutes=1), end + timedelta(minutes=1)
work = Path(tempfile.mkdtemp(prefix="export-ab-"))


def emit(**kw: object) -> None:
    kw.update(label=a.label, load=round(os.getloadavg()[0], 2), code=code.__file__)
    print(json.dumps(kw), flush=True)


tenants = ["export-" + s for s in a.sizes.split(",")]
if a.outfile:
    for t in tenants:
        r = _clickhouse_outfile(dsn, t, "ndjson", work)
        emit(kind="outfile", tenant=t, rows=r["rows"], rows_s=round(r["rows"] / r["seconds"]))
api = ApiProcess(work, dsn, "bench", "127.0.0.1:" + Path(a.kafka_port_file).read_text().strip())
api.start()
try:
    emit(kind="idle", rss=memory_kb(api.pid).get("VmRSS", 0) // 1024)
    for t in tenants:
        token = create_key(api.keys_path, t)
        for fmt in a.formats.split(","):
            params = {"format": fmt, "since": since.isoformat(), "until": until.isoformat()}
            r = _api_export(api, token, params, 300.0)
            emit(kind="api", tenant=t, fmt=fmt, status=r["status"], rows=r["rows"],
                 rows_s=round(r["rows"] / r["seconds"]), peak_rss=r["peak_rss_mb"], vmhwm=r["vmhwm_mb"],
                 first_byte=r["first_byte_s"], err=r["error"])  # fmt: skip
finally:
    api.stop()
