"""The stream processor: Kafka ``audit.events`` -> validate/enrich -> ClickHouse, rejects -> DLQ.

The steps compose in the order an audit log needs them (see ``agent.py``):

    take a batch from faust's consumer (size or time, fetcher.py) -> process_batch (pure)
    -> write rows to the store (retry until accepted) -> publish rejects to the DLQ
    -> acknowledge the batch (faust commits acknowledged offsets)

Offsets are committed only after the last step, so a crash at any point replays
the batch, and the store's de-duplication makes the replay harmless.
"""

from auditstream.processor.batch import KafkaMessage, ProcessedBatch, Rejected, process_batch
from auditstream.processor.service import Processor

__all__ = ["KafkaMessage", "ProcessedBatch", "Processor", "Rejected", "process_batch"]
