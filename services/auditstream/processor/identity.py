"""First write wins: settling a batch's events against what the store already holds.

Pure: the write step looks up the batch's identities (``Store.stored_identities``),
then this decides, row by row, in batch order, against what is stored and what this
batch has accepted so far:

- neither: written (and from now on the first write of its identity);
- the same content hash: a retry or a replay, dropped (counted as a duplicate);
- another content hash: a conflict, sent to the dead-letter topic. The first write
  stays exactly as it is.

The write step runs one batch at a time, so every batch is settled against all batches
written before it, and an exact copy of a stored event that follows a forgery of it in
the same batch is still recognised as a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from auditstream.processor.batch import ProcessedBatch, Row, identity, row_hash

__all__ = ["Settled", "settle_against_store"]


@dataclass(slots=True)
class Settled:
    rows: list[Row] = field(default_factory=list)
    duplicates: int = 0
    # The rows that conflict with a stored event (each with its message, for its dead letter).
    conflicting: list[Row] = field(default_factory=list)

    @property
    def positions(self) -> list[tuple[int, int]]:
        """(partition, offset) of the rows to write."""
        return [(r.message.partition, r.message.offset) for r in self.rows]

    @property
    def conflicts(self) -> list[tuple[int, int]]:
        """(partition, offset) of the conflicting rows."""
        return [(r.message.partition, r.message.offset) for r in self.conflicting]


def settle_against_store(batch: ProcessedBatch, stored: Mapping[tuple[str, UUID], bytes]) -> Settled:
    """What of ``batch`` may be written, given the content hashes already ``stored``."""
    out = Settled()
    known = dict(stored)
    for row in batch.rows:
        key = identity(row)
        existing = known.get(key)
        if existing is None:
            known[key] = row_hash(row)
            out.rows.append(row)
        elif existing == row_hash(row):
            out.duplicates += 1
        else:
            out.conflicting.append(row)
    return out
