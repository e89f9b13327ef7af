"""The viewer's histogram without a browser, on the real store (chDB): every bar inside the chart.

The chart's axis covers whole buckets, from the start of the one holding ``since`` to the
end of the one holding ``until``. When it ended at ``until`` (now), the current bucket,
which starts at the last full hour or midnight, was drawn from there onwards and mostly
right of the chart: out of sight, and out of reach of a click (the browser test caught it
at 01:23 UTC, when today's bar had 1.4 of its 24 hours inside the chart).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from auditstream.config import Settings
from auditstream.store import Store
from tests.api._support import event, iso, make_tokens, row, settings_fixture, signed_in_client

pytestmark = pytest.mark.clickhouse

A = "acme"
# The chart's window is given absolutely, so which bucket is the current one does not depend
# on the clock while the test runs: it ends a minute after the newest event, at half past an
# hour, so the newest event is in the bucket holding `until` (for hours and for days).
NEWEST = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(hours=2)
UNTIL = NEWEST + timedelta(minutes=1)
VIEWBOX_WIDTH = 1000.0
_RECT = re.compile(
    r'<rect class="bar" x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" data-count="(\d+)"'
)


settings = settings_fixture("histogram")


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    # One event now (the current hour and day) and some in each of the days and hours before.
    ages = [timedelta(0)] + [timedelta(hours=h) for h in (1, 2, 5, 20, 30, 50, 70, 100, 140)]
    events = [event(A, "user.login", f"u{i}", NEWEST - age) for i, age in enumerate(ages)]
    store.insert_rows([row(e, offset=i) for i, e in enumerate(events)])
    yield from signed_in_client(settings, store, make_tokens(settings, (A,))[f"{A}:reader"])


def bars(client: TestClient, span: timedelta) -> list[tuple[float, float, int]]:
    response = client.get("/ui/histogram", params={"since": iso(UNTIL - span), "until": iso(UNTIL)})
    assert response.status_code == 200, response.text
    found = [(float(x), float(w), int(n)) for x, w, n in _RECT.findall(response.text)]
    assert found, response.text
    return found


@pytest.mark.parametrize(("span", "events"), [(timedelta(hours=24), 5), (timedelta(days=7), 10)])
def test_every_bar_is_drawn_whole_inside_the_chart(client: TestClient, span: timedelta, events: int) -> None:
    drawn = bars(client, span)  # 24 hours: per hour; 7 days: per day
    assert sum(n for _, _, n in drawn) == events
    for x, width, _ in drawn:
        assert x >= 0 and x + width <= VIEWBOX_WIDTH, f"bar at {x} + {width} outside the chart"
    # The bucket holding `until` (the newest event's) is the last bar and ends at the chart's edge.
    x, width, _ = max(drawn)
    assert x + width == pytest.approx(VIEWBOX_WIDTH - 1, abs=0.02)
