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
-- projection cannot serve it either (reads that de-duplicate with FINAL ignore
-- projections). So audit_feed holds a second copy of every row, filled by a
-- materialized view on every insert into audit_events and sorted exactly as the feed
-- reads: a page is two short range reads of the primary index (positions, then rows),
-- whatever the table size. The copy costs storage (compressed, TTL'd like the main
-- table) and insert work; it buys a feed page in milliseconds at 10M+ rows.
--
-- Why not the main table's parts: audit_events is partitioned by the month of
-- occurred_at, so one insert holding a late event (an old occurred_at) becomes several
-- parts that become visible one after the other; a reader in between could see offset
-- 105 before 103 and its cursor would step over 103. Here the partition key is the
-- month of received_at (one value per processor batch), so a batch is one part and
-- becomes visible at once, and positions per partition appear in offset order.
--
-- ReplacingMergeTree on (tenant, partition, offset): a batch re-delivered after a
-- processor crash lands on the same positions and collapses; until it merges, readers
-- drop the copy by position.
CREATE TABLE IF NOT EXISTS {database}.audit_feed
(
    event_id          UUID,
    tenant_id         LowCardinality(String),
    occurred_at       DateTime64(3, 'UTC'),
    received_at       DateTime64(3, 'UTC'),
    action            LowCardinality(String),
    category          LowCardinality(String),
    severity          LowCardinality(String),
    outcome           LowCardinality(String),
    reason            String,
    actor_id          String,
    actor_type        LowCardinality(String),
    actor_name        String,
    actor_email       String,
    actor_ip          String,
    actor_user_agent  String,
    resource_type     LowCardinality(String),
    resource_id       String,
    resource_name     String,
    source_service    String,
    source_host       String,
    source_request_id String,
    changes           String,
    details           Map(String, String),
    schema_version    LowCardinality(String),
    kafka_topic       LowCardinality(String),
    kafka_partition   UInt16,
    kafka_offset      UInt64,
    -- The same free-text column as audit_events, so a filtered feed (live mode) can use `q`.
    search_text       String MATERIALIZED lowerUTF8(concat_ws(
        '\n', actor_id, actor_name, actor_email, action, resource_type, resource_id,
        resource_name, reason, arrayStringConcat(mapValues(details), '\n')))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (tenant_id, kafka_partition, kafka_offset)
TTL toDateTime(received_at) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.audit_feed_mv TO {database}.audit_feed AS
SELECT event_id, tenant_id, occurred_at, received_at, action, category, severity, outcome, reason,
       actor_id, actor_type, actor_name, actor_email, actor_ip, actor_user_agent,
       resource_type, resource_id, resource_name, source_service, source_host, source_request_id,
       changes, details, schema_version, kafka_topic, kafka_partition, kafka_offset
FROM {database}.audit_events;

-- Rows stored before this migration: copy them once.
INSERT INTO {database}.audit_feed
SELECT event_id, tenant_id, occurred_at, received_at, action, category, severity, outcome, reason,
       actor_id, actor_type, actor_name, actor_email, actor_ip, actor_user_agent,
       resource_type, resource_id, resource_name, source_service, source_host, source_request_id,
       changes, details, schema_version, kafka_topic, kafka_partition, kafka_offset
FROM {database}.audit_events;
