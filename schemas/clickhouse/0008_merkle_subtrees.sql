-- 0008: stored subtree hashes of the Merkle log, so proofs cost O(log n) reads (issue 10).
--
-- One row per complete, aligned subtree of a tenant's tree of height ``level`` >= 8:
-- node_index j covers the leaves [j * 2^level, (j + 1) * 2^level). Go's sumdb/tlog stores
-- every node ("stored hashes"), about two hashes per leaf; C2SP tlog-tiles stores tiles of
-- 256. This keeps every level from 8 up: ~2 rows per 256 leaves to write (the sealer
-- writes each when its last leaf is appended, before a checkpoint covering it is signed),
-- and a proof reads at most two runs of 256 leaves from merkle_leaves (the levels below 8,
-- recomputed inside the leaf's own 256-leaf tile and the tree's right edge) plus one row
-- per higher level (~12 at a million leaves, ~24 at a billion) in one lookup here. Reading
-- whole tiles at every level instead would read up to 256 rows per level for no fewer writes.
-- Derived data, recomputable from merkle_leaves: a missing row makes a proof fall back to
-- the leaves of its range, and a wrong one is caught because every proof is checked
-- against the signed root before it is served (then it is recomputed from the leaves).
-- Replacing, not plain MergeTree: a replayed sealing pass writes the same rows again and
-- they are the same value, not evidence (readers also tolerate unmerged duplicates).
-- Small granules: a lookup of a few dozen (level, node_index) keys touches about one
-- granule per level that has more than 1024 rows, each ~40 KB. No TTL, like the leaves.
CREATE TABLE IF NOT EXISTS {database}.merkle_subtrees
(
    tenant_id   LowCardinality(String),
    level       UInt8,
    node_index  UInt64,
    hash        FixedString(32)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, level, node_index)
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 1024;
