"""Wiring of the integrity parts from ``Settings``: the sealer thread and the public key.

``run_services`` starts the sealer with ``start_sealer`` next to the processor and
stops it before the store closes. It runs on its own thread (every step is a blocking
ClickHouse call), never in the processor's write path.
"""

from __future__ import annotations

__all__ = ["RunningSealer", "origin", "public_key", "start_sealer"]

import threading
from dataclasses import dataclass

from auditstream.config import Settings
from auditstream.integrity.keys import load_or_create_signer, load_verifier
from auditstream.integrity.ledger import Ledger
from auditstream.integrity.note import Verifier
from auditstream.integrity.sealer import Sealer
from auditstream.store.store import Store


def origin(settings: Settings, tenant_id: str) -> str:
    """The checkpoint origin line of a tenant's log."""
    return f"{settings.checkpoint_key_name}/{tenant_id}"


def public_key(settings: Settings) -> Verifier | None:
    """The verifier key of this installation's signing key; None while no key exists yet."""
    path = settings.resolved_checkpoint_key_path
    if not path.is_file():
        return None
    return load_verifier(str(path))


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
    sealer = Sealer(
        store,
        Ledger(store.dsn, store.database),
        signer,
        checkpoint_seconds=settings.checkpoint_seconds,
        checkpoint_dir=settings.resolved_checkpoint_dir,
        origin_prefix=settings.checkpoint_key_name,
    )
    stop = threading.Event()
    thread = threading.Thread(target=sealer.run, args=(stop,), name="auditstream-sealer", daemon=True)
    thread.start()
    return RunningSealer(sealer, thread, stop)
