"""``auditstream keys``: create, list and revoke API keys.

Works while the API server runs: keys live in a SQLite file in WAL mode and the
server re-reads a key within seconds (its verification cache is short). The
plaintext key is printed once, alone on stdout, so ``KEY=$(auditstream keys create
...)`` works; everything else goes to stderr.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from auditstream.api.keys import KeyStore, Role
from auditstream.config import get_settings

__all__ = ["app"]

app = typer.Typer(
    name="keys", help="Manage API keys (hashed, tenant-scoped, with a role).", no_args_is_help=True
)


class RoleChoice(enum.StrEnum):
    # typer needs an Enum to offer choices; mirrors auditstream.api.keys.Role.
    reader = "reader"
    exporter = "exporter"
    admin = "admin"


def _store() -> KeyStore:
    return KeyStore(get_settings().resolved_keys_path)


@app.command()
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key may read.")],
    role: Annotated[RoleChoice, typer.Option("--role", help="reader < exporter < admin.")],
    name: Annotated[str, typer.Option("--name", help="A label, e.g. who holds the key.")] = "",
) -> None:
    """Create a key and print it. It is shown only this once: only its hash is stored."""
    try:
        new = _store().create(tenant, Role(role.value), name)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created key {new.key.key_id} (tenant {new.key.tenant_id}, role {new.key.role})", err=True)
    typer.echo(new.token)


@app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Hide revoked keys.")] = False,
) -> None:
    """List keys (never their secrets)."""
    keys = _store().list_keys(tenant_id=tenant, include_revoked=not active)
    typer.echo(f"{'KEY_ID':<16}  {'TENANT':<20}  {'ROLE':<8}  {'CREATED':<24}  {'REVOKED':<24}  NAME")
    for k in keys:
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
        typer.echo(
            f"{k.key_id:<16}  {k.tenant_id:<20}  {k.role.value:<8}  "
            f"{k.created_at.isoformat(timespec='seconds'):<24}  {revoked:<24}  {k.name}"
        )


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The KEY_ID shown by `keys list`.")]) -> None:
    """Revoke a key; the API refuses it within seconds."""
    if not _store().revoke(key_id):
        typer.echo(f"error: no key {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}", err=True)
