"""Prometheus metrics of the producer SDK (default registry, so /metrics of any host process has them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SPOOL_EVENTS = Gauge("auditstream_producer_spool_events", "Events waiting in the on-disk spool.")
SPOOL_BYTES = Gauge("auditstream_producer_spool_bytes", "Bytes of event values waiting in the on-disk spool.")
SPOOLED = Counter(
    "auditstream_producer_spooled_total", "Events written to the spool because the broker was unreachable."
)
SPOOL_SENT = Counter(
    "auditstream_producer_spool_sent_total", "Spooled events acknowledged by the broker and removed."
)
SPOOL_FULL = Counter("auditstream_producer_spool_full_total", "Emits refused because the spool was full.")
