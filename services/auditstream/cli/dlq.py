"""``auditstream dlq list | show | replay``: inspect the dead-letter topic, replay after a fix.

A record is named by its DLQ position ``PARTITION:OFFSET`` as ``list`` prints it (a
bare ``OFFSET`` is accepted when only one partition has it). The broker and topics
come from the settings (``AUDITSTREAM_KAFKA_BOOTSTRAP``, ``AUDITSTREAM_DLQ_TOPIC``,
``AUDITSTREAM_TOPIC``). Everything printed from a record goes through
:func:`~auditstream.cli.terminal.escape_controls`: a hostile payload cannot drive
the terminal.

``replay`` validates every record first (the processor's ``parse_event``) and sends
nothing unless all are valid; each replayed record keeps its identity (see
:mod:`auditstream.processor.dlq_reader`) and is followed by a ``dlq.replayed`` event
in its tenant (actor ``cli``, ``source.service`` ``auditstream-cli``).

Exit codes: 0 done, 1 a record could not be replayed (still invalid, truncated, not
found), 2 bad usage or the broker is unavailable.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import orjson
import typer

from auditstream.cli.terminal import escape_controls

if TYPE_CHECKING:
    from auditstream.config import Settings
    from auditstream.processor.dlq_reader import DlqRecord

__all__ = ["app"]

EXIT_NOT_REPLAYED = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="dlq", help="Inspect the dead-letter topic and replay fixed records.", no_args_is_help=True
)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {escape_controls(message)}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    from auditstream.config import Settings

    return Settings()


def _run(coro):  # type: ignore[no-untyped-def]
    """Run one broker call; its errors become exit codes (2 broker, 1 record)."""
    from auditstream.processor.dlq_reader import DlqError, DlqUnavailable, NotReplayable, RecordNotFound

    try:
        return asyncio.run(coro)
    except DlqUnavailable as exc:
        _fail(str(exc), EXIT_USAGE)
    except (RecordNotFound, NotReplayable) as exc:
        _fail(str(exc), EXIT_NOT_REPLAYED)
    except DlqError as exc:  # an ambiguous position: the operator must name the partition
        _fail(str(exc), EXIT_USAGE)


def _line(record: DlqRecord) -> str:
    source = record.source
    where = f"{source[0]}/{source[1]}/{source[2]}" if source else "-"
    return escape_controls(
        f"{record.position:<10} {record.rejected_at[:23]:<23} {where:<34} "
        f"{record.tenant_id or '-':<16} {record.reason}"
    )


@app.command("list")
def list_records(
    since: Annotated[str | None, typer.Option(help="Rejected since: RFC 3339 or relative (-24h).")] = None,
    reason: Annotated[str | None, typer.Option(help="Only reasons containing this text.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (the most recent).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line.")] = False,
) -> None:
    """Dead letters: position, time, source position, tenant, reason."""
    from auditstream.api.timeparse import parse_time
    from auditstream.processor.dlq_reader import read_records

    settings = _settings()
    since_at = None
    if since is not None:
        try:
            since_at = parse_time(since, now=datetime.now(UTC))
        except ValueError as exc:
            _fail(f"--since: {exc}", EXIT_USAGE)
    records = _run(
        read_records(
            settings.kafka_bootstrap,
            settings.dlq_topic,
            since=since_at,
            reason=reason,
            limit=limit,
            max_fetch_bytes=settings.max_message_bytes,
        )
    )
    if as_json:
        for record in records:
            typer.echo(escape_controls(orjson.dumps(record.as_dict()).decode()))
        return
    typer.echo(f"{'POSITION':<10} {'REJECTED_AT':<23} {'SOURCE':<34} {'TENANT':<16} REASON")
    for record in records:
        typer.echo(_line(record))
    typer.echo(f"{len(records)} record(s) in {settings.dlq_topic}", err=True)


def _fetch(settings: Settings, position: str) -> DlqRecord:
    from auditstream.processor.dlq_reader import fetch_record, parse_position, resolve_position

    try:
        partition, offset = parse_position(position)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)

    async def get() -> DlqRecord:
        p, o = await resolve_position(settings.kafka_bootstrap, settings.dlq_topic, partition, offset)
        return await fetch_record(
            settings.kafka_bootstrap, settings.dlq_topic, p, o, max_fetch_bytes=settings.max_message_bytes
        )

    record: DlqRecord = _run(get())
    return record


@app.command("show")
def show(
    position: Annotated[str, typer.Argument(help="PARTITION:OFFSET in the DLQ (as `dlq list` prints).")],
    as_json: Annotated[bool, typer.Option("--json", help="The record as one JSON document.")] = False,
) -> None:
    """One dead letter: where it came from, why it was rejected, and its original payload."""
    settings = _settings()
    record = _fetch(settings, position)
    if as_json:
        typer.echo(escape_controls(orjson.dumps(record.as_dict(payload=True)).decode()))
        return
    doc = record.as_dict(payload=True)
    source = record.source
    lines = [
        f"position     {settings.dlq_topic} {record.position}",
        f"rejected_at  {record.rejected_at}",
        f"source       {f'{source[0]} partition {source[1]} offset {source[2]}' if source else '-'}",
        f"tenant       {record.tenant_id or '-'}",
        f"reason       {record.reason}",
        "errors:",
        *(
            f"  {e.get('field') or '(event)'}: {e.get('message')} [{e.get('type')}]"
            if isinstance(e, dict)
            else f"  {e}"
            for e in record.errors
        ),
        f"payload ({doc['size']} bytes{', TRUNCATED' if record.truncated else ''}):",
    ]
    for line in lines:
        typer.echo(escape_controls(line))
    # The payload may hold newlines of its own: escaped too, so it is one inert line.
    typer.echo("  " + escape_controls(doc["payload"] if doc["payload"] is not None else "(none)"))


@app.command("replay")
def replay(
    positions: Annotated[list[str], typer.Argument(help="PARTITION:OFFSET of each record to replay.")],
    edit: Annotated[
        Path | None,
        typer.Option(
            "--edit", help="Replay this file's content (one JSON event) instead of the original payload."
        ),
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="Replay to this topic (default AUDITSTREAM_TOPIC).")
    ] = None,
) -> None:
    """Re-publish dead letters to the input topic (as they were, or fixed with --edit); audited."""
    from auditstream.api import audit_trail
    from auditstream.processor.dlq_reader import NotReplayable, prepare_replay, publish

    if edit is not None and len(positions) != 1:
        _fail("--edit replaces the payload of ONE record: give exactly one position", EXIT_USAGE)
    payload = None
    if edit is not None:
        try:
            payload = edit.read_bytes().strip()
        except OSError as exc:
            _fail(f"--edit: cannot read {edit}: {exc.strerror}", EXIT_USAGE)
    settings = _settings()
    target = topic or settings.topic
    replays = []
    problems = []
    for position in positions:
        record = _fetch(settings, position)
        try:
            replays.append(prepare_replay(record, payload))
        except NotReplayable as exc:
            problems.append(str(exc))
    if problems:
        for problem in problems:
            typer.echo(f"error: {escape_controls(problem)}", err=True)
        _fail(f"nothing replayed: {len(problems)} of {len(positions)} record(s) cannot be", EXIT_NOT_REPLAYED)
    records: list[tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]] = []
    for r in replays:
        # The replayed event as a plain Kafka record: the processor stores it as channel kafka.
        records.append((r.tenant_id.encode(), r.value, ()))
        audit = audit_trail.dlq_replay_event(
            r.tenant_id,
            dlq_topic=settings.dlq_topic,
            dlq_partition=r.record.partition,
            dlq_offset=r.record.offset,
            event_id=r.event_id,
            replayed_to=target,
            edited=r.edited,
            source=r.record.source,
        )
        encoded = audit_trail.internal_record(settings, audit)
        # Same key, same partition: the audit event follows the event it speaks of.
        records.append((encoded.key, encoded.value, encoded.headers))
    _run(publish(settings.kafka_bootstrap, target, records))
    for r in replays:
        typer.echo(
            escape_controls(f"replayed {r.record.position} as event {r.event_id} (tenant {r.tenant_id})")
        )
