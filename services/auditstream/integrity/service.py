"""Wiring of the integrity parts from ``Settings``: the sealer thread and the public key.

``run_services`` starts the sealer with ``start_sealer`` next to the processor and
stops it before the store closes. It runs on its own thread (every step is a blocking
ClickHouse call), never in the processor's write path.
"""

from __future__ import annotations

__all__ = ["RunningSealer", "export_proof", "origin", "public_key", "shared_ledger", "start_sealer"]

import threading
from dataclasses import dataclass
from typing import Any

from auditstream.config import Settings
from auditstream.integrity.bundle import proof_trailer
from auditstream.integrity.keys import load_or_create_signer, load_verifier, write_verifier
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Verifier
from auditstream.integrity.sealer import Sealer
from auditstream.store.filters import EventFilter
from auditstream.store.store import Store

_LEDGER_LOCK = threading.Lock()


def origin(settings: Settings, tenant_id: str) -> str:
    """The checkpoint origin line of a tenant's log."""
    return f"{settings.checkpoint_key_name}/{tenant_id}"


def public_key(settings: Settings) -> Verifier | None:
    """The verifier key of this installation's signing key; None while no key exists yet.

    Read from the verifier file the sealer writes. Only where that file does not exist yet
    (an installation from before it, until its sealer restarts) is it derived from the signer
    key, if this process can read that.
    """
    public = settings.resolved_checkpoint_public_key_path
    if public.is_file():
        return load_verifier(str(public))
    path = settings.resolved_checkpoint_key_path
    if not path.is_file():
        return None
    return load_verifier(str(path))


def shared_ledger(state: Any, store: Store) -> Ledger:
    """The API's one ``Ledger`` (kept on ``app.state``), made on first use by a route or an export job."""
    with _LEDGER_LOCK:
        ledger = getattr(state, "integrity_ledger", None)
        if ledger is None:
            ledger = state.integrity_ledger = Ledger(store.dsn, store.database)
        return ledger


def export_proof(settings: Settings, ledger: Ledger, f: EventFilter) -> bytes:
    """The proof line of an export of ``f`` (streamed or a job), naming the server's verifier key."""
    verifier = public_key(settings)
    return proof_trailer(ledger, f, key=verifier and str(verifier))


@dataclass
class RunningSealer:
    sealer: Sealer
    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        self.sealer.ledger.close()


def start_sealer(settings: Settings, store: Store) -> RunningSealer:
    signer = load_or_create_signer(settings.resolved_checkpoint_key_path, settings.checkpoint_key_name)
    write_verifier(settings.resolved_checkpoint_public_key_path, signer.verifier)
    sealer = Sealer(
        store,
        Ledger(store.dsn, store.database),
        signer,
        checkpoint_seconds=settings.checkpoint_seconds,
        checkpoint_dir=settings.resolved_checkpoint_dir,
        origin_prefix=settings.checkpoint_key_name,
        duty=settings.sealer_duty,
        max_lag_seconds=settings.sealer_max_lag_seconds,
    )
    stop = threading.Event()
    thread = threading.Thread(target=sealer.run, args=(stop,), name="auditstream-sealer", daemon=True)
    thread.start()
    return RunningSealer(sealer, thread, stop)
