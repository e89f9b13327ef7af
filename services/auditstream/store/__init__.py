"""ClickHouse storage of audit events (clickhouse-connect; chDB in-process or a server).

Public surface: ``Store``, ``EventFilter``/``build_where``, ``EventExport`` (exports
encoded by ClickHouse), ``apply_migrations`` and the error tree in ``errors``.
"""

from auditstream.store.errors import (
    MigrationError,
    QueryRejected,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from auditstream.store.export import EventExport
from auditstream.store.filters import EventFilter, build_where
from auditstream.store.migrations import apply_migrations
from auditstream.store.store import Store

__all__ = [
    "EventExport",
    "EventFilter",
    "MigrationError",
    "QueryRejected",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "apply_migrations",
    "build_where",
]
