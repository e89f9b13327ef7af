"""Shared helpers for the API and viewer tests: settings and client fixtures, tokens, events, rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from auditstream.api.app import create_app
from auditstream.api.formats import CSV_COLUMNS
from auditstream.api.keys import KeyStore, Role
from auditstream.config import Settings
from auditstream.events.model import AuditEvent
from auditstream.events.stored import enrich
from auditstream.store import Store


def make_settings(data: Path, dsn: str, database: str, **extra: Any) -> Settings:
    return Settings(
        data_dir=data,
        keys_path=data / "keys.sqlite3",
        clickhouse_dsn=dsn,
        clickhouse_database=database,
        **extra,
    )


def make_tokens(settings: Settings, tenants: tuple[str, ...]) -> dict[str, str]:
    keys = KeyStore(settings.resolved_keys_path)
    return {
        f"{t}:{role.value}": keys.create(t, role, f"test {role.value}").token
        for t in tenants
        for role in Role
    }


def settings_fixture(name: str, **extra: Any) -> Any:
    """A module-scoped ``settings`` fixture: ``make_settings`` in a tmp folder of the module's own.

    Use it as ``settings = settings_fixture("name", **extra)`` in the test module.
    """

    @pytest.fixture(scope="module")
    def settings(
        tmp_path_factory: pytest.TempPathFactory, clickhouse_dsn: str, clickhouse_database: str
    ) -> Settings:
        """The module's settings, its data in a tmp folder of its own (``settings_fixture``)."""
        return make_settings(tmp_path_factory.mktemp(name), clickhouse_dsn, clickhouse_database, **extra)

    return settings


def client_for(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        yield c


def signed_in_client(settings: Settings, store: Store, token: str) -> Iterator[TestClient]:
    """``client_for``, signed in to the viewer with ``token`` (the session cookie is kept)."""
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        sign_in(c, token)
        yield c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def sign_in(client: TestClient, token: str) -> str:
    """Signs in to the viewer through its form; the ``Set-Cookie`` header of the session."""
    page = client.get("/signin")
    response = client.post(
        "/signin",
        data={"api_key": token, "csrf_token": csrf_of(page.text), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return response.headers["set-cookie"]


def auth(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(tenant: str, action: str, actor_id: str, at: datetime, **extra: Any) -> AuditEvent:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "occurred_at": iso(at),
        "action": action,
        "actor": {"id": actor_id, "type": "user", **extra.pop("actor", {})},
        **extra,
    }
    return AuditEvent.model_validate_json(orjson.dumps(body))


def row(e: AuditEvent, offset: int, partition: int = 0, received_at: datetime | None = None) -> tuple:
    return enrich(
        e,
        topic="audit.events",
        partition=partition,
        offset=offset,
        received_at=received_at or datetime.now(UTC),
    )


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_record(event: dict[str, Any]) -> list[str]:
    """The former Python encoder's fields of one event (API JSON shape), in CSV_COLUMNS order.

    Text fields that a spreadsheet would run as a formula get a leading ``'`` (OWASP).
    """
    return [
        "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES) and kind == "text" else v
        for v, kind in _csv_fields(event)
    ]


def _csv_fields(event: dict[str, Any]) -> list[tuple[str, str]]:
    record: list[tuple[str, str]] = []
    for column in CSV_COLUMNS:
        value: Any = event
        for part in column.split("."):
            value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                break
        if value is None:
            record.append(("", "text"))
        elif isinstance(value, str):
            record.append((value, "text"))
        elif isinstance(value, bool):
            record.append(("true" if value else "false", "text"))
        elif isinstance(value, int | float):
            record.append((str(value), "number"))
        else:
            record.append((orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode(), "text"))
    return record
