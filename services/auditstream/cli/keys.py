"""``auditstream keys``: create, list and revoke API keys.

Works while the API server runs: keys live in a SQLite file in WAL mode and the
server re-reads a key within seconds (its verification cache is short). The
plaintext key is printed once, alone on stdout, so ``KEY=$(auditstream keys create
...)`` works; everything else goes to stderr. ``--json`` prints one JSON document on
stdout instead (``create``: the key's fields and ``token``).

Audit trail: ``create`` and ``revoke`` publish ``key.created`` / ``key.revoked`` in the
key's tenant (actor ``cli``) through ``SyncAuditProducer``. When no broker answers
within ``--audit-timeout`` seconds the key change still stands (an operator with the
key file cannot be stopped by refusing it), a warning naming the unrecorded event
goes to stderr and the exit status stays 0. ``--no-audit`` skips publishing.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import orjson
import typer

from auditstream.api import audit_trail
from auditstream.api.keys import ApiKey, KeyStore, Role
from auditstream.config import get_settings

__all__ = ["app"]

app = typer.Typer(
    name="keys", help="Manage API keys (hashed, tenant-scoped, with a role).", no_args_is_help=True
)


class RoleChoice(enum.StrEnum):
    # typer needs an Enum to offer choices; mirrors auditstream.api.keys.Role (a test checks).
    reader = "reader"
    ingest = "ingest"
    exporter = "exporter"
    admin = "admin"
    operator = "operator"


ROLE_HELP = (
    "reader: query, stats, live. "
    "ingest: HTTP ingest (POST /v1/events) only, no reading. "
    "exporter: reader + exports + SIEM feed. "
    "admin: exporter + keys, rules, streams of its own tenant. "
    "operator: admin rights on EVERY tenant: may read and write every tenant (tenant=...); "
    "give it to operators only."
)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
NoAuditOpt = Annotated[
    bool, typer.Option("--no-audit", help="Do not write the change to the audit log (key.created/revoked).")
]
AuditTimeoutOpt = Annotated[
    float, typer.Option("--audit-timeout", min=0.1, help="Seconds to wait for a broker (audit event).")
]


def _store() -> KeyStore:
    return KeyStore(get_settings().resolved_keys_path)


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "tenant_id": key.tenant_id,
        "role": key.role.value,
        "name": key.name,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "active": key.active,
    }


def _audit(action: str, key: ApiKey, no_audit: bool, timeout: float) -> None:
    if no_audit:
        return
    settings = get_settings()
    event = audit_trail.key_event(action, key, audit_trail.CLI_ACTOR)
    problem = audit_trail.record_sync(settings, [event], timeout=timeout)
    if problem is not None:
        typer.echo(
            f"warning: {action} of key {key.key_id} (tenant {key.tenant_id}) was NOT written to the audit "
            f"log: broker {settings.kafka_bootstrap} ({problem}); the key change itself stands",
            err=True,
        )


@app.command()
def create(
    tenant: Annotated[
        str,
        typer.Option("--tenant", help="Tenant the key belongs to (only an operator key may act on others)."),
    ],
    role: Annotated[RoleChoice, typer.Option("--role", help=ROLE_HELP)],
    name: Annotated[str, typer.Option("--name", help="A label, e.g. who holds the key.")] = "",
    as_json: JsonOpt = False,
    no_audit: NoAuditOpt = False,
    audit_timeout: AuditTimeoutOpt = 3.0,
) -> None:
    """Create a key and print it. It is shown only this once: only its hash is stored."""
    try:
        new = _store().create(tenant, Role(role.value), name)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created key {new.key.key_id} (tenant {new.key.tenant_id}, role {new.key.role})", err=True)
    _audit("key.created", new.key, no_audit, audit_timeout)
    if as_json:
        typer.echo(orjson.dumps({**key_json(new.key), "token": new.token}).decode())
    else:
        typer.echo(new.token)


@app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Hide revoked keys.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List keys (never their secrets)."""
    keys = _store().list_keys(tenant_id=tenant, include_revoked=not active)
    if as_json:
        typer.echo(orjson.dumps([key_json(k) for k in keys]).decode())
        return
    typer.echo(f"{'KEY_ID':<16}  {'TENANT':<20}  {'ROLE':<8}  {'CREATED':<24}  {'REVOKED':<24}  NAME")
    for k in keys:
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
        typer.echo(
            f"{k.key_id:<16}  {k.tenant_id:<20}  {k.role.value:<8}  "
            f"{k.created_at.isoformat(timespec='seconds'):<24}  {revoked:<24}  {k.name}"
        )


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The KEY_ID shown by `keys list`.")],
    as_json: JsonOpt = False,
    no_audit: NoAuditOpt = False,
    audit_timeout: AuditTimeoutOpt = 3.0,
) -> None:
    """Revoke a key; the API refuses it within seconds. Revoking twice keeps the first time."""
    store = _store()
    before = store.get(key_id)
    if before is None or not store.revoke(key_id):
        typer.echo(f"error: no key {key_id!r}", err=True)
        raise typer.Exit(1)
    key = store.get(key_id)
    assert key is not None
    typer.echo(f"revoked {key_id}", err=True)
    if before.active:  # a second revoke changes nothing, so it is not a new audit event
        _audit("key.revoked", key, no_audit, audit_timeout)
    if as_json:
        typer.echo(orjson.dumps(key_json(key)).decode())
