"""Writing batches to ClickHouse: retry what is transient, isolate what is poison.

- ``StoreUnavailable`` (connection refused, timeouts, too many parts, ...): the
  batch is retried with exponential backoff, forever. The caller does not return
  to the stream meanwhile, so nothing is acknowledged and nothing is committed.
- ``StoreRejected`` (ClickHouse says the data itself is bad): the batch is split
  in halves until the offending rows are alone; those are handed back to go to
  the dead-letter topic, the rest is written. One bad row never blocks a partition.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

from auditstream.events.fastpath import NATIVE_COLUMNS
from auditstream.processor import metrics
from auditstream.processor.batch import Row
from auditstream.retry import Backoff, retry
from auditstream.store.errors import StoreError, StoreRejected, StoreUnavailable
from auditstream.store.native import EncodedRows
from auditstream.store.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class SinkStatus:
    """What /readyz and the metrics report about the store side of the processor."""

    store_available: bool = True
    consecutive_failures: int = 0
    last_error: str | None = None
    last_write_at: float | None = None


@dataclass(frozen=True, slots=True)
class PoisonRow:
    row: Row  # the refused row, with its source message
    error: str


@dataclass
class ClickHouseSink:
    store: Store
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    status: SinkStatus = field(default_factory=SinkStatus)

    def encode(self, rows: Sequence[Row]) -> EncodedRows | None:
        """``rows`` as the body of their insert (on the caller's thread), or None if they cannot be.

        None for a value a column cannot take (``write`` then isolates that row) or when
        the table's column types cannot be read now (``write`` then retries as usual).
        """
        try:
            return self.store.encode_rows([row.values for row in rows])
        except StoreError as exc:
            log.info("rows not encoded ahead; the write encodes them", extra={"error": str(exc)})
            return None

    def adopt(self, rows: Sequence[Row], body: bytes) -> EncodedRows | None:
        """``rows`` with ``body``, their Native body from the native fast path, or None if unusable.

        None when the table's columns are not the ones the body was written for, or when
        they cannot be read now: the caller then encodes the rows itself (``encode``).
        """
        try:
            return self.store.adopt_encoded([row.values for row in rows], body, NATIVE_COLUMNS)
        except StoreError as exc:
            log.info("native body not adopted; the rows are encoded here", extra={"error": str(exc)})
            return None

    async def write(
        self, rows: Sequence[Row], *, dedup_token: str, encoded: EncodedRows | None = None
    ) -> list[PoisonRow]:
        """Write ``rows``; return the rows ClickHouse refused as bad data (usually none).

        ``encoded`` (``encode(rows)``) is inserted as it is. If the store refuses it as
        data, the rows are written again the isolating way under the same token, as
        after a first attempt that failed the same way.
        """
        started = time.perf_counter()
        poison: list[PoisonRow] = []
        written = False
        if encoded is not None and len(encoded) == len(rows):
            written = await self._wrote_encoded(encoded, dedup_token)
        if not written:
            await self._write_isolating(rows, dedup_token, poison)
        metrics.WRITE_SECONDS.observe(time.perf_counter() - started)
        return poison

    async def _wrote_encoded(self, encoded: EncodedRows, token: str) -> bool:
        """Insert ``encoded`` as it is; False if the store refused it as data."""
        try:
            await self._with_retry(functools.partial(self.store.insert_rows, encoded, dedup_token=token))
        except StoreRejected as exc:
            log.warning("batch refused by ClickHouse; isolating its rows", extra={"error": str(exc)})
            return False
        return True

    async def _write_isolating(self, rows: Sequence[Row], token: str, poison: list[PoisonRow]) -> None:
        try:
            values = [row.values for row in rows]
            await self._with_retry(functools.partial(self.store.insert_rows, values, dedup_token=token))
        except StoreRejected as exc:
            if len(rows) == 1:
                log.warning("row rejected by ClickHouse", extra={"token": token, "error": str(exc)})
                poison.append(PoisonRow(rows[0], str(exc)))
                return
            half = len(rows) // 2
            # Sub-batches get derived tokens: a replay splits the same way and dedupes the same way.
            await self._write_isolating(rows[:half], f"{token}.a", poison)
            await self._write_isolating(rows[half:], f"{token}.b", poison)

    async def stored_identities(self, keys: Sequence[tuple[str, UUID]]) -> dict[tuple[str, UUID], bytes]:
        """The store's content hashes of ``keys`` (first write wins), retried like a write."""
        if not keys:
            return {}
        return await self._with_retry(functools.partial(self.store.stored_identities, keys))

    async def _with_retry(self, call: Callable[[], T]) -> T:
        # The client is synchronous (chDB runs in-process): keep the event loop free.
        result = await retry(
            functools.partial(asyncio.to_thread, call),
            retry_on=StoreUnavailable,
            backoff=Backoff(self.initial_backoff, self.max_backoff),
            on_retry=self._unavailable,
        )
        self.status.store_available = True
        self.status.consecutive_failures = 0
        self.status.last_error = None
        self.status.last_write_at = time.time()
        metrics.STORE_AVAILABLE.set(1)
        return result

    def _unavailable(self, exc: BaseException, retry_in: float) -> None:
        self.status.store_available = False
        self.status.consecutive_failures += 1
        self.status.last_error = str(exc)
        metrics.STORE_AVAILABLE.set(0)
        metrics.WRITE_RETRIES.inc()
        log.warning(
            "store unavailable; retrying batch",
            extra={"retry_in_s": retry_in, "failures": self.status.consecutive_failures, "error": str(exc)},
        )
