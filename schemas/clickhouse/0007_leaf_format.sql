-- 0007: the leaf format version of every Merkle leaf (services/auditstream/integrity/canonical.py).
--
-- A leaf hash depends on the JSON shape of row_to_event; when that shape changes, new
-- leaves get a new format number and a verifier must recompute each leaf with the shape
-- it was sealed with. Leaves stored before this column existed are format 1 (the default),
-- which is what they are. Checkpoints also name the format in a signed "leaf-format" line.
ALTER TABLE {database}.merkle_leaves ADD COLUMN IF NOT EXISTS leaf_format UInt8 DEFAULT 1 AFTER leaf_hash;
