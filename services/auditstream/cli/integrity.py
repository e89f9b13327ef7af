"""``auditstream checkpoint key|list`` and ``auditstream verify``: tamper evidence from the command line.

``verify`` exits 0 when everything verified, 1 when tampering was found (each finding
names the event id and leaf index or the checkpoint), 2 when it could not check
(no checkpoint, no key, store unreachable, unreadable files).

Online (``--tenant``) it reads the store directly, like ``reconcile``: on the embedded
default (chDB) stop ``auditstream run`` first or use a ClickHouse server DSN. Pass the
public key with ``--key`` from a copy kept away from the database (the key file on
the same machine proves nothing against whoever controls that machine).

Offline (``--export``) it needs only the export (NDJSON), a checkpoint note and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from auditstream.config import Settings

EXIT_TAMPERED = 1
EXIT_ERROR = 2

app = typer.Typer(help="Signed checkpoints of the tenants' Merkle logs.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _open_ledger(settings: Settings) -> Any:
    from auditstream.integrity.ledger import Ledger
    from auditstream.store.errors import StoreError
    from auditstream.store.store import Store

    store = Store(settings.resolved_clickhouse_dsn, settings.clickhouse_database, settings.retention_days)
    try:
        store.open()  # applies migrations, so the tables exist
    except StoreError as exc:
        hint = " (is 'auditstream run' using the embedded engine? stop it first)" if settings.embedded else ""
        raise _fail(f"cannot open the store: {exc}{hint}") from None
    store.close()
    return Ledger(settings.resolved_clickhouse_dsn, settings.clickhouse_database)


def _verifier(key: str | None, settings: Settings) -> Any:
    from auditstream.integrity.keys import load_verifier
    from auditstream.integrity.note import NoteError
    from auditstream.integrity.service import public_key

    try:
        verifier = load_verifier(key) if key else public_key(settings)
    except (NoteError, OSError) as exc:
        raise _fail(f"--key: {exc}") from None
    if verifier is None:
        raise _fail(
            f"no --key given and no key file at {settings.resolved_checkpoint_public_key_path}"
            f" or {settings.resolved_checkpoint_key_path}"
        )
    return verifier


@app.command("key")
def key() -> None:
    """Print the public (verifier) key checkpoints are signed with; creates the key if there is none."""
    from auditstream.integrity.keys import load_or_create_signer, write_verifier

    settings = Settings()
    signer = load_or_create_signer(settings.resolved_checkpoint_key_path, settings.checkpoint_key_name)
    write_verifier(settings.resolved_checkpoint_public_key_path, signer.verifier)
    typer.echo(str(signer.verifier))


@app.command("list")
def list_checkpoints(
    tenant: Annotated[str, typer.Option(help="Tenant whose checkpoints to list.")],
    limit: Annotated[int, typer.Option(min=1)] = 20,
    notes: Annotated[bool, typer.Option("--notes", help="Print the signed notes themselves.")] = False,
) -> None:
    """The newest checkpoints of a tenant: tree size, time, root hash (or the notes)."""
    import base64

    ledger = _open_ledger(Settings())
    try:
        rows = ledger.checkpoints(tenant, limit=limit, latest_first=True)
    finally:
        ledger.close()
    for row in rows:
        if notes:
            typer.echo(row.note)
        else:
            root = base64.b64encode(row.root_hash).decode()
            typer.echo(f"{row.tree_size}\t{row.created_at:%Y-%m-%dT%H:%M:%S}Z\t{root}")


def _open_export(path: Path) -> Any:
    """The export as a binary file; a gzip file (a job downloaded with ``gzip=true``) decompressed."""
    import gzip

    with path.open("rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def _read_events(
    path: Path,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]] | None, str | None, object]:
    """Events of an NDJSON export; the proofs, checkpoint note and leaf format of its proof line, if any."""
    from auditstream.integrity.bundle import TRAILER_KEY

    events: list[dict[str, Any]] = []
    proofs: dict[str, dict[str, Any]] | None = None
    note: str | None = None
    leaf_format: object = None
    with _open_export(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                raise _fail(f"{path}: line {number} is not JSON") from None
            if isinstance(item, dict) and TRAILER_KEY in item:
                trailer = item[TRAILER_KEY]
                if trailer.get("error"):
                    typer.echo(f"the server could not add proofs: {trailer['error']}", err=True)
                proofs = {p["event_id"]: p for p in trailer.get("leaves", [])}
                note = trailer.get("checkpoint")
                leaf_format = trailer.get("leaf_format")  # absent: a file from before formats had numbers
                continue
            events.append(item)
    return events, proofs, note, leaf_format


def verify(
    file: Annotated[
        Path | None, typer.Argument(help="Offline: an NDJSON export (or its .gz), like --export.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Online: recompute this tenant's log from the store.")
    ] = None,
    export: Annotated[Path | None, typer.Option(help="Offline: an NDJSON export to verify.")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            "--note",
            help="Offline: checkpoint note file (its last note); default: the export's proof line.",
        ),
    ] = None,
    proofs: Annotated[
        Path | None, typer.Option(help="Offline: JSON lines of /v1/events/{id}/proof answers.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Verifier key, or a file holding it.")] = None,
    retention_days: Annotated[
        int | None, typer.Option(help="Events older than this are 'expired by retention' (default setting).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Online: re-hash only events sealed after the last checkpoint before this time."),
    ] = None,
    copies: Annotated[
        list[Path] | None,
        typer.Option(
            "--copies",
            help="Online: checkpoint files kept outside the database (WORM); repeat or give folders.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Verify a tenant's log (online) or an export file (offline) against signed checkpoints."""
    from auditstream.integrity.note import split_notes
    from auditstream.integrity.service import origin
    from auditstream.integrity.verify import verify_export, verify_tenant

    settings = Settings()
    if file is not None:
        if export is not None:
            raise _fail("give the export file once: as an argument or with --export")
        export = file
    if (tenant is None) == (export is None):
        raise _fail("give either --tenant (online) or --export with --checkpoint (offline)")
    verifier = _verifier(key, settings)
    if tenant is not None:
        from datetime import UTC, datetime

        from auditstream.api.timeparse import parse_time

        try:
            since_at = parse_time(since, now=datetime.now(UTC)) if since else None
        except ValueError as exc:
            raise _fail(f"--since: {exc}") from None
        kept: list[str] = []
        try:
            for path in copies or []:
                files = sorted(path.rglob("*.notes")) if path.is_dir() else [path]
                for file in files:
                    kept += split_notes(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise _fail(f"--copies: {exc}") from None
        ledger = _open_ledger(settings)
        try:
            report = verify_tenant(
                ledger,
                tenant,
                verifier,
                origin=origin(settings, tenant),
                retention_days=retention_days or settings.retention_days,
                since=since_at,
                copies=kept,
            )
        except Exception as exc:
            raise _fail(f"verification could not run: {type(exc).__name__}: {exc}") from None
        finally:
            ledger.close()
    else:
        assert export is not None
        try:
            events, trailer, trailer_note, leaf_format = _read_events(export)
            if checkpoint is not None:
                notes = split_notes(checkpoint.read_text(encoding="utf-8"))
            elif trailer_note:
                notes = [trailer_note]  # the signature, checked with --key, is what counts
            else:
                raise _fail(
                    "--export needs --checkpoint (a checkpoint note file) or an export with its proof line"
                )
            given = None
            if proofs is not None:
                given = {}
                for line in proofs.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        p = json.loads(line)
                        given[p["event_id"]] = p
        except (OSError, EOFError, ValueError, KeyError) as exc:
            raise _fail(str(exc)) from None
        if not notes:
            raise _fail(f"{checkpoint}: no signed note in it")
        report = verify_export(
            events,
            notes[-1],
            verifier,
            proofs=given if given is not None else trailer,
            leaf_format=leaf_format,
        )
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for line in report.lines():
            typer.echo(line)
    raise typer.Exit(report.exit_code)


def verify_printed(client: Any, events: list[dict[str, Any]], key: str | None, tenant: str | None) -> int:
    """``auditstream query --verify``: check each printed event's inclusion proof; an exit code.

    ``client`` is the query command's authenticated httpx client. Results go to stderr,
    one line per event that does not verify and a summary; 1 when one fails.
    """
    import base64

    from auditstream.integrity.canonical import leaf_hash_of_event
    from auditstream.integrity.merkle import ProofError, verify_inclusion
    from auditstream.integrity.note import Checkpoint, NoteError, Verifier, open_note

    params = {"tenant": tenant} if tenant else {}
    try:
        verifier = Verifier.parse(key) if key else None
    except NoteError as exc:
        raise _fail(f"--key: {exc}") from None
    if verifier is None:
        r = client.get("/v1/checkpoints/key", params=params)
        if r.status_code != 200:
            raise _fail("the server has no checkpoint key yet")
        verifier = Verifier.parse(r.json()["key"])
        typer.echo(f"note: key {verifier} taken from the server; pass --key to check independently", err=True)
    verified = unsealed = failed = 0
    for event in events:
        eid = event.get("event_id")
        r = client.get(f"/v1/events/{eid}/proof", params=params)
        if r.status_code == 404:
            unsealed += 1
            continue
        try:
            r.raise_for_status()
            proof = r.json()
            cp = Checkpoint.parse(open_note(proof["checkpoint"]["note"], verifier))
            path = [base64.b64decode(p) for p in proof["audit_path"]]
            verify_inclusion(int(proof["leaf_index"]), cp.size, leaf_hash_of_event(event), path, cp.root)
            verified += 1
        except (ProofError, NoteError, KeyError, ValueError) as exc:
            failed += 1
            typer.echo(f"TAMPERED: event {eid}: {exc}", err=True)
    typer.echo(f"verify: {verified} verified, {failed} failed, {unsealed} not sealed yet", err=True)
    return 1 if failed else 0
