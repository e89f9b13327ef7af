-- 0001: the audit_events table. Column names and order are auditstream.events.stored.COLUMNS.
--
-- Engine: ReplacingMergeTree, because the pipeline is at-least-once (a processor killed
-- mid-batch re-reads from its last commit). Rows with the same sorting key - the same
-- event_id at the same occurred_at for the same tenant - collapse during background
-- merges; until then reads de-duplicate explicitly (the store uses FINAL), so the table
-- never has to be trusted to have merged.
--
-- ORDER BY (tenant_id, occurred_at, event_id): every query is scoped to one tenant and a
-- time range, and pages with a keyset on (occurred_at, event_id); with this key those
-- reads are a contiguous, already sorted range of the primary index in either direction.
--
-- PARTITION BY month: a one-day query touches one partition, and retention drops whole
-- monthly parts instead of rewriting them.
CREATE TABLE IF NOT EXISTS {database}.audit_events
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

    -- Skip indexes for the filters that are not a prefix of the sorting key. Bloom filters
    -- suit high-cardinality ids tested with = / IN: a granule is skipped when the id is
    -- certainly absent. event_id has the lowest false-positive rate because the detail
    -- view looks up exactly one event.
    INDEX idx_event_id    event_id    TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_actor_id    actor_id    TYPE bloom_filter(0.01)  GRANULARITY 1,
    INDEX idx_resource_id resource_id TYPE bloom_filter(0.01)  GRANULARITY 1,
    -- Actions are a small vocabulary per tenant: a set index keeps the exact values of a
    -- granule and skips it for = / IN when the action is not among them.
    INDEX idx_action      action      TYPE set(256)            GRANULARITY 1,
    -- The SIEM feed reads by ingest time; a min/max index lets it skip old granules.
    INDEX idx_received_at received_at TYPE minmax              GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, occurred_at, event_id)
-- Retention by event time. ttl_only_drop_parts: expired data leaves when a whole part has
-- expired (cheap drop) rather than by rewriting parts row by row.
TTL toDateTime(occurred_at) + INTERVAL {retention_days} DAY
SETTINGS
    -- Remember the last 10000 insert blocks per table: a retried insert with the same
    -- insert_deduplication_token (the processor uses its batch's Kafka offsets) is dropped
    -- instead of stored twice. Non-replicated tables keep no such window by default.
    non_replicated_deduplication_window = 10000,
    ttl_only_drop_parts = 1,
    index_granularity = 8192;
