"""``auditstream emit``: publish audit events from the command line.

Examples::

    auditstream emit '{"occurred_at": "2026-03-10T10:13:21Z", "tenant_id": "acme",
                       "action": "scan.initiated", "actor": {"id": "u-42"}}'
    auditstream emit --file events.ndjson
    generate-events | auditstream emit --file -

Every event is validated before anything is sent: one invalid line aborts the
whole run (exit code 2, naming the line and the field), so a half-sent file
never has to be cleaned up — unless ``--skip-invalid`` is given, which reports
the invalid lines and sends the rest. Heavy imports are inside the command so
``auditstream --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

EXIT_INVALID = 2
EXIT_DELIVERY = 1
# Above this many ids, print the first and last few instead of all of them.
IDS_SHOWN = 10


def emit(
    events: Annotated[
        list[str] | None,
        typer.Argument(help="Event(s) as JSON objects; omit when using --file.", show_default=False),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="NDJSON file, one event per line ('-' reads standard input)."),
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Report invalid events and send the valid ones.")
    ] = False,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers [default: AUDITSTREAM_KAFKA_BOOTSTRAP]")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Topic [default: AUDITSTREAM_TOPIC]")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker to answer.")] = 30.0,
) -> None:
    """Validate audit events and publish them to Kafka; print their event ids."""
    from auditstream.config import Settings

    if (file is None) == (not events):
        raise typer.BadParameter("give the event(s) as arguments or --file, not both or neither")
    settings = Settings()
    bootstrap = bootstrap or settings.kafka_bootstrap
    topic = topic or settings.topic

    if file is not None:
        source = "stdin" if file == "-" else file
        lines: Iterable[bytes] = _read_lines(file)
        label = "line"
    else:
        source = "arguments"
        lines = [e.encode() for e in events or []]
        label = "argument"

    valid, invalid = _validate(lines)
    for number, reason in invalid:
        typer.echo(f"{source}: {label} {number}: invalid event: {reason}", err=True)
    if invalid and not skip_invalid:
        typer.echo(
            f"{len(invalid)} invalid event(s); nothing sent (use --skip-invalid to send the others)", err=True
        )
        raise typer.Exit(EXIT_INVALID)
    if not valid:
        typer.echo("no events to send", err=True)
        raise typer.Exit(EXIT_INVALID if invalid else 0)

    try:
        ids = asyncio.run(_send(valid, bootstrap, topic, timeout))
    except Exception as exc:  # BrokerUnavailable, DeliveryFailed: report, do not dump a traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_DELIVERY) from None

    skipped = f" ({len(invalid)} invalid skipped)" if invalid else ""
    typer.echo(f"emitted {len(ids)} event(s) to {topic}{skipped}")
    for line in _summarise(ids):
        typer.echo(line)


def _read_lines(file: str) -> list[bytes]:
    if file == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    else:
        path = Path(file)
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {file}", param_hint="--file")
        data = path.read_bytes()
    return data.splitlines()


def _validate(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Check every line (numbered from 1; blank lines are skipped but counted).

    A valid line is kept as the JSON object the user wrote (the producer adds
    ``event_id`` when missing); ``parse_event`` is the check the processor applies.
    """
    from auditstream.events.validation import InvalidEvent, parse_event

    valid: list[dict[str, Any]] = []
    invalid: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            parse_event(raw)
            valid.append(orjson.loads(raw))
        except InvalidEvent as exc:
            invalid.append((number, exc.reason))
    return valid, invalid


async def _send(
    events: Sequence[dict[str, Any]], bootstrap: str, topic: str, broker_wait: float
) -> list[uuid.UUID]:
    from auditstream.producer import AuditProducer

    async with AuditProducer(bootstrap=bootstrap, topic=topic, start_timeout=broker_wait) as producer:
        ids = [await producer.emit(event) for event in events]
        await producer.flush()  # acknowledged before we print "emitted"
    return ids


def _summarise(ids: Sequence[uuid.UUID]) -> list[str]:
    if len(ids) <= IDS_SHOWN:
        return [str(i) for i in ids]
    head, tail = ids[:3], ids[-3:]
    return [*map(str, head), f"... {len(ids) - 6} more ...", *map(str, tail)]
