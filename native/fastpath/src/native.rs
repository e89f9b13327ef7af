//! The rows of a batch as the body of `INSERT INTO audit_events (...) FORMAT Native`, one block.
//!
//! The processor encoded its rows with clickhouse-connect's encoder on the validation thread,
//! ~3.3 µs per event in Python under the GIL (bench/RESULTS.md, issue 12 stop 33). The native
//! fast path already holds every value as Rust data, so it writes the body itself, with the GIL
//! released. The bytes are the ones clickhouse-connect writes for the same rows in one block
//! (tests/store/test_native_body.py compares them byte for byte, and inserts both):
//!
//! * block: column count and row count (LEB128), then per column its name and type (LEB128
//!   length + UTF-8) and its data;
//! * `String`: LEB128 length + bytes per row; `FixedString(16)`: the 16 bytes; `UInt16`,
//!   `UInt64`: little-endian; `DateTime64(3, 'UTC')`: Int64 milliseconds, little-endian;
//!   `UUID`: the high 64 bits then the low 64 bits, each little-endian;
//! * `Map(String, String)`: each row's end offset (UInt64, cumulative), then all keys, then
//!   all values, as String columns;
//! * `LowCardinality(String)`: the serialization version (UInt64 1), then the flags (UInt64:
//!   a new dictionary, additional keys, and the index width: `floor(log2(n)) >> 3` picks 1, 2,
//!   4 or 8 bytes for `n` dictionary entries), the dictionary (size, then its strings in order
//!   of first appearance), the row count and each row's index.
//!
//! `TYPES` is what this writes; the store uses a body only when the table's insert types are
//! exactly these (store/store.py), so a migration that changes a column turns it off instead
//! of writing wrong data.

use std::collections::HashMap;

/// The columns in COLUMNS order (services/auditstream/events/stored.py) with their types.
pub(crate) const TYPES: [(&str, &str); 30] = [
    ("event_id", "UUID"),
    ("tenant_id", "LowCardinality(String)"),
    ("occurred_at", "DateTime64(3, 'UTC')"),
    ("received_at", "DateTime64(3, 'UTC')"),
    ("action", "LowCardinality(String)"),
    ("category", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("outcome", "LowCardinality(String)"),
    ("reason", "String"),
    ("actor_id", "String"),
    ("actor_type", "LowCardinality(String)"),
    ("actor_name", "String"),
    ("actor_email", "String"),
    ("actor_ip", "String"),
    ("actor_user_agent", "String"),
    ("resource_type", "LowCardinality(String)"),
    ("resource_id", "String"),
    ("resource_name", "String"),
    ("source_service", "String"),
    ("source_host", "String"),
    ("source_request_id", "String"),
    ("changes", "String"),
    ("details", "Map(String, String)"),
    ("schema_version", "LowCardinality(String)"),
    ("kafka_topic", "LowCardinality(String)"),
    ("kafka_partition", "UInt16"),
    ("kafka_offset", "UInt64"),
    ("content_hash", "FixedString(16)"),
    ("ingest_channel", "LowCardinality(String)"),
    ("ingest_key_id", "String"),
];

/// One value of a row, as the column's encoder takes it.
pub(crate) enum Value<'a> {
    Uuid(u128),
    Text(&'a str),
    Millis(i64),
    Map(&'a [(&'a str, &'a str)]),
    U16(u16),
    U64(u64),
    Fixed(&'a [u8; 16]),
}

/// What a row gives the encoder: its value in column `column` (an index into TYPES).
pub(crate) trait Columns {
    fn value(&self, column: usize) -> Value<'_>;
}

fn leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    leb128(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn text<'a>(v: Value<'a>) -> &'a str {
    match v {
        Value::Text(s) => s,
        _ => "",
    }
}

fn low_cardinality<R: Columns>(out: &mut Vec<u8>, rows: &[R], column: usize) {
    let mut index: Vec<&str> = Vec::new();
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let keys: Vec<u64> = rows
        .iter()
        .map(|row| {
            let s = text(row.value(column));
            *seen.entry(s).or_insert_with(|| {
                index.push(s);
                (index.len() - 1) as u64
            })
        })
        .collect();
    let log2 = 63 - (index.len() as u64).leading_zeros() as u64;
    let ix_type = log2 >> 3;
    out.extend_from_slice(&1u64.to_le_bytes()); // the serialization version (the column prefix)
    out.extend_from_slice(&((1u64 << 9) | (1u64 << 10) | ix_type).to_le_bytes());
    out.extend_from_slice(&(index.len() as u64).to_le_bytes());
    for s in &index {
        string(out, s);
    }
    out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    let width = 1usize << ix_type;
    for key in keys {
        out.extend_from_slice(&key.to_le_bytes()[..width]);
    }
}

fn column<R: Columns>(out: &mut Vec<u8>, rows: &[R], column: usize, kind: &str) {
    match kind {
        "LowCardinality(String)" => low_cardinality(out, rows, column),
        "Map(String, String)" => {
            let maps: Vec<&[(&str, &str)]> = rows
                .iter()
                .map(|row| match row.value(column) {
                    Value::Map(pairs) => pairs,
                    _ => &[],
                })
                .collect();
            let mut end = 0u64;
            for pairs in &maps {
                end += pairs.len() as u64;
                out.extend_from_slice(&end.to_le_bytes());
            }
            for pairs in &maps {
                for (k, _) in pairs.iter() {
                    string(out, k);
                }
            }
            for pairs in &maps {
                for (_, v) in pairs.iter() {
                    string(out, v);
                }
            }
        }
        _ => {
            for row in rows {
                match row.value(column) {
                    Value::Uuid(bits) => {
                        out.extend_from_slice(&((bits >> 64) as u64).to_le_bytes());
                        out.extend_from_slice(&(bits as u64).to_le_bytes());
                    }
                    Value::Text(s) => string(out, s),
                    Value::Millis(ms) => out.extend_from_slice(&ms.to_le_bytes()),
                    Value::U16(n) => out.extend_from_slice(&n.to_le_bytes()),
                    Value::U64(n) => out.extend_from_slice(&n.to_le_bytes()),
                    Value::Fixed(bytes) => out.extend_from_slice(bytes),
                    Value::Map(_) => {} // only in the Map column, written above
                }
            }
        }
    }
}

/// The body of one Native block holding `rows`.
pub(crate) fn block<R: Columns>(rows: &[R]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 400 + 1024);
    leb128(&mut out, TYPES.len() as u64);
    leb128(&mut out, rows.len() as u64);
    for (i, (name, kind)) in TYPES.iter().enumerate() {
        string(&mut out, name);
        string(&mut out, kind);
        column(&mut out, rows, i, kind);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_as_clickhouse_reads_it() {
        let mut out = Vec::new();
        for n in [0, 127, 128, 300, 16_384] {
            leb128(&mut out, n);
        }
        assert_eq!(out, [0x00, 0x7f, 0x80, 0x01, 0xac, 0x02, 0x80, 0x80, 0x01]);
    }

    struct One(String);

    impl Columns for One {
        fn value(&self, _column: usize) -> Value<'_> {
            Value::Text(&self.0)
        }
    }

    #[test]
    fn low_cardinality_index_width_follows_the_dictionary_size() {
        // clickhouse-connect: int(log(len(index), 2)) >> 3; 255 entries -> 1 byte, 256 -> 2.
        for (n, width) in [(1usize, 1usize), (255, 1), (256, 2), (70_000, 4)] {
            let rows: Vec<One> = (0..n).map(|i| One(i.to_string())).collect();
            let mut out = Vec::new();
            low_cardinality(&mut out, &rows, 0);
            let flags = u64::from_le_bytes(out[8..16].try_into().unwrap());
            assert_eq!(1 << (flags & 0xff), width, "{n}");
            let keys_at = out.len() - n * width;
            assert_eq!(
                u64::from_le_bytes(out[keys_at - 8..keys_at].try_into().unwrap()),
                n as u64
            );
        }
    }
}
