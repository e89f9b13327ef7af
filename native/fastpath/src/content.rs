//! The bytes an event's content hash is taken of, written as orjson writes them.
//!
//! The processor's Python path hashes `orjson.dumps(content, option=OPT_SORT_KEYS)` with
//! BLAKE2b-128 (services/auditstream/events/stored.py, `_hash`). A stored event's hash is
//! what tells an exact copy from a conflict (first write wins), so the native path must give
//! the same 16 bytes for the same event, whichever path decoded it, in this process or in the
//! one that wrote the original. That is why this writes orjson's spelling exactly:
//!
//! * strings: `"` and `\` escaped, `\b \t \n \f \r` short, every other byte below 0x20 as
//!   `\u00xx` (lowercase hex), everything else (DEL, U+2028, non-ASCII) as raw UTF-8;
//! * a UTC datetime: `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`, the fraction only when not zero;
//! * a UUID: lowercase, hyphenated; an object's keys sorted by code point (UTF-8 byte order).
//!
//! tests/events/test_fastpath.py compares the rows (hash included) of both paths over every
//! corpus; the unit tests below pin the spellings against orjson's output.

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use serde_json::Value;

pub(crate) type Hash = [u8; 16];

pub(crate) fn blake2b_16(data: &[u8]) -> Hash {
    let mut hasher = Blake2b::<U16>::new();
    hasher.update(data);
    hasher.finalize().into()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON string as orjson writes it.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn two(out: &mut Vec<u8>, n: i64) {
    out.push(b'0' + (n / 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// A UTC datetime (microseconds since the epoch) as orjson writes an aware `datetime`.
pub(crate) fn utc_datetime(out: &mut Vec<u8>, us: i64) {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = crate::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    out.push(b'"');
    out.extend_from_slice(format!("{y:04}").as_bytes());
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, sod / 3600);
    out.push(b':');
    two(out, sod % 3600 / 60);
    out.push(b':');
    two(out, sod % 60);
    if micros != 0 {
        out.extend_from_slice(format!(".{micros:06}").as_bytes());
    }
    out.extend_from_slice(b"+00:00\"");
}

/// A UUID's 128 bits as orjson writes a `uuid.UUID`.
pub(crate) fn uuid(out: &mut Vec<u8>, bits: u128) {
    out.push(b'"');
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push(b'-');
        }
        out.push(HEX[((bits >> (124 - 4 * i)) & 0xf) as usize]);
    }
    out.push(b'"');
}

/// A change's old/new value (null, a boolean, an int64 or a string: the fast path's subset).
pub(crate) fn scalar(out: &mut Vec<u8>, v: &Option<Value>) {
    match v {
        None | Some(Value::Null) => out.extend_from_slice(b"null"),
        Some(Value::Bool(true)) => out.extend_from_slice(b"true"),
        Some(Value::Bool(false)) => out.extend_from_slice(b"false"),
        Some(Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
        Some(Value::String(s)) => string(out, s),
        // Outside the subset: `safe_scalar` refused the event before anything is written.
        Some(other) => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// `details` as an object with its keys sorted (orjson's OPT_SORT_KEYS).
pub(crate) fn sorted_object(out: &mut Vec<u8>, pairs: &[(&str, &str)]) {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_as_orjson_writes_them() {
        // orjson.dumps("\x00\x01\x08\t\n\x0b\x0c\r\x1f \x7f\u2028é\"\\/")
        let s = "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}\u{2028}é\"\\/";
        assert_eq!(
            text(|o| string(o, s)),
            "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \u{7f}\u{2028}é\\\"\\\\/\""
        );
    }

    #[test]
    fn datetimes_and_uuids_as_orjson_writes_them() {
        // orjson.dumps(datetime(2026,1,2,3,4,5,123000,tzinfo=UTC)) and without the fraction
        let us = 1_767_323_045_123_000;
        assert_eq!(text(|o| utc_datetime(o, us)), "\"2026-01-02T03:04:05.123000+00:00\"");
        assert_eq!(text(|o| utc_datetime(o, us - 123_000)), "\"2026-01-02T03:04:05+00:00\"");
        assert_eq!(text(|o| uuid(o, 255)), "\"00000000-0000-0000-0000-0000000000ff\"");
    }

    #[test]
    fn objects_sorted_by_code_point() {
        let pairs = [
            ("z", "1"),
            ("é", "2"),
            ("a", "3"),
            ("\u{1f600}", "4"),
            ("\u{ffff}", "5"),
        ];
        assert_eq!(
            text(|o| sorted_object(o, &pairs)),
            "{\"a\":\"3\",\"z\":\"1\",\"é\":\"2\",\"\u{ffff}\":\"5\",\"\u{1f600}\":\"4\"}"
        );
    }

    #[test]
    fn blake2b_128_of_the_empty_input() {
        // hashlib.blake2b(b"", digest_size=16).hexdigest()
        let hex: String = blake2b_16(b"").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "cae66941d9efbd404e4d88758ea67670");
    }
}
