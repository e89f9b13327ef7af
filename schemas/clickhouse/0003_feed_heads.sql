-- 0003: the feed's per-partition heads (highest stored offset per tenant and partition)
-- without reading the tenant's whole audit_feed range.
--
-- Every /v1/feed page needs the partitions a tenant has and, for its watermark, the
-- highest offset in each. Over audit_feed that is a GROUP BY over all the tenant's rows
-- (about a million for the largest tenant at 10M stored events: ~10 ms each, and a page
-- asked twice). An aggregate projection keeps one row per (tenant, partition) and part
-- with max(kafka_offset); the same GROUP BY query then reads a few rows per part, and
-- ClickHouse picks the projection by itself (no query names it).
--
-- Why a projection rather than an AggregatingMergeTree filled by a materialized view:
-- a projection is stored inside each part of audit_feed, so it becomes visible in the
-- same instant as the rows it summarises (never ahead of or behind them), disappears
-- with the part when the TTL drops it, and needs no second write path. A re-delivered
-- batch (copies at the same positions) cannot move a max.
--
-- ReplacingMergeTree refuses projections unless told what a merge does with them:
-- 'rebuild' recomputes the projection of the merged part from its de-duplicated rows
-- (max is unaffected by which copy survived). 'drop' would leave merged parts without
-- it and make the query read the raw columns again. (Nothing deletes from audit_feed; a
-- lightweight DELETE there would now need lightweight_mutation_projection_mode.)
ALTER TABLE {database}.audit_feed MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

ALTER TABLE {database}.audit_feed
    ADD PROJECTION IF NOT EXISTS feed_heads
    (
        SELECT tenant_id, kafka_partition, max(kafka_offset)
        GROUP BY tenant_id, kafka_partition
    );

-- Parts written before this migration: build their projection (a background mutation).
-- Until it has run on a part, queries read that part's raw columns instead: the results
-- are the same, only slower.
ALTER TABLE {database}.audit_feed MATERIALIZE PROJECTION feed_heads;
