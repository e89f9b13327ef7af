-- 0010: the feed's copy laid out for what reads it: whole rows of a few short ranges.
--
-- Every read of the feed table takes whole rows (30 columns) of about a hundred
-- consecutive positions per Kafka partition. In audit_feed (0002) those rows sat in 8192-row
-- granules of wide parts, one file per column: a page opened and decompressed one granule
-- of every column of every partition it read. Here:
--
-- * compact parts (`min_bytes_for_wide_part` above any part's size): a granule's columns
--   are stored together in one file, so a row read is one contiguous read, not thirty;
-- * 1024-row granules: a window of a hundred rows decompresses about a tenth of what an
--   8192-row granule held.
--
-- Measured at 10M rows (bench/RESULTS.md, stop 25): a page's read 24.9 -> 14.4 ms with the
-- single read of store.py, and 32.6 (wide, 8192) -> 25.8 (compact) -> 14.4 ms (compact, 1024);
-- storage +8 %. Nothing else reads this table (the analysts' queries read audit_events), so
-- a read of one column over many rows, which compact parts make slower, does not occur.
--
-- index_granularity cannot be altered on an existing table, hence a new table and a copy:
-- 1. the new table and its view, so from here every insert into audit_events lands in both;
-- 2. the rows stored before, copied (a row also written by the new view is then stored twice
--    at the same position: ReplacingMergeTree collapses it, readers drop it by position);
-- 3. the old view and table dropped.
-- Migrations run before the processor starts (0004), so no insert passes between the steps.
-- The copy reads the old table once; at 10M rows it took about a minute here. Stopped
-- before it is recorded, the migration runs again from the top: a second copy only adds
-- copies at the same positions, except after the last statement, when the copy finds no
-- audit_feed; then record 0010 by hand, the new table holds everything.
CREATE TABLE IF NOT EXISTS {database}.audit_feed_v2
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
        resource_name, reason, arrayStringConcat(mapValues(details), '\n'))),
    content_hash      FixedString(16),
    ingest_channel    LowCardinality(String) DEFAULT 'kafka',
    ingest_key_id     String,
    -- Per tenant and partition: the head, the first offset and the row count (0003, 0009).
    PROJECTION feed_heads
    (
        SELECT tenant_id, kafka_partition, max(kafka_offset), min(kafka_offset), count()
        GROUP BY tenant_id, kafka_partition
    )
)
ENGINE = ReplacingMergeTree
-- The month a batch was received: one processor batch is one part, visible at once (0002).
PARTITION BY toYYYYMM(received_at)
ORDER BY (tenant_id, kafka_partition, kafka_offset)
TTL toDateTime(received_at) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024, min_bytes_for_wide_part = 1099511627776,
         deduplicate_merge_projection_mode = 'rebuild';

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.audit_feed_v2_mv TO {database}.audit_feed_v2 AS
SELECT event_id, tenant_id, occurred_at, received_at, action, category, severity, outcome, reason,
       actor_id, actor_type, actor_name, actor_email, actor_ip, actor_user_agent,
       resource_type, resource_id, resource_name, source_service, source_host, source_request_id,
       changes, details, schema_version, kafka_topic, kafka_partition, kafka_offset,
       content_hash, ingest_channel, ingest_key_id
FROM {database}.audit_events;

INSERT INTO {database}.audit_feed_v2
    (event_id, tenant_id, occurred_at, received_at, action, category, severity, outcome, reason,
     actor_id, actor_type, actor_name, actor_email, actor_ip, actor_user_agent,
     resource_type, resource_id, resource_name, source_service, source_host, source_request_id,
     changes, details, schema_version, kafka_topic, kafka_partition, kafka_offset,
     content_hash, ingest_channel, ingest_key_id)
SELECT event_id, tenant_id, occurred_at, received_at, action, category, severity, outcome, reason,
       actor_id, actor_type, actor_name, actor_email, actor_ip, actor_user_agent,
       resource_type, resource_id, resource_name, source_service, source_host, source_request_id,
       changes, details, schema_version, kafka_topic, kafka_partition, kafka_offset,
       content_hash, ingest_channel, ingest_key_id
FROM {database}.audit_feed;

DROP VIEW IF EXISTS {database}.audit_feed_mv;

DROP TABLE IF EXISTS {database}.audit_feed;
