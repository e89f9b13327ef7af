"""DSN -> clickhouse-connect client, one per thread.

The DSN is the only seam between environments: ``chdb:///abs/path`` runs the real
ClickHouse engine in-process (chDB), ``http://user:pass@host:8123`` talks to a server.
Both speak the same SQL, so nothing above this module knows which one it has.

Why one client per thread: a chDB client owns one engine handle whose calls are
serialised by a lock, and an HTTP client carries a session; sharing one between the
API's thread pool and the processor would queue every query behind the current insert.
"""

from __future__ import annotations

__all__ = ["ClientPool", "create_client", "insert_releasing", "known_settings", "validate_identifier"]

import contextlib
import re
import threading
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def validate_identifier(name: str) -> str:
    """Return ``name`` if it is a plain ClickHouse identifier, else raise ``ValueError``.

    Database names are the one thing that cannot be a query parameter, so they are
    checked here and only ever interpolated after this check.
    """
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid ClickHouse identifier: {name!r}")
    return name


def create_client(dsn: str) -> Client:
    """Open a new client for ``dsn``.

    ``tz_mode="aware"`` makes every DateTime64 come back as an aware UTC datetime, so
    callers never have to guess the zone of a naive value.
    """
    options: dict[str, Any] = {"tz_mode": "aware"}
    if not dsn.startswith("chdb:"):
        # No server-side session: nothing here relies on session state (no temporary
        # tables, no SET), and without a session id concurrent queries never collide.
        options.update(autogenerate_session_id=False, connect_timeout=5, send_receive_timeout=60)
    return clickhouse_connect.get_client(dsn=dsn, **options)


def insert_releasing(client: Client, table: str, data: Sequence[Any], **options: Any) -> None:
    """``client.insert(table, data, **options)``, releasing the rows as soon as it returns.

    clickhouse-connect's ``InsertContext`` is in a reference cycle (it keeps a bound method
    of itself), so whatever it references is freed only by a collection of the generation
    it has reached, not when the insert returns. Given the caller's rows, it kept every
    batch alive until the processor's next older-generation collection, which then walked
    them all (measured, 500,000 events: two such collections freed 325,333 and 361,076
    objects and took 0.72 and 0.81 s of CPU; bench/RESULTS.md). So the context gets a list
    of its own, emptied afterwards: the rows go when their last other reference does.
    """
    own = list(data)
    try:
        client.insert(table, own, **options)
    finally:
        own.clear()


def known_settings(client: Client, wanted: dict[str, Any]) -> dict[str, Any]:
    """The part of ``wanted`` (query settings) that this engine lists in ``system.settings``.

    A server refuses a query naming a setting it does not have, so a setting newer than
    the oldest supported server must be dropped there rather than sent.
    """
    rows = client.query(
        "SELECT name FROM system.settings WHERE name IN {names:Array(String)}",
        parameters={"names": list(wanted)},
    ).result_rows
    names = {row[0] for row in rows}
    return {name: value for name, value in wanted.items() if name in names}


class ClientPool:
    """Lazily creates one client per thread for one DSN and closes them all on ``close()``."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[Client] = []
        self._closed = False

    def get(self) -> Client:
        """The calling thread's client, created on first use."""
        client: Client | None = getattr(self._local, "client", None)
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise RuntimeError("client pool is closed")
            client = create_client(self.dsn)
            self._clients.append(client)
        self._local.client = client
        return client

    def close(self) -> None:
        """Close every client this pool created, from whichever thread created it."""
        with self._lock:
            clients, self._clients = self._clients, []
            self._closed = True
        for client in clients:
            # Closing is best effort: the engine or server may already be gone.
            with contextlib.suppress(Exception):
                client.close()
        self._local = threading.local()
