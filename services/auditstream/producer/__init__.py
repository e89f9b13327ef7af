"""The Python SDK: validate audit events and publish them to Kafka.

``AuditProducer`` for asyncio code, ``SyncAuditProducer`` for everything else::

    from auditstream.producer import SyncAuditProducer

    with SyncAuditProducer() as producer:
        producer.emit({"occurred_at": "2026-03-10T10:13:21Z", "tenant_id": "acme",
                       "action": "user.login", "actor": {"id": "u-42"}})

An invalid event raises ``auditstream.events.validation.InvalidEvent`` naming the
field, and is never sent.
"""

from auditstream.producer.errors import (
    BrokerUnavailable,
    DeliveryFailed,
    ProducerClosed,
    ProducerError,
    SpoolFull,
)
from auditstream.producer.producer import AuditProducer, EncodedEvent, encode_event
from auditstream.producer.sync import SyncAuditProducer

__all__ = [
    "AuditProducer",
    "BrokerUnavailable",
    "DeliveryFailed",
    "EncodedEvent",
    "ProducerClosed",
    "ProducerError",
    "SpoolFull",
    "SyncAuditProducer",
    "encode_event",
]
