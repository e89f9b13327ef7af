-- 0004: first write wins, and who wrote it.
--
-- The promise: once (tenant_id, event_id) is stored, nothing that arrives later changes or
-- hides it. ReplacingMergeTree alone breaks it: a later row with the same sorting key
-- replaces the earlier one (no version column: the last inserted wins), and a later row
-- with the same id but another occurred_at is simply a second event under that id.
--
-- The mechanism is conflict detection before the insert, against an identity index:
--
-- * content_hash: 16 bytes of BLAKE2b over what the event says (every column except
--   received_at, the Kafka position and the ingest attribution; events/stored.py). The
--   same (tenant_id, event_id) with the same hash is a retry and is dropped; with another
--   hash it is a conflict and goes to the dead-letter topic. The stored row never changes.
-- * audit_ids: one small row per stored event, sorted by (tenant_id, event_id), filled by a
--   materialized view in the same INSERT as audit_events. The processor looks up each
--   batch's identities there (a primary-key range read) before it writes; its writes are
--   serialised, so a batch sees every batch before it. It never consults audit_events,
--   whose sorting key starts with occurred_at and cannot answer "is this id stored?".
--
-- Exact copies that still reach the table (an insert retried after an ambiguous failure
-- is dropped by its deduplication token first) share the sorting key and collapse as before.
--
-- Why not a version column preferring the earliest ingest position: it only arbitrates
-- between rows with the same sorting key, so a forgery with another occurred_at would
-- still be stored beside the original, and the engine change would rewrite the table.
ALTER TABLE {database}.audit_events
    ADD COLUMN IF NOT EXISTS content_hash FixedString(16),
    ADD COLUMN IF NOT EXISTS ingest_channel LowCardinality(String) DEFAULT 'kafka',
    ADD COLUMN IF NOT EXISTS ingest_key_id String;

ALTER TABLE {database}.audit_feed
    ADD COLUMN IF NOT EXISTS content_hash FixedString(16),
    ADD COLUMN IF NOT EXISTS ingest_channel LowCardinality(String) DEFAULT 'kafka',
    ADD COLUMN IF NOT EXISTS ingest_key_id String;

-- The feed's copy carries the new columns: the view is recreated with them (migrations run
-- before the processor starts, so no insert passes between the two statements).
DROP VIEW IF EXISTS {database}.audit_feed_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.audit_feed_mv TO {database}.audit_feed AS
SELECT event_id, tenant_id, occurred_at, received_at, action, category, severity, outcome, reason,
       actor_id, actor_type, actor_name, actor_email, actor_ip, actor_user_agent,
       resource_type, resource_id, resource_name, source_service, source_host, source_request_id,
       changes, details, schema_version, kafka_topic, kafka_partition, kafka_offset,
       content_hash, ingest_channel, ingest_key_id
FROM {database}.audit_events;

-- The identity index. ReplacingMergeTree on (tenant_id, event_id): a retried insert's copy
-- collapses; readers never need FINAL (any copy answers "stored, with this hash").
-- Small granules: a lookup reads only the granules holding the batch's ids.
-- Same TTL as the events: once an event has expired its id may be used again, and a
-- new event with an occurred_at beyond the retention is refused at validation anyway.
CREATE TABLE IF NOT EXISTS {database}.audit_ids
(
    tenant_id       LowCardinality(String),
    event_id        UUID,
    content_hash    FixedString(16),
    occurred_at     DateTime64(3, 'UTC'),
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, event_id)
TTL toDateTime(occurred_at) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.audit_ids_mv TO {database}.audit_ids AS
SELECT tenant_id, event_id, content_hash, occurred_at, kafka_partition, kafka_offset
FROM {database}.audit_events;

-- Events stored before this migration: indexed once. Their content_hash is all zeros (it
-- was never computed), which no event hashes to, so any later event under one of these
-- ids, even a retry, goes to the dead-letter topic as a conflict: the stored one stays.
INSERT INTO {database}.audit_ids
SELECT tenant_id, event_id, content_hash, occurred_at, kafka_partition, kafka_offset
FROM {database}.audit_events;
