"""Prometheus metrics of the processor (exposed by the API's /metrics in the same process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("auditstream_processor_consumed_total", "Messages consumed from the input topic.")
STORED = Counter("auditstream_processor_stored_total", "Events written to ClickHouse.")
REJECTED = Counter(
    "auditstream_processor_rejected_total", "Messages sent to the dead-letter topic.", ["reason"]
)
DUPLICATES = Counter(
    "auditstream_processor_duplicates_total",
    "Events dropped as exact copies of a (tenant_id, event_id) in the same batch or already stored.",
)
CONFLICTS = Counter(
    "auditstream_processor_conflicts_total",
    "Events refused because their (tenant_id, event_id) is stored with different content"
    " (first write wins; each is in the dead-letter topic).",
)
BATCH_SIZE = Histogram(
    "auditstream_processor_batch_size",
    "Messages per processed batch.",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000),
)
WRITE_SECONDS = Histogram(
    "auditstream_processor_write_seconds",
    "Time to write one batch to ClickHouse, retries included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WRITE_RETRIES = Counter("auditstream_processor_write_retries_total", "Failed batch writes that were retried.")
STORE_AVAILABLE = Gauge(
    "auditstream_processor_store_available", "1 while ClickHouse accepts writes, 0 during an outage."
)
LAST_BATCH = Gauge(
    "auditstream_processor_last_batch_timestamp_seconds",
    "Unix time of the last batch committed to the store.",
)
CONSUMER_LAG = Gauge(
    "auditstream_processor_consumer_lag",
    "Messages in the partition after the last processed one (high watermark - position), per partition.",
    ["partition"],
)
