"""auditstream: an event-streaming audit log pipeline.

Services emit audit events to Kafka (``producer``), a faust-streaming worker
validates, enriches and batches them into ClickHouse (``processor`` and
``store``), and a FastAPI service serves analysts and SIEMs (``api``). The
event contract shared by all of them lives in ``events``.
"""

__version__ = "0.1.0"
