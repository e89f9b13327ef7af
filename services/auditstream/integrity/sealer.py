"""The sealer: follows each tenant's stored events in ingest order and appends them to its Merkle log.

A feed follower (it never sits in the processor's write path): every round it asks
``Store.feed_heads_all()`` which tenants have events past its position, reads them
with ``Store.feed_page`` (ingest order, gap-free), hashes each event
(``canonical.leaf_hash_of_row``) and appends the leaves to ``merkle_leaves``. At most
every ``checkpoint_seconds`` per tenant whose tree grew it signs a checkpoint, stores
it in ``checkpoints`` and appends it to ``<checkpoint_dir>/<tenant>/<day>.notes``.

Exactly once across crashes and replays:

* the position is what ClickHouse holds, never a local file: tree size = leaves
  stored, feed position = per partition the highest sealed offset. After a restart
  or any error the tenant's state is read again from the tables;
* a page's leaves are one insert whose dedup token names its index range, so a
  retry after an ambiguous failure cannot add a second copy;
* an event id that already has a leaf is skipped (a replayed or conflicting copy
  at another Kafka position), so no ``(tenant, event_id)`` is sealed twice.

Subtree hashes (``merkle_subtrees``, 0008; what proofs are built from): a page's leaves
and the subtrees of height >= 8 they complete are written in the same step, leaves
first. A failure between the two drops the tenant's state like any other; the reload
re-derives the frontier from the last checkpoint and writes the subtrees completed
past it again, so no checkpoint is signed while one of its subtrees is unwritten. On
the first load of a tenant whose stored subtrees do not cover its latest checkpoint
(a log sealed before 0008) the frontier is rebuilt from leaf 0 instead, which writes
every subtree once (the backfill). Proofs recompute a missing subtree from leaves, so
they are right before, during and after the backfill.

Yielding to ingest: in the embedded setup the sealer shares one process (and its GIL)
with the processor, and a sealed event costs it more Python time than storing it did.
So while the feed heads keep moving (ingest is active) it seals one page per round, for
the tenants in turn, and then pauses, working at most ``duty`` of the wall time; once the
heads have not moved for ``_IDLE_SECONDS`` (ingest paused) it runs at full speed until it
has caught up, and drops back to pacing as soon as a page shows the heads moving again.
One page per round, not one per tenant: a page of 5,000 events takes about half a second
here, so with a dozen tenants a round of a page each was six seconds of work, longer than
a whole ingest burst, and the pacing never began (bench/RESULTS.md, stop 27). Its lag
grows during a burst and shrinks after (``auditstream_sealer_lag_seconds``), up to
``max_lag_seconds``: a tenant that far behind is sealed at full speed while ingest goes
on, so sustained ingest above what the paced sealer keeps up with costs more ingest
throughput instead of an unbounded lag. Exactly once is unaffected (pausing is only a
wait between rounds), and every round still offers each tenant a checkpoint, so they
come at most every ``checkpoint_seconds`` as before.

Threads: ``run`` seals on its own thread, and the public methods may be called from
others (tests read ``tree_size``, tools seal by hand). One lock covers every use of a
tenant's state, so a second thread can never load a copy of it while a page advances the
one in use; a stale copy put back would seal the next events at indices already written,
and the insert's dedup token would drop them (found in CI, ``test_sealer_threads.py``).

One sealer per database: two would both append at the same indices. The embedded
setup has one process; with a ClickHouse server, enable it on one instance only.
"""

from __future__ import annotations

__all__ = ["Sealer", "checkpoint_file"]

import base64
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import Counter, Gauge

from auditstream.events.stored import format_datetime, utc_ms
from auditstream.integrity.canonical import LEAF_FORMAT, leaf_hash_of_row
from auditstream.integrity.ledger import SUBTREE_MIN_LEVEL, CheckpointRow, Ledger
from auditstream.integrity.merkle import Frontier
from auditstream.integrity.note import Checkpoint, Signer, note_hash, sign_note
from auditstream.store.store import Store

log = logging.getLogger(__name__)

LEAVES = Counter("auditstream_sealer_leaves_total", "Events appended to a tenant's Merkle log.")
CHECKPOINTS = Counter("auditstream_checkpoints_total", "Signed checkpoints written.")
LAG = Gauge("auditstream_sealer_lag_seconds", "Age of the newest sealed event while the sealer is behind.")
ERRORS = Counter("auditstream_sealer_errors_total", "Sealer rounds that failed (retried).")
CPU = Counter(
    "auditstream_sealer_cpu_seconds_total",
    "CPU time of the sealer thread (in the embedded setup, time the processor could not have).",
)
YIELDING = Gauge("auditstream_sealer_yielding", "1 while the sealer paces itself because ingest is active.")

_MAX_PAUSE_SECONDS = 5.0  # a yielding sealer still looks at the feed (and checkpoints) this often
# Ingest counts as paused when the heads stay put this long: a processor batch closes
# within 0.5 s while events arrive, but writing a full one under load can take longer.
_IDLE_SECONDS = 2.0

_BACKFILL_BATCH = 10_000  # subtree rows per insert while a reload writes them

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def checkpoint_file(folder: Path, tenant_id: str, day: datetime) -> Path:
    """``<folder>/<tenant>/<YYYY-MM-DD>.notes``; a tenant id unfit for a path is hex-encoded."""
    name = tenant_id if _SAFE.match(tenant_id) and ".." not in tenant_id else "x-" + tenant_id.encode().hex()
    return folder / name / f"{day:%Y-%m-%d}.notes"


def _collector(nodes: list[tuple[int, int, bytes]]) -> Callable[[int, int, bytes], None]:
    """A ``Frontier.append`` callback keeping the subtrees merkle_subtrees stores."""

    def keep(level: int, index: int, h: bytes) -> None:
        if level >= SUBTREE_MIN_LEVEL:
            nodes.append((level, index, h))

    return keep


@dataclass
class _Tenant:
    size: int
    positions: dict[int, int]
    frontier: Frontier
    last_note: str | None
    checkpoint_size: int
    checkpoint_at: float  # time.monotonic() of the last checkpoint (0: none in this process)


class Sealer:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        signer: Signer,
        *,
        checkpoint_seconds: float = 60.0,
        checkpoint_dir: Path | None = None,
        origin_prefix: str = "auditstream",
        page_size: int = 5000,
        duty: float = 1.0,
        max_lag_seconds: float = 60.0,
    ) -> None:
        if not 0 < duty <= 1:
            raise ValueError("duty must be in (0, 1]")
        if not max_lag_seconds > 0:
            raise ValueError("max_lag_seconds must be > 0")
        self.store = store
        self.ledger = ledger
        self.signer = signer
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_dir = checkpoint_dir
        self.origin_prefix = origin_prefix
        self.page_size = page_size
        self.duty = duty
        self.max_lag_seconds = max_lag_seconds
        self.ingest_active = False  # the feed heads moved between the last two rounds
        # Per tenant, the age of its newest sealed event when its last page left more behind
        # (0 once a page reached the head): what `behind` compares with max_lag_seconds.
        self._lag: dict[str, float] = {}
        self._turn: str | None = None  # the tenant sealed last while yielding (whose turn ended)
        self._last_heads: dict[str, dict[int, int]] | None = None
        self._tenants: dict[str, _Tenant] = {}
        self._blocked: set[str] = set()
        self._lock = threading.Lock()  # around every use of _tenants (see the module text)

    def origin(self, tenant_id: str) -> str:
        return f"{self.origin_prefix}/{tenant_id}"

    # --- state --------------------------------------------------------------------

    def _load(self, tenant_id: str) -> _Tenant | None:
        size, positions = self.ledger.tree_position(tenant_id)
        latest = self.ledger.checkpoints(tenant_id, limit=1, latest_first=True)
        cp = latest[0] if latest else None
        if cp is not None and cp.tree_size > size:
            # Leaves the signed log covers are gone: sealing on would hide it. verify names it.
            if tenant_id not in self._blocked:
                log.error(
                    "merkle leaves missing below the latest checkpoint; sealer stops for this tenant",
                    extra={"tenant": tenant_id, "checkpoint_size": cp.tree_size, "leaves": size},
                )
                self._blocked.add(tenant_id)
            return None
        start = 0
        frontier = Frontier()
        if (
            cp is not None
            and len(cp.frontier) == cp.tree_size.bit_count()
            and self.ledger.subtrees_complete(tenant_id, cp.tree_size)
        ):
            candidate = Frontier(cp.tree_size, cp.frontier)
            if candidate.root() == cp.root_hash:
                frontier, start = candidate, cp.tree_size
        nodes: list[tuple[int, int, bytes]] = []
        collect = _collector(nodes)
        written = 0
        # Unique per load: a later load at the same size (after the rows were lost) must not
        # be dropped as a retry; the same rows twice are merged by the table and readers.
        load = f"load-{uuid.uuid4().hex}"
        for leaf in self.ledger.iter_leaves(tenant_id, start, size):
            if leaf.leaf_index == frontier.size:
                frontier.append(leaf.leaf_hash, collect)
                if len(nodes) >= _BACKFILL_BATCH:
                    written += self._write_subtrees(tenant_id, nodes, f"{load}:{frontier.size}")
        if frontier.size != size:
            log.error("merkle leaves have a gap; sealer stops for this tenant", extra={"tenant": tenant_id})
            self._blocked.add(tenant_id)
            return None
        written += self._write_subtrees(tenant_id, nodes, f"{load}:{size}")
        if start == 0 and written:
            log.info(
                "merkle subtree hashes written from the stored leaves",
                extra={"tenant": tenant_id, "subtrees": written},
            )
        checkpoint_at = 0.0
        if cp is not None:
            # The interval runs from the stored checkpoint's time, also across a restart.
            age = (datetime.now(UTC) - cp.created_at).total_seconds()
            checkpoint_at = time.monotonic() - max(0.0, age)
        return _Tenant(
            size=size,
            positions=positions,
            frontier=frontier,
            last_note=cp.note if cp else None,
            checkpoint_size=cp.tree_size if cp else 0,
            checkpoint_at=checkpoint_at,
        )

    def _write_subtrees(self, tenant_id: str, nodes: list[tuple[int, int, bytes]], token: str) -> int:
        """Store and clear ``nodes``; how many there were."""
        count = len(nodes)
        self.ledger.append_subtrees(tenant_id, nodes, f"{tenant_id}:{token}:{count}")
        nodes.clear()
        return count

    def _state(self, tenant_id: str) -> _Tenant | None:
        state = self._tenants.get(tenant_id)
        if state is None:
            state = self._load(tenant_id)
            if state is not None:
                self._tenants[tenant_id] = state
        return state

    def tree_size(self, tenant_id: str) -> int:
        with self._lock:
            state = self._state(tenant_id)
            return state.size if state else 0

    # --- sealing ------------------------------------------------------------------

    def seal_tenant(self, tenant_id: str, heads: dict[int, int], max_pages: int = 20) -> int:
        """Append what the feed holds past the position (at most ``max_pages`` pages); leaves added."""
        with self._lock:
            return self._seal_tenant(tenant_id, heads, max_pages)

    def _seal_tenant(self, tenant_id: str, heads: dict[int, int], max_pages: int) -> int:
        state = self._state(tenant_id)
        if state is None:
            return 0
        added = 0
        try:
            for _ in range(max_pages):
                if not any(head > state.positions.get(p, -1) for p, head in heads.items()):
                    break
                page = self.store.feed_page(tenant_id, state.positions, limit=self.page_size)
                ids = list({row["event_id"] for row in page.rows})
                sealed = self.ledger.sealed_ids(tenant_id, ids)
                now = utc_ms(datetime.now(UTC))
                rows = []
                hashes = []
                for row in page.rows:
                    if row["event_id"] in sealed:
                        continue  # replayed or conflicting copy: one leaf per event id
                    sealed.add(row["event_id"])
                    h = leaf_hash_of_row(row)
                    hashes.append(h)
                    rows.append(
                        (
                            h,
                            row["event_id"],
                            int(row["kafka_partition"]),
                            int(row["kafka_offset"]),
                            row["occurred_at"],
                            now,
                        )
                    )
                frontier = state.frontier.copy()
                nodes: list[tuple[int, int, bytes]] = []
                frontier.extend(hashes, _collector(nodes))
                self.ledger.append_leaves(tenant_id, state.size, rows, leaf_format=LEAF_FORMAT)
                # Same step as the leaves (see the module text for a failure in between).
                self._write_subtrees(tenant_id, nodes, f"{state.size}:{state.size + len(rows)}")
                state.frontier = frontier
                state.size += len(rows)
                state.positions = dict(page.positions)
                added += len(rows)
                if self.duty < 1 and page.watermark != heads:
                    self.ingest_active = True  # events arrived meanwhile: back to pacing
                    break
                if page.rows:
                    newest = page.rows[-1]["received_at"]
                    self._lag[tenant_id] = max(0.0, (now - newest).total_seconds()) if page.more else 0.0
                    LAG.set(max(self._lag.values()))
                if not page.more:
                    break
        except Exception:
            self._tenants.pop(tenant_id, None)  # read the position again from ClickHouse
            raise
        LEAVES.inc(added)
        return added

    def checkpoint(self, tenant_id: str, *, force: bool = False) -> CheckpointRow | None:
        """Sign and store a checkpoint if the tree grew and the interval passed (or ``force``)."""
        with self._lock:
            return self._checkpoint(tenant_id, force)

    def _checkpoint(self, tenant_id: str, force: bool) -> CheckpointRow | None:
        state = self._state(tenant_id)
        if state is None or state.size == state.checkpoint_size:
            return None
        mono = time.monotonic()
        if not force and state.checkpoint_size and mono - state.checkpoint_at < self.checkpoint_seconds:
            return None
        created = utc_ms(datetime.now(UTC))
        # The signed leaf-format line tells a verifier how the leaves were computed.
        extensions = [f"time {format_datetime(created)}", f"leaf-format {LEAF_FORMAT}"]
        if state.last_note is not None:
            extensions.append(f"prev {base64.b64encode(note_hash(state.last_note)).decode()}")
        root = state.frontier.root()
        body = Checkpoint(self.origin(tenant_id), state.size, root, tuple(extensions))
        note = sign_note(body.text(), self.signer)
        row = CheckpointRow(tenant_id, state.size, root, created, note, list(state.frontier.hashes))
        try:
            self.ledger.add_checkpoint(row)
        except Exception:
            self._tenants.pop(tenant_id, None)
            raise
        state.last_note, state.checkpoint_size, state.checkpoint_at = note, state.size, mono
        CHECKPOINTS.inc()
        if self.checkpoint_dir is not None:
            self._append_file(tenant_id, created, note)
        return row

    def _append_file(self, tenant_id: str, created: datetime, note: str) -> None:
        path = checkpoint_file(self.checkpoint_dir or Path("."), tenant_id, created)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(note)
        except OSError as exc:
            # ClickHouse holds the checkpoint; the file is the operator's extra copy.
            log.error("could not append the checkpoint file", extra={"path": str(path), "error": str(exc)})

    def run_once(self, *, force_checkpoint: bool = False) -> dict[str, int]:
        """One round over every tenant with events; leaves added per tenant."""
        added: dict[str, int] = {}
        heads_all = self.store.feed_heads_all()
        if self._last_heads is not None:
            self.ingest_active = heads_all != self._last_heads
        self._last_heads = heads_all
        yielding = self.yielding
        sealed_one = False
        for tenant_id in self._round_order(heads_all):
            # While yielding, one page in all per round: the next tenants in turn get the
            # next rounds. Every tenant is still offered its checkpoint.
            if not (yielding and sealed_one):
                n = self.seal_tenant(tenant_id, heads_all[tenant_id], max_pages=1 if yielding else 20)
                if n:
                    added[tenant_id] = n
                    if yielding:
                        sealed_one, self._turn = True, tenant_id
            self.checkpoint(tenant_id, force=force_checkpoint)
        return added

    def _round_order(self, heads_all: dict[str, dict[int, int]]) -> list[str]:
        """The tenants in their order, starting after the one whose turn ended last."""
        tenants = sorted(heads_all)
        if self._turn is None:
            return tenants
        after = [t for t in tenants if t > self._turn]
        return after + [t for t in tenants if t <= self._turn]

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait ``seconds`` while ingest is active; end early once the heads stop moving."""
        end = time.monotonic() + seconds
        while not stop.is_set() and (left := end - time.monotonic()) > 0:
            waited = min(_IDLE_SECONDS, left)
            stop.wait(waited)
            heads = self.store.feed_heads_all()
            if heads == self._last_heads and waited >= _IDLE_SECONDS:
                self.ingest_active = False
                return
            self._last_heads = heads

    @property
    def behind(self) -> bool:
        """Some tenant's sealed events were more than ``max_lag_seconds`` old at its last page."""
        with self._lock:  # pages update _lag under it, from whichever thread seals
            return max(self._lag.values(), default=0.0) > self.max_lag_seconds

    @property
    def yielding(self) -> bool:
        return self.ingest_active and self.duty < 1 and not self.behind

    def run(self, stop: threading.Event, poll_seconds: float = 0.5) -> None:
        """Rounds until ``stop`` is set; failures are logged and retried with backoff."""
        backoff = poll_seconds
        log.info("sealer started", extra={"key": str(self.signer.verifier)})
        while not stop.is_set():
            started, cpu = time.monotonic(), time.thread_time()
            try:
                added = self.run_once()
                backoff = poll_seconds
                CPU.inc(time.thread_time() - cpu)
            except Exception as exc:
                ERRORS.inc()
                log.warning("sealer round failed; retrying", extra={"error": str(exc)})
                backoff = min(backoff * 2, 30.0)
                stop.wait(backoff)
                continue
            YIELDING.set(1 if self.yielding else 0)
            if not added:
                stop.wait(poll_seconds)
            elif self.yielding:
                worked = time.monotonic() - started
                self._pause(stop, min(worked * (1 - self.duty) / self.duty, _MAX_PAUSE_SECONDS))
        log.info("sealer stopped")
