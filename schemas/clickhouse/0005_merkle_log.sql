-- 0005: the per-tenant Merkle log (tamper evidence, services/auditstream/integrity).
--
-- merkle_leaves: one row per sealed event, leaf_index dense from 0 per tenant, in the
-- feed's ingest order. The leaf hash is SHA-256(0x00 || RFC 8785 JSON of the event).
-- The table is the tree: every node hash can be recomputed from it, and the sealer's
-- position is derived from it (count and per-partition max offset), so a crash or a
-- replay never seals an event twice or skips one. No TTL on purpose: when retention
-- removes an event its leaf hash stays, so proofs for the remaining events and
-- consistency between old and new checkpoints stay valid (32 bytes plus ids per event).
-- Plain MergeTree, not Replacing: a second row at an index is evidence, not a version.
-- occurred_at is kept so a verifier can tell an event expired by retention from one
-- deleted early.
CREATE TABLE IF NOT EXISTS {database}.merkle_leaves
(
    tenant_id        LowCardinality(String),
    leaf_index       UInt64,
    leaf_hash        FixedString(32),
    event_id         UUID,
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    occurred_at      DateTime64(3, 'UTC'),
    sealed_at        DateTime64(3, 'UTC'),
    -- "was this event sealed already?" (first write wins; replays) and GET /proof by id.
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = MergeTree
ORDER BY (tenant_id, leaf_index)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 8192;

-- checkpoints: every signed checkpoint (C2SP signed note), chained by its "prev" line.
-- frontier holds the perfect-subtree roots at tree_size (concatenated 32-byte hashes),
-- so a restarted sealer resumes without reading every leaf. No TTL either.
CREATE TABLE IF NOT EXISTS {database}.checkpoints
(
    tenant_id   LowCardinality(String),
    tree_size   UInt64,
    root_hash   FixedString(32),
    created_at  DateTime64(3, 'UTC'),
    note        String,
    frontier    String
)
ENGINE = MergeTree
ORDER BY (tenant_id, tree_size)
SETTINGS non_replicated_deduplication_window = 10000;
