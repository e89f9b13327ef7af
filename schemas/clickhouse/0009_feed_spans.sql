-- 0009: the feed's heads also say where each partition's rows begin and how many there are,
-- so a page can bound its read to the offsets it needs.
--
-- A page reads, per Kafka partition, the first limit+1 positions after the cursor. Bounded
-- only by the head, that read spans every part holding later offsets: ClickHouse reads a
-- partition's range in order from each of them (about 1 ms per part and partition here,
-- 9 parts at 10M rows), and a SIEM's first pull, or one catching up after an outage, pays
-- it on every page. With the tenant's first offset and row count per partition the page
-- estimates how many offsets hold limit+1 of its rows and reads only those (the parts
-- outside are pruned by the primary index); a window that comes back short is read on to
-- the head (store.py, ``feed_page``).
--
-- The same projection as 0003 with two more aggregates: one projection, so the insert
-- builds one aggregate per part, as before. count() also counts copies of a re-delivered
-- batch that are not merged yet: it only sizes the window, never what a page returns.
-- Dropping and re-adding it leaves parts without it until the MATERIALIZE mutation has run
-- on them; meanwhile the heads are read from those parts' rows: same answers, slower.
ALTER TABLE {database}.audit_feed DROP PROJECTION IF EXISTS feed_heads;

ALTER TABLE {database}.audit_feed
    ADD PROJECTION IF NOT EXISTS feed_heads
    (
        SELECT tenant_id, kafka_partition, max(kafka_offset), min(kafka_offset), count()
        GROUP BY tenant_id, kafka_partition
    );

ALTER TABLE {database}.audit_feed MATERIALIZE PROJECTION feed_heads;
