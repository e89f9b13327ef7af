"""``auditstream query | export | tail``: the API from the command line.

The key comes from ``AUDITSTREAM_API_KEY`` (never an option: command lines end up
in shell history and ``ps``); ``--url``, else the ``AUDITSTREAM_API_URL`` setting
(environment or ``.env``; default ``http://{AUDITSTREAM_API_HOST}:{AUDITSTREAM_API_PORT}``)
picks the server. Filters are those of ``GET /v1/events``.

Everything printed that comes from events or the server goes through
:func:`~auditstream.cli.terminal.escape_controls`: a hostile event cannot drive the
analyst's terminal.

Exit status: 0 done, 1 the server or the network failed, 2 a bad request (the
server's message, naming the parameter, goes to stderr). Ctrl-C ends ``tail``
with 0.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer

from auditstream.cli.terminal import escape_controls
from auditstream.private_fs import open_private

__all__ = ["export", "query", "tail"]

_POLL_SECONDS = 0.3

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", help="API base URL (default: the AUDITSTREAM_API_URL setting, http://127.0.0.1:8000)."
    ),
]
SinceOpt = Annotated[str | None, typer.Option(help="RFC 3339 or relative (-24h).")]
UntilOpt = Annotated[str | None, typer.Option(help="RFC 3339 or relative; default now.")]
ActorOpt = Annotated[list[str] | None, typer.Option("--actor", help="Actor id (repeatable).")]
ActionOpt = Annotated[
    list[str] | None, typer.Option("--action", help="Action or prefix config.* (repeatable).")
]
ResTypeOpt = Annotated[str | None, typer.Option("--resource-type")]
ResIdOpt = Annotated[str | None, typer.Option("--resource-id")]
OutcomeOpt = Annotated[str | None, typer.Option("--outcome", help="success | failure | unknown")]
IpOpt = Annotated[str | None, typer.Option("--ip", help="Address or CIDR.")]
TextOpt = Annotated[str | None, typer.Option("--q", help="Free text.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Admin keys: another tenant.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {escape_controls(message)}", err=True)
    raise typer.Exit(code)


def _api_url(url: str | None) -> str:
    """``--url``, else the ``api_url`` setting (read from the environment and ``.env``)."""
    if url:
        return url.rstrip("/")
    from auditstream.config import Settings

    return Settings().resolved_api_url


def _line(event: dict[str, Any], as_json: bool) -> str:
    """One event as printed: a JSON line or a table row, control characters escaped."""
    return escape_controls(orjson.dumps(event).decode() if as_json else _row(event))


def _client(url: str, timeout: float | None = 60.0) -> httpx.Client:
    key = os.environ.get("AUDITSTREAM_API_KEY", "").strip()
    if not key:
        _fail("set AUDITSTREAM_API_KEY to an API key (auditstream keys create ...)", 2)
    return httpx.Client(
        base_url=url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}", "User-Agent": "auditstream-cli"},
        timeout=httpx.Timeout(timeout, connect=10.0),
    )


def _unreachable(url: str, exc: httpx.HTTPError) -> NoReturn:
    _fail(f"{url}: {type(exc).__name__}: {exc}")


def _check(response: httpx.Response) -> None:
    if response.is_success:
        return
    if not response.is_stream_consumed:
        response.read()
    try:
        err = response.json()["error"]
        message = err["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300] or response.reason_phrase
    _fail(f"{response.status_code}: {message}", 2 if 400 <= response.status_code < 500 else 1)


def _filters(
    since: str | None,
    until: str | None,
    actor: list[str] | None,
    action: list[str] | None,
    resource_type: str | None,
    resource_id: str | None,
    outcome: str | None,
    ip: str | None,
    q: str | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "since": since,
        "until": until,
        "actor": actor or None,
        "action": action or None,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "outcome": outcome,
        "ip": ip,
        "q": q,
    }
    return {k: v for k, v in values.items() if v is not None}


def _row(event: dict[str, Any]) -> str:
    resource = event.get("resource") or {}
    res = f"{resource.get('type') or ''}:{resource.get('id') or ''}" if resource else "-"
    return (
        f"{event.get('occurred_at', ''):<25} {event.get('action', ''):<28} "
        f"{(event.get('actor') or {}).get('id', ''):<24} {event.get('outcome', ''):<8} {res}"
    )


_HEADER = f"{'OCCURRED_AT':<25} {'ACTION':<28} {'ACTOR':<24} {'OUTCOME':<8} RESOURCE"


def query(
    url: UrlOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    resource_type: ResTypeOpt = None,
    resource_id: ResIdOpt = None,
    outcome: OutcomeOpt = None,
    ip: IpOpt = None,
    q: TextOpt = None,
    tenant: TenantOpt = None,
    order: Annotated[str, typer.Option(help="desc (newest first) or asc.")] = "desc",
    limit: Annotated[int, typer.Option(min=1, help="At most this many events (follows pages).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check each event's inclusion proof against a signed checkpoint.")
    ] = False,
    key: Annotated[
        str | None, typer.Option(help="With --verify: the verifier key (default: the server's, less proof).")
    ] = None,
) -> None:
    """Query events (GET /v1/events) and print a table, or NDJSON with --json."""
    url = _api_url(url)
    params = _filters(since, until, actor, action, resource_type, resource_id, outcome, ip, q)
    params["order"] = order
    if tenant:
        params["tenant"] = tenant
    shown = 0
    printed: list[dict[str, Any]] | None = [] if verify else None
    code = 0
    try:
        shown = _query_pages(url, params, limit, as_json, printed)
        if printed is not None:
            from auditstream.cli.integrity import verify_printed

            with _client(url) as client:
                code = verify_printed(client, printed, key, tenant)
    except httpx.HTTPError as exc:
        _unreachable(url, exc)
    if not as_json:
        typer.echo(f"{shown} event(s)", err=True)
    if printed is not None and code:
        raise typer.Exit(code)


def _query_pages(
    url: str, params: dict[str, Any], limit: int, as_json: bool, printed: list[dict[str, Any]] | None = None
) -> int:
    shown = 0
    cursor: str | None = None
    with _client(url) as client:
        if not as_json:
            typer.echo(_HEADER)
        while shown < limit:
            page_params = {
                **params,
                "limit": min(limit - shown, 1000),
                **({"cursor": cursor} if cursor else {}),
            }
            r = client.get("/v1/events", params=page_params)
            _check(r)
            page = r.json()
            for event in page["data"]:
                typer.echo(_line(event, as_json))
                if printed is not None:
                    printed.append(event)
            shown += len(page["data"])
            cursor = page.get("next_cursor")
            if not cursor or not page["data"]:
                break
    return shown


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _download(client: httpx.Client, path: str, params: dict[str, Any], output: Path) -> int:
    """Stream ``path`` into ``output`` (via a .part file); return the bytes written."""
    part = output.with_name(output.name + ".part")
    written = 0
    with client.stream("GET", path, params=params) as r:
        _check(r)
        declared = r.headers.get("content-length")
        total = int(declared) if declared and "content-encoding" not in r.headers else None
        # 0600 like the server's export files: an export is a copy of the audit log.
        with _progress() as progress, open_private(part) as out:
            task = progress.add_task(f"downloading {output.name}", total=total)
            for data in r.iter_bytes():
                out.write(data)
                written += len(data)
                progress.update(task, advance=len(data))
    part.replace(output)
    return written


def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    url: UrlOpt = None,
    format: Annotated[str, typer.Option("--format", help="ndjson, json or csv.")] = "ndjson",
    since: SinceOpt = None,
    until: UntilOpt = None,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    resource_type: ResTypeOpt = None,
    resource_id: ResIdOpt = None,
    outcome: OutcomeOpt = None,
    ip: IpOpt = None,
    q: TextOpt = None,
    tenant: TenantOpt = None,
    run_async: Annotated[
        bool, typer.Option("--async", help="Run as an export job (POST /v1/exports), then download it.")
    ] = False,
    name: Annotated[str, typer.Option(help="Job name (with --async).")] = "cli export",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the job (with --async).")] = 3600.0,
) -> None:
    """Export matching events to a file: streamed (GET /v1/export) or as a job (--async)."""
    url = _api_url(url)
    filters = _filters(since, until, actor, action, resource_type, resource_id, outcome, ip, q)
    tenant_param = {"tenant": tenant} if tenant else {}
    try:
        _export(url, filters, tenant_param, format, output, run_async, name, wait)
    except httpx.HTTPError as exc:
        _unreachable(url, exc)


def _export(
    url: str,
    filters: dict[str, Any],
    tenant_param: dict[str, str],
    format: str,
    output: Path,
    run_async: bool,
    name: str,
    wait: float,
) -> None:
    with _client(url, timeout=None) as client:
        if not run_async:
            written = _download(client, "/v1/export", {**filters, **tenant_param, "format": format}, output)
            typer.echo(f"wrote {written} bytes to {output}", err=True)
            return
        r = client.post(
            "/v1/exports", params=tenant_param, json={"name": name, "format": format, "filters": filters}
        )
        _check(r)
        job = r.json()
        typer.echo(f"export job {job['id']} created", err=True)
        job = _wait_for_job(client, job["id"], tenant_param, wait)
        written = _download(client, f"/v1/exports/{job['id']}/download", tenant_param, output)
        typer.echo(f"wrote {job['rows_written']} events ({written} bytes) to {output}", err=True)


def _wait_for_job(client: httpx.Client, job_id: str, params: dict[str, Any], wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task(f"job {job_id[:8]}", total=1.0)
        while True:
            r = client.get(f"/v1/exports/{job_id}", params=params)
            _check(r)
            job = r.json()
            progress.update(
                task, completed=job["progress"], description=f"job {job_id[:8]} {job['rows_written']} rows"
            )
            if job["status"] == "completed":
                return job
            if job["status"] == "failed":
                _fail(f"export job {job_id} failed: {job['error']}")
            if time.monotonic() > deadline:
                _fail(f"export job {job_id} still {job['status']} after {wait:g} s; download it later")
            time.sleep(_POLL_SECONDS)


def _sse_events(response: httpx.Response) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(id, event) per ``event: audit`` message of a server-sent event stream."""
    event_id: str | None = None
    kind = "message"
    data: list[str] = []
    for line in response.iter_lines():
        if not line:
            if data and kind == "audit":
                yield event_id, orjson.loads("\n".join(data))
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            kind = value
        elif field == "id":
            event_id = value


def tail(
    url: UrlOpt = None,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    resource_type: ResTypeOpt = None,
    resource_id: ResIdOpt = None,
    outcome: OutcomeOpt = None,
    ip: IpOpt = None,
    q: TextOpt = None,
    tenant: TenantOpt = None,
    max_events: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    timeout: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
) -> None:
    """Follow new matching events (GET /v1/live) until Ctrl-C, --max-events or --timeout."""
    url = _api_url(url)
    params = _filters(None, None, actor, action, resource_type, resource_id, outcome, ip, q)
    if tenant:
        params["tenant"] = tenant
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    last_id: str | None = None
    try:
        with _client(url, timeout=None) as client:
            while deadline is None or time.monotonic() < deadline:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.1)
                stream_params = {**params, "max_seconds": min(left or 3600.0, 3600.0)}
                headers = {"Last-Event-ID": last_id} if last_id else {}
                with client.stream("GET", "/v1/live", params=stream_params, headers=headers) as r:
                    _check(r)
                    for last_id, event in _sse_events(r):  # noqa: B007 - kept for the reconnect
                        typer.echo(_line(event, as_json))
                        sys.stdout.flush()
                        seen += 1
                        if max_events is not None and seen >= max_events:
                            return
    except KeyboardInterrupt:
        pass
    except httpx.HTTPError as exc:
        _unreachable(url, exc)
