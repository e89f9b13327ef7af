"""The stream processor: Kafka ``audit.events`` -> validate/enrich -> ClickHouse, rejects -> DLQ.

A chain of steps, each built with the next one (step.py; wired in chain.py)::

    fetch (fetcher.py) -> validate (validate.py, process_batch in batch.py)
      -> in order (order.py) -> identity check + write (write.py, identity.py, sink.py)
      -> dead letters (deadletter.py, dlq.py) -> commit (commit.py)

Offsets are committed only after the last step, so a crash at any point replays
the batch, and the store's de-duplication makes the replay harmless. ``service.py``
holds the faust app and the lifecycle.
"""

from auditstream.processor.batch import KafkaMessage, ProcessedBatch, Rejected, Row, process_batch
from auditstream.processor.service import Processor

__all__ = ["KafkaMessage", "ProcessedBatch", "Processor", "Rejected", "Row", "process_batch"]
