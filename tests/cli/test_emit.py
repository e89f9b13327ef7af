"""``auditstream emit`` and ``auditstream demo`` through typer's CliRunner against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from auditstream.cli.main import app
from auditstream.demo.generator import generate_events
from tests.fixtures.kafka import Topics
from tests.producer.test_producer import consume

pytestmark = pytest.mark.kafka

runner = CliRunner()


def _ndjson(tmp_path: Path, n: int, *, broken_line: int | None = None) -> Path:
    end = datetime.now(UTC)
    lines = [
        orjson.dumps(e)
        for e in generate_events(
            n, tenants=["acme", "globex"], seed=8, start=end - timedelta(hours=2), end=end
        )
    ]
    if broken_line is not None:
        bad = orjson.loads(lines[broken_line - 1])
        del bad["actor"]["id"]
        lines[broken_line - 1] = orjson.dumps(bad)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _ids(output: str) -> list[str]:
    out = []
    for line in output.splitlines():
        try:
            out.append(str(uuid.UUID(line.strip())))
        except ValueError:
            continue
    return out


def test_emit_file(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    path = _ndjson(tmp_path, 8)
    result = runner.invoke(
        app, ["emit", "--file", str(path), "--bootstrap", kafka_bootstrap, "--topic", topics.events]
    )
    assert result.exit_code == 0, result.output
    assert "emitted 8 event(s)" in result.output
    ids = _ids(result.output)
    assert len(ids) == 8
    records = asyncio.run(consume(kafka_bootstrap, topics.events, 8))
    assert sorted(orjson.loads(r.value)["event_id"] for r in records if r.value) == sorted(ids)


def test_emit_argument_and_stdin(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    one = orjson.dumps(next(generate_events(1, tenants=["acme"], seed=1))).decode()
    result = runner.invoke(app, ["emit", one, "--bootstrap", kafka_bootstrap, "--topic", topics.events])
    assert result.exit_code == 0, result.output
    path = _ndjson(tmp_path, 3)
    result = runner.invoke(
        app,
        ["emit", "--file", "-", "--bootstrap", kafka_bootstrap, "--topic", topics.events],
        input=path.read_bytes(),
    )
    assert result.exit_code == 0, result.output
    assert "emitted 3 event(s)" in result.output
    assert len(asyncio.run(consume(kafka_bootstrap, topics.events, 4))) == 4


def test_invalid_line_exits_2_naming_line_and_field_and_sends_nothing(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    path = _ndjson(tmp_path, 6, broken_line=4)
    args = ["emit", "--file", str(path), "--bootstrap", kafka_bootstrap, "--topic", topics.events]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "line 4" in result.output and "actor.id" in result.output
    assert "nothing sent" in result.output

    # --skip-invalid sends the other five; nothing of the first attempt is on the topic.
    result = runner.invoke(app, [*args, "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "line 4" in result.output and "emitted 5 event(s)" in result.output
    assert len(asyncio.run(consume(kafka_bootstrap, topics.events, 5))) == 5


def test_demo_command(kafka_bootstrap: str, topics: Topics) -> None:
    result = runner.invoke(
        app,
        ["demo", "--events", "300", "--tenants", "acme,globex,initech", "--malformed", "19",
         "--bootstrap", kafka_bootstrap, "--topic", topics.events, "--no-create-topics"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "emitted 300 events" in result.output and "wrote 19 malformed" in result.output
    records = asyncio.run(consume(kafka_bootstrap, topics.events, 319))
    assert len(records) == 319
