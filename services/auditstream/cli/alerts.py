"""``auditstream alerts``: alert rules and alerts through the API.

    auditstream alerts rules list | get ID | create FILE | update ID FILE | delete ID
    auditstream alerts rules import-sigma FILE [--webhook URL --secret S] [--slack URL]
    auditstream alerts list [--status open] [--rule ID] | ack ID | resolve ID

The key comes from ``AUDITSTREAM_API_KEY`` (admin for rules), the server from ``--url`` or
``AUDITSTREAM_API_URL``. FILE is rule JSON (``-`` reads stdin). Exit status: 0 done, 1 the
server or network failed, 2 a bad request (the server's message, naming the field, on stderr).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer

__all__ = ["app"]

app = typer.Typer(help="Alert rules and alerts.", no_args_is_help=True)
rules = typer.Typer(help="Alert rules of the tenant (admin key).", no_args_is_help=True)
app.add_typer(rules, name="rules")

UrlOpt = Annotated[str, typer.Option("--url", envvar="AUDITSTREAM_API_URL", help="API base URL.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Operator keys: another tenant.")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _call(method: str, url: str, path: str, tenant: str | None, body: Any = None, **params: Any) -> Any:
    key = os.environ.get("AUDITSTREAM_API_KEY", "").strip()
    if not key:
        _fail("set AUDITSTREAM_API_KEY to an API key (auditstream keys create ...)", 2)
    if tenant:
        params["tenant"] = tenant
    try:
        with httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as c:
            r = c.request(method, path, json=body, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {url}: {exc}")
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
            message = err["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:500]
        _fail(f"{r.status_code}: {message}", 2 if r.status_code < 500 else 1)
    return r.json() if r.content else None


def _print(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")


def _read(file: str) -> Any:
    text = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        _fail(f"{file}: not JSON: {exc}", 2)


@rules.command("list")
def rules_list(url: UrlOpt = DEFAULT_URL, tenant: TenantOpt = None) -> None:
    _print(_call("GET", url, "/v1/alerts/rules", tenant))


@rules.command("get")
def rules_get(rule_id: str, url: UrlOpt = DEFAULT_URL, tenant: TenantOpt = None) -> None:
    _print(_call("GET", url, f"/v1/alerts/rules/{rule_id}", tenant))


@rules.command("create")
def rules_create(file: str, url: UrlOpt = DEFAULT_URL, tenant: TenantOpt = None) -> None:
    """Create a rule from a JSON file."""
    _print(_call("POST", url, "/v1/alerts/rules", tenant, _read(file)))


@rules.command("update")
def rules_update(rule_id: str, file: str, url: UrlOpt = DEFAULT_URL, tenant: TenantOpt = None) -> None:
    """Change a rule: the JSON's fields replace the stored ones."""
    _print(_call("PATCH", url, f"/v1/alerts/rules/{rule_id}", tenant, _read(file)))


@rules.command("delete")
def rules_delete(rule_id: str, url: UrlOpt = DEFAULT_URL, tenant: TenantOpt = None) -> None:
    _call("DELETE", url, f"/v1/alerts/rules/{rule_id}", tenant)
    typer.echo(f"deleted {rule_id}")


@rules.command("import-sigma")
def rules_import_sigma(
    file: Path,
    webhook: Annotated[str | None, typer.Option(help="Webhook target URL.")] = None,
    secret: Annotated[str | None, typer.Option(help="Webhook signing secret (16+ characters).")] = None,
    slack: Annotated[str | None, typer.Option(help="Slack incoming-webhook URL.")] = None,
    url: UrlOpt = DEFAULT_URL,
    tenant: TenantOpt = None,
) -> None:
    """Import a Sigma rule (YAML); refused with the unsupported part named when it cannot map."""
    targets: list[dict[str, str]] = []
    if webhook:
        targets.append({"type": "webhook", "url": webhook, **({"secret": secret} if secret else {})})
    if slack:
        targets.append({"type": "slack", "url": slack})
    body = {"kind": "sigma", "sigma": file.read_text(), "targets": targets}
    _print(_call("POST", url, "/v1/alerts/rules", tenant, body))


@app.command("list")
def alerts_list(
    status: Annotated[str | None, typer.Option(help="open | acknowledged | resolved")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Rule id.")] = None,
    since: Annotated[str | None, typer.Option(help="Fired since (RFC 3339 or -24h).")] = None,
    url: UrlOpt = DEFAULT_URL,
    tenant: TenantOpt = None,
) -> None:
    _print(_call("GET", url, "/v1/alerts", tenant, status=status, rule_id=rule, since=since))


@app.command("ack")
def alerts_ack(alert_id: str, url: UrlOpt = DEFAULT_URL, tenant: TenantOpt = None) -> None:
    _print(_call("POST", url, f"/v1/alerts/{alert_id}/acknowledge", tenant))


@app.command("resolve")
def alerts_resolve(alert_id: str, url: UrlOpt = DEFAULT_URL, tenant: TenantOpt = None) -> None:
    _print(_call("POST", url, f"/v1/alerts/{alert_id}/resolve", tenant))
