"""Property-based run of the app's OpenAPI schema (schemathesis): no input gives a 5xx.

Runs against the ASGI app in process with a valid admin key, bounded to a few
examples per operation so the whole run stays well under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from auditstream.api.app import create_app
from auditstream.api.keys import KeyStore, Role
from auditstream.config import Settings
from auditstream.store import Store
from tests.api.jobkit import api_settings, insert_events, make_event
from tests.fixtures.kafka import new_topics

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]

MAX_EXAMPLES = 8


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
    clickhouse_dsn: str,
    clickhouse_database: str,
    kafka_bootstrap: str,
) -> Iterator[tuple[TestClient, str]]:
    cfg: Settings = api_settings(
        tmp_path_factory.mktemp("schemathesis"),
        clickhouse_dsn,
        clickhouse_database,
        kafka_bootstrap,
        new_topics(kafka_bootstrap).events,
    )
    store = Store(cfg.resolved_clickhouse_dsn, cfg.clickhouse_database)
    store.open()
    insert_events(store, [make_event("acme", n) for n in range(50)])
    token = KeyStore(cfg.resolved_keys_path).create("acme", Role.ADMIN, "schemathesis").token
    app = create_app(cfg, store)
    with TestClient(app) as client:  # runs the lifespan: job runner and publisher
        yield client, token
    store.close()


def test_no_input_gives_a_server_error(env: tuple[TestClient, str]) -> None:
    client, token = env
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    calls = [0]
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        if operation.path == "/v1/live":
            continue  # a stream: covered by its own tests and test_security (bounded max_seconds)

        strategy = operation.as_strategy()

        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            calls[0] += 1
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except AssertionError as exc:
                failures.append(f"{case.method} {case.path}: {exc}")
                raise

        try:
            check()
        except Exception as exc:  # collect every operation's failure before failing
            failures.append(f"{operation.method.upper()} {operation.path}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures[:10])
    assert calls[0] >= 5 * len(operations) // 2, calls  # the run really exercised the operations
