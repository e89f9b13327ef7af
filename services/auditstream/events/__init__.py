"""The v1 audit event contract: schema, model, validation, enrichment into a stored row.

Pure Python, no I/O beyond reading the JSON Schema file: the processor, the
producer SDK, the HTTP ingest and the API all import from here so that one
definition of "a valid event" and one row layout exist.
"""

from auditstream.events.catalog import categorize, severity
from auditstream.events.ids import uuid7
from auditstream.events.model import Actor, ActorType, AuditEvent, Change, Outcome, Resource, Source
from auditstream.events.redaction import REDACTED, redact_changes, redact_details
from auditstream.events.schema import load_json_schema
from auditstream.events.stored import COLUMNS, enrich, row_to_event
from auditstream.events.validation import (
    MAX_EVENT_BYTES,
    FieldError,
    InvalidEvent,
    parse_event,
    validate_event,
)

__all__ = [
    "COLUMNS",
    "MAX_EVENT_BYTES",
    "REDACTED",
    "Actor",
    "ActorType",
    "AuditEvent",
    "Change",
    "FieldError",
    "InvalidEvent",
    "Outcome",
    "Resource",
    "Source",
    "categorize",
    "enrich",
    "load_json_schema",
    "parse_event",
    "redact_changes",
    "redact_details",
    "row_to_event",
    "severity",
    "uuid7",
    "validate_event",
]
