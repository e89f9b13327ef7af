-- 0002: free-text search and the SIEM feed's ingest-order index.
--
-- Free text (`q` on /v1/events): one lower-cased MATERIALIZED column holding every
-- searchable value (actor id/name/email, action, resource type/id/name, reason, the
-- values of details), and an n-gram bloom filter on it. A query `search_text LIKE
-- '%term%'` (term lower-cased) skips every granule whose filter says one of the term's
-- 3-grams is absent, so a rare term reads a few granules instead of the whole window.
-- (lowerUTF8, matching Python's str.lower for the API's term.) The column is computed by ClickHouse on insert (the writers' column list does not
-- change) and for old parts on read until MATERIALIZE runs. ngrambf_v1 rather than the
-- `text` index: the latter is still experimental, its DDL differs between 25.x and 26.x,
-- and this file must run on both. Sizing: ~100 chars per row gives a few thousand
-- distinct 3-grams per 8192-row granule; 32 KiB with 3 hash functions keeps the false
-- positive rate of a 3-gram in the low percents, and a term of k characters tests k-2
-- of them, so a 6+ character term skips nearly every granule that lacks it.
ALTER TABLE {database}.audit_events
    ADD COLUMN IF NOT EXISTS search_text String MATERIALIZED lowerUTF8(concat_ws(
        '\n', actor_id, actor_name, actor_email, action, resource_type, resource_id,
        resource_name, reason, arrayStringConcat(mapValues(details), '\n')));

ALTER TABLE {database}.audit_events
    ADD INDEX IF NOT EXISTS idx_search_text search_text TYPE ngrambf_v1(3, 32768, 3, 0) GRANULARITY 1;

-- Build the index for parts written before this migration (a background mutation).
ALTER TABLE {database}.audit_events MATERIALIZE INDEX idx_search_text;

-- The SIEM feed pages in ingest order: (kafka_partition, kafka_offset) per tenant.
-- audit_events is sorted by event time, so that order would be a full scan there; a
-- projection cannot serve it either, because reads de-duplicate with FINAL, which
-- ignores projections. So a small positions table, filled by a materialized view on
-- every insert into audit_events, sorted exactly as the feed reads.
--
-- Why not the main table's parts: audit_events is partitioned by the month of
-- occurred_at, so one insert holding a late event (an old occurred_at) becomes several
-- parts that become visible one after the other; a reader in between could see offset
-- 105 before 103 and its cursor would step over 103. Here the partition key is the
-- month of received_at (one value per processor batch), so a batch is one part and
-- becomes visible at once, and positions per partition appear in offset order.
--
-- ReplacingMergeTree on (tenant, partition, offset): a batch re-delivered after a
-- processor crash lands on the same positions and collapses (reads use FINAL).
CREATE TABLE IF NOT EXISTS {database}.audit_feed
(
    tenant_id       LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    received_at     DateTime64(3, 'UTC'),
    occurred_at     DateTime64(3, 'UTC'),
    event_id        UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (tenant_id, kafka_partition, kafka_offset)
TTL toDateTime(received_at) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.audit_feed_mv TO {database}.audit_feed AS
SELECT tenant_id, kafka_partition, kafka_offset, received_at, occurred_at, event_id
FROM {database}.audit_events;

-- Rows stored before this migration: copy their positions once.
INSERT INTO {database}.audit_feed
SELECT tenant_id, kafka_partition, kafka_offset, received_at, occurred_at, event_id
FROM {database}.audit_events;
