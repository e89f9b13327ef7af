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

from auditstream.processor.batch import ProcessedBatch, identity, row_hash

__all__ = ["Settled", "settle_against_store"]


@dataclass(slots=True)
class Settled:
    rows: list[tuple] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)
    duplicates: int = 0
    # Positions (partition, offset) of the rows that conflict with a stored event.
    conflicts: list[tuple[int, int]] = field(default_factory=list)


def settle_against_store(batch: ProcessedBatch, stored: Mapping[tuple[str, UUID], bytes]) -> Settled:
    """What of ``batch`` may be written, given the content hashes already ``stored``."""
    out = Settled()
    known = dict(stored)
    for row, position in zip(batch.rows, batch.positions, strict=True):
        key = identity(row)
        existing = known.get(key)
        if existing is None:
            known[key] = row_hash(row)
            out.rows.append(row)
            out.positions.append(position)
        elif existing == row_hash(row):
            out.duplicates += 1
        else:
            out.conflicts.append(position)
    return out
