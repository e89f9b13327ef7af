//! The processor's native fast path: a batch of Kafka values decoded, validated and enriched in Rust.
//!
//! Same contract as the msgspec fast path (services/auditstream/events/fastpath.py): it only
//! ever *accepts*. For each value it returns the event's `audit_events` row (row.rs), the one
//! `enrich` makes of the pydantic model, or `None` for anything it is not sure of; the caller
//! then runs the pydantic path, which accepts the event too or names the field. So no reject
//! reason is worded here, and a rule this file gets stricter than the schema only costs
//! speed, never a wrong verdict. tests/events/test_fastpath.py proves, over the hostile,
//! malformed, schema-agreement and generated corpora, that what this accepts pydantic
//! accepts with an identical row (content hash included).
//!
//! Why Rust: validation and enrichment were the largest share of the processor's GIL time.
//! Here the parse, every rule and the content hash run with the GIL released, for the whole
//! batch; only asking the model's Python functions and building the rows hold it.
//!
//! This file holds the parse and the rules. They are the model's
//! (services/auditstream/events/model.py), written out by hand rather than through a regex
//! engine so that each one reads as the pattern it stands for: the patterns are ASCII
//! classes, anchored at both ends (ECMA-262 / pydantic `$`).

use std::collections::HashSet;
use std::fmt;

use pyo3::prelude::*;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

// Bounds as in model.py: lengths in code points.
const MAX_CHANGES: usize = 100;
const MAX_DETAILS: usize = 64;
const MAX_DETAIL_KEY: usize = 128;
const MAX_DETAIL_VALUE: usize = 4096;
const MAX_CHANGE_VALUE: usize = 4096;
const MAX_IP: usize = 45;
const MAX_FUTURE_US: i64 = 5 * 60 * 1_000_000;

// --- the document, as serde reads it ------------------------------------------------------
//
// `deny_unknown_fields` and serde's derive refuse unknown and repeated keys in every object
// (the duplicate-key rule); `details` checks its own keys. `Option` fields take both an
// absent key and `null`; `present` ones refuse `null` (msgspec's `T | UnsetType`).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    occurred_at: String,
    tenant_id: String,
    action: String,
    actor: Actor,
    resource: Option<Resource>,
    #[serde(default, deserialize_with = "present")]
    outcome: Option<Outcome>,
    reason: Option<String>,
    event_id: Option<String>,
    source: Option<Source>,
    #[serde(default, deserialize_with = "bounded_changes")]
    changes: Option<Vec<Change>>,
    #[serde(default, deserialize_with = "details")]
    details: Option<Vec<(String, String)>>,
    // Read only to refuse any other value; the struct says "1" itself.
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "present")]
    schema_version: Option<SchemaVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Actor {
    id: String,
    #[serde(default, rename = "type", deserialize_with = "present")]
    kind: Option<ActorType>,
    name: Option<String>,
    email: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resource {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    service: Option<String>,
    host: Option<String>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    field: String,
    #[serde(default, deserialize_with = "scalar")]
    old: Option<Value>,
    #[serde(default, deserialize_with = "scalar")]
    new: Option<Value>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum ActorType {
    User,
    Service,
    ApiKey,
    System,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Success,
    Failure,
    Unknown,
}

#[derive(Deserialize)]
enum SchemaVersion {
    #[serde(rename = "1")]
    V1,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// old/new: any JSON value, `null` kept apart from absent only by serde's default.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn bounded_changes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Change>>, D::Error> {
    let changes: Option<Vec<Change>> = Option::deserialize(d)?;
    match changes {
        Some(list) if list.len() > MAX_CHANGES => Err(de::Error::custom("too many changes")),
        other => Ok(other),
    }
}

/// `details`: string to string, at most 64 pairs, no key twice, read in document order.
fn details<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<(String, String)>>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Option<Vec<(String, String)>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of strings or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(Pairs)
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut pairs: Vec<(String, String)> = Vec::new();
            let mut seen: HashSet<String> = HashSet::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                // Stop at the bound, not after reading an unbounded object.
                if pairs.len() == MAX_DETAILS || !seen.insert(key.clone()) {
                    return Err(de::Error::custom("details out of bounds or key repeated"));
                }
                pairs.push((key, value));
            }
            Ok(Some(pairs))
        }
    }
    d.deserialize_option(Pairs)
}

// --- the rules msgspec's bounds and serde's types do not express --------------------------

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn within(s: &Option<String>, max: usize) -> bool {
    s.as_ref().map_or(true, |v| chars(v) <= max)
}

fn id_within(s: &Option<String>, max: usize) -> bool {
    s.as_ref().map_or(true, |v| !v.is_empty() && chars(v) <= max)
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`
fn tenant_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

/// `^[a-z0-9_]+(\.[a-z0-9_]+)+$`, at most 128 long.
fn action_ok(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
            return false;
        }
        parts += 1;
    }
    parts >= 2 && s.len() <= 128
}

/// `^[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+$`, at most 254 long.
fn email_ok(s: &str) -> bool {
    if chars(s) > 254 {
        return false;
    }
    let allowed = |c: char| c != '@' && c > '\u{20}' && c != '\u{7f}';
    let (local, domain) = match s.split_once('@') {
        Some(parts) => parts,
        None => return false,
    };
    if local.is_empty() || !local.chars().all(allowed) || !domain.chars().all(allowed) {
        return false;
    }
    // A dot with at least one character either side of it.
    let d = domain.as_bytes();
    d.len() >= 3 && d[1..d.len() - 1].contains(&b'.')
}

/// `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$` as its 128 bits.
fn uuid_bits(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut n: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let digit = (c as char).to_digit(16)?;
        n = (n << 4) | digit as u128;
    }
    Some(n)
}

/// Dotted-quad IPv4 without leading zeros (model.py's `_CANONICAL_IPV4`): valid and canonical.
fn canonical_ipv4(s: &str) -> bool {
    let mut octets = 0;
    for part in s.split('.') {
        let b = part.as_bytes();
        if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
            return false;
        }
        let value: u32 = part.parse().unwrap_or(256);
        if value > 255 {
            return false;
        }
        octets += 1;
    }
    octets == 4
}

// occurred_at: OCCURRED_AT_PATTERN, a real calendar date, then UTC milliseconds.
// `^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]`
// `([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |n, &c| n * 10 + (c - b'0') as i64))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `occurred_at` as UTC microseconds since the epoch, truncated to the millisecond.
fn occurred_at_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1970..=2999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        // The first three digits, right-padded: truncation to the millisecond.
        for i in 0..3 {
            millis = millis * 10 + if i < n { (rest[1 + i] - b'0') as i64 } else { 0 };
        }
        rest = &rest[1 + n..];
    }
    let offset_s = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local - offset_s) * 1_000_000 + millis * 1000)
}

/// old/new inside the fast path's subset: null, a boolean, an int64, a bounded string.
fn safe_scalar(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(_)) => true,
        Some(Value::String(s)) => chars(s) <= MAX_CHANGE_VALUE,
        Some(Value::Number(n)) => n.is_i64(),
        _ => false,
    }
}

/// What the rules made of one event, before any Python object exists.
struct Checked {
    event: Event,
    occurred_us: i64,
    event_id: Option<u128>,
    ip_canonical: bool,
}

fn check(raw: &[u8], now_us: i64) -> Option<Checked> {
    let event: Event = serde_json::from_slice(raw).ok()?;
    let actor = &event.actor;
    if !tenant_ok(&event.tenant_id)
        || !action_ok(&event.action)
        || actor.id.is_empty()
        || chars(&actor.id) > 256
        || !within(&actor.name, 256)
        || !within(&actor.user_agent, 1024)
        || !within(&event.reason, 1024)
    {
        return None;
    }
    if let Some(email) = &actor.email {
        if !email_ok(email) {
            return None;
        }
    }
    let mut ip_canonical = true;
    if let Some(ip) = &actor.ip {
        if chars(ip) > MAX_IP {
            return None;
        }
        ip_canonical = canonical_ipv4(ip);
    }
    if let Some(r) = &event.resource {
        if !id_within(&r.kind, 64) || !id_within(&r.id, 256) || !within(&r.name, 256) {
            return None;
        }
    }
    if let Some(s) = &event.source {
        if !within(&s.service, 128) || !within(&s.host, 255) || !within(&s.request_id, 128) {
            return None;
        }
    }
    if let Some(changes) = &event.changes {
        for c in changes {
            if c.field.is_empty() || chars(&c.field) > 256 || !safe_scalar(&c.old) || !safe_scalar(&c.new) {
                return None;
            }
        }
    }
    if let Some(pairs) = &event.details {
        for (k, v) in pairs {
            if k.is_empty() || chars(k) > MAX_DETAIL_KEY || chars(v) > MAX_DETAIL_VALUE {
                return None;
            }
        }
    }
    let event_id = match &event.event_id {
        None => None,
        Some(text) => Some(uuid_bits(text)?),
    };
    let occurred_us = occurred_at_us(&event.occurred_at)?;
    if occurred_us > now_us + MAX_FUTURE_US {
        return None;
    }
    Some(Checked { event, occurred_us, event_id, ip_canonical })
}

// --- the Python side: row.rs (rows), content.rs (the content hash's bytes) -----------------

mod content;
mod native;
mod row;

#[pymodule]
fn _fastpath_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(row::configure, m)?)?;
    m.add_function(wrap_pyfunction!(row::enrich_many, m)?)?;
    m.add_function(wrap_pyfunction!(row::native_columns, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        for days in [-1, 0, 59, 10_957, 20_000, 376_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(occurred_at_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(occurred_at_us("1970-01-01T01:00:00.1239+01:00"), Some(123_000));
        assert_eq!(occurred_at_us("2024-02-30T00:00:00Z"), None);
        assert!(occurred_at_us("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn patterns() {
        assert!(tenant_ok("a") && !tenant_ok("-a") && !tenant_ok(&"a".repeat(65)));
        assert!(action_ok("a.b") && !action_ok("a") && !action_ok("a..b") && !action_ok("A.b"));
        assert!(email_ok("a@b.c") && !email_ok("a@.c") && !email_ok("a@b.") && !email_ok("a@b@c.d"));
        assert!(canonical_ipv4("10.0.0.1") && !canonical_ipv4("010.0.0.1") && !canonical_ipv4("1.2.3"));
        assert_eq!(uuid_bits("00000000-0000-0000-0000-00000000000f"), Some(15));
    }
}
