"""A read refused for its values is the caller's fault (QueryRejected), an outage never is.

Issue 9: an events cursor dated in year 1 reached ClickHouse as a DateTime64 parameter,
the engine answered BAD_QUERY_PARAMETER (457), and the API said 503 "store unavailable",
sending the client retrying a request that can never succeed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from auditstream.store import EventFilter, QueryRejected, Store, StoreRejected, StoreUnavailable
from auditstream.store.errors import classify
from tests.store.conftest import unique_tenant

pytestmark = pytest.mark.clickhouse


def test_unrepresentable_date_parameter_is_query_rejected(store: Store) -> None:
    f = EventFilter(
        tenant_id=unique_tenant(),
        since=datetime(1, 1, 1, tzinfo=UTC),
        until=datetime(1, 1, 2, tzinfo=UTC),
    )
    with pytest.raises(QueryRejected) as info:
        store.query_events(f, limit=10)
    assert isinstance(info.value, StoreRejected)


def _db_error(code: int) -> DatabaseError:
    exc = DatabaseError(f"Code: {code}. DB::Exception: something")
    exc.code = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize("code", [36, 43, 457, 456, 41, 321])
def test_argument_and_value_codes_of_a_read_are_query_rejected(code: int) -> None:
    assert isinstance(classify(_db_error(code), query=True), QueryRejected)


@pytest.mark.parametrize("code", [36, 43, 457])
def test_the_same_codes_on_an_insert_stay_as_before(code: int) -> None:
    # The processor's split is unchanged: only reads opt in (never DLQ valid events).
    assert not isinstance(classify(_db_error(code), encoding=True), QueryRejected)


@pytest.mark.parametrize("code", [159, 202, 209, 210, 241, 999, 123456, None])
def test_an_outage_is_never_a_client_error(code: int | None) -> None:
    exc = _db_error(code) if code is not None else OperationalError("connection refused")
    assert isinstance(classify(exc, query=True), StoreUnavailable)
    assert isinstance(classify(ConnectionError("reset"), query=True), StoreUnavailable)
