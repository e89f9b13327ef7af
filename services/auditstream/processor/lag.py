"""Consumer lag per partition, measured after each batch.

Lag is the broker's high watermark minus the position after the batch: how far
the processor is behind the producers. It is read from the consumer's fetch
metadata (no extra request to the broker), so it costs nothing per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from faust.types import TP

from auditstream.processor import metrics
from auditstream.processor.batch import Incoming

log = logging.getLogger(__name__)


def record_lag(consumer: Any, messages: Sequence[Incoming]) -> None:
    """Set ``auditstream_processor_consumer_lag`` for each partition of ``messages``."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic, m.partition)
        if m.offset > last.get(key, -1):
            last[key] = m.offset
    for (topic, partition), offset in last.items():
        try:
            highwater = consumer.highwater(TP(topic, partition))
        except Exception:  # a metric must never stop the processor
            log.debug("no high watermark for %s/%s", topic, partition, exc_info=True)
            continue
        if highwater is not None:
            metrics.CONSUMER_LAG.labels(partition=str(partition)).set(max(highwater - offset - 1, 0))
