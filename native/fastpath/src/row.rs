//! A batch of Kafka values straight to `audit_events` rows: decode, validate and enrich in one call.
//!
//! The same row `enrich(parse_event(value))` builds (services/auditstream/events/stored.py),
//! column for column and type for type, content hash included, or `None` where the pydantic
//! path must decide (the fast path only ever accepts, lib.rs). Building the fast path's
//! structs and then enriching them in Python cost ~10 µs per event under the GIL
//! (bench/RESULTS.md, issue 12 stop 33); here the work runs in four passes, two of them with
//! the GIL released:
//!
//! 1. without the GIL: parse and check each value (lib.rs `check`), the retention bound;
//! 2. with it: what the model decides in Python, each distinct question asked once per batch:
//!    `categorize`/`severity` per (action, outcome), `is_secret_name` per name, the canonical
//!    spelling of an IPv6 address, `uuid7_for` for an event without an id. Python stays the
//!    one implementation of those rules;
//! 3. without the GIL: the `changes` text, the redacted details and the content hash
//!    (content.rs, orjson's bytes);
//! 4. with it: the row tuples, strings that repeat within the batch (tenant, action, ...)
//!    made once.

use std::collections::HashMap;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDateTime, PyDict, PyList, PyString, PyTuple, PyTzInfo};
use pyo3::{ffi, intern};

use crate::content::{self, Hash};
use crate::native::{self, Columns, Value};
use crate::{check, civil_from_days, ActorType, Checked, Outcome};

const OUTCOMES: [&str; 3] = ["success", "failure", "unknown"];
const ACTOR_TYPES: [&str; 4] = ["user", "service", "api_key", "system"];
const REDACTED: &str = "[REDACTED]";
const VERSION: &str = "1";

/// What `configure` was given: the model's functions and the objects rows are made of.
struct Config {
    uuid: Py<PyAny>,
    uuid_safe: Py<PyAny>,
    object_new: Py<PyAny>,
    utc: Py<PyAny>,
    canonical_ip: Py<PyAny>,
    categorize: Py<PyAny>,
    severity: Py<PyAny>,
    is_secret_name: Py<PyAny>,
    uuid7_for: Py<PyAny>,
}

static CONFIG: GILOnceCell<Config> = GILOnceCell::new();

/// Hand over what rows are made with (once, from events/fastpath.py).
///
/// `canonical_ip`, `categorize`, `severity`, `is_secret_name` and `uuid7_for` are the
/// model's own functions (model.py, catalog.py, redaction.py, ids.py).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn configure(
    py: Python<'_>,
    uuid: Py<PyAny>,
    uuid_safe: Py<PyAny>,
    utc: Py<PyAny>,
    canonical_ip: Py<PyAny>,
    categorize: Py<PyAny>,
    severity: Py<PyAny>,
    is_secret_name: Py<PyAny>,
    uuid7_for: Py<PyAny>,
) -> PyResult<()> {
    let object = py.import("builtins")?.getattr("object")?;
    let config = Config {
        uuid,
        uuid_safe,
        object_new: object.getattr("__new__")?.unbind(),
        utc,
        canonical_ip,
        categorize,
        severity,
        is_secret_name,
        uuid7_for,
    };
    // A second call (a reload in tests) keeps the first: the objects are the same ones.
    let _ = CONFIG.set(py, config);
    Ok(())
}

/// One event after pass 2: what Python decided for it.
struct Resolved {
    checked: Checked,
    ip: Option<String>,
    event_id: u128,
    class: usize,
    secret_details: Vec<bool>,
    secret_changes: Vec<bool>,
}

/// One event after pass 3.
struct Finished {
    resolved: Resolved,
    changes: String,
    hash: Hash,
}

/// The text of column `column` (COLUMNS / native.rs TYPES order) of an event's row, `""` for a
/// column that is not text or not the event's (the position, the hash: the caller has them).
/// The one spelling of the columns the hash, the Native body and the row tuple share.
fn text_column<'a>(r: &'a Resolved, class: &'a (String, String), changes: &'a str, column: usize) -> &'a str {
    let e = &r.checked.event;
    let a = &e.actor;
    let resource =
        |pick: fn(&crate::Resource) -> &Option<String>| e.resource.as_ref().map_or("", |x| or_empty(pick(x)));
    let source = |pick: fn(&crate::Source) -> &Option<String>| e.source.as_ref().map_or("", |x| or_empty(pick(x)));
    match column {
        1 => &e.tenant_id,
        4 => &e.action,
        5 => &class.0,
        6 => &class.1,
        7 => OUTCOMES[e.outcome.unwrap_or(Outcome::Success) as usize],
        8 => or_empty(&e.reason),
        9 => &a.id,
        10 => ACTOR_TYPES[a.kind.unwrap_or(ActorType::User) as usize],
        11 => or_empty(&a.name),
        12 => or_empty(&a.email),
        13 => r.ip.as_deref().unwrap_or(""),
        14 => or_empty(&a.user_agent),
        15 => resource(|x| &x.kind),
        16 => resource(|x| &x.id),
        17 => resource(|x| &x.name),
        18 => source(|x| &x.service),
        19 => source(|x| &x.host),
        20 => source(|x| &x.request_id),
        21 => changes,
        23 => VERSION,
        28 => "kafka",
        _ => "",
    }
}

/// A finished row with its position, as the Native encoder reads it (native.rs, TYPES order).
struct Flat<'a> {
    f: &'a Finished,
    class: &'a (String, String),
    details: Vec<(&'a str, &'a str)>,
    topic: &'a str,
    partition: u16,
    offset: u64,
    received_ms: i64,
}

impl Columns for Flat<'_> {
    fn value(&self, column: usize) -> Value<'_> {
        let r = &self.f.resolved;
        match column {
            0 => Value::Uuid(r.event_id),
            2 => Value::Millis(r.checked.occurred_us.div_euclid(1000)),
            3 => Value::Millis(self.received_ms),
            22 => Value::Map(&self.details),
            24 => Value::Text(self.topic),
            25 => Value::U16(self.partition),
            26 => Value::U64(self.offset),
            27 => Value::Fixed(&self.f.hash),
            _ => Value::Text(text_column(r, self.class, &self.f.changes, column)),
        }
    }
}

/// The answers of pass 2, each distinct question asked once per batch.
struct Answers<'py> {
    classes: HashMap<String, [Option<usize>; 3]>,
    class_text: Vec<(String, String)>,
    class_objects: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    secret: HashMap<String, bool>,
}

impl<'py> Answers<'py> {
    fn class(&mut self, py: Python<'py>, cfg: &Config, action: &str, outcome: usize) -> PyResult<usize> {
        if let Some(Some(i)) = self.classes.get(action).map(|by_outcome| by_outcome[outcome]) {
            return Ok(i);
        }
        let category = cfg.categorize.bind(py).call1((action,))?;
        let severity = cfg.severity.bind(py).call1((action, OUTCOMES[outcome], &category))?;
        let i = self.class_text.len();
        self.class_text.push((category.extract()?, severity.extract()?));
        self.class_objects.push((category, severity));
        self.classes.entry(action.to_owned()).or_default()[outcome] = Some(i);
        Ok(i)
    }

    fn secret(&mut self, py: Python<'_>, cfg: &Config, name: &str) -> PyResult<bool> {
        if let Some(&s) = self.secret.get(name) {
            return Ok(s);
        }
        let s: bool = cfg.is_secret_name.call1(py, (name,))?.extract(py)?;
        self.secret.insert(name.to_owned(), s);
        Ok(s)
    }
}

fn resolve<'py>(
    py: Python<'py>,
    cfg: &Config,
    answers: &mut Answers<'py>,
    c: Checked,
    position: impl FnOnce() -> PyResult<String>,
) -> PyResult<Option<Resolved>> {
    let e = &c.event;
    let ip = match (&e.actor.ip, c.ip_canonical) {
        (Some(text), false) => match cfg.canonical_ip.call1(py, (text,)) {
            Ok(value) => Some(value.extract::<String>(py)?),
            // An address model.py refuses: pydantic's path words the reason.
            Err(_) => return Ok(None),
        },
        (ip, _) => ip.clone(),
    };
    let event_id = match c.event_id {
        Some(bits) => bits,
        None => {
            // enrich's id for an event without one: time occurred_at, random bits from the position.
            let seed = PyBytes::new(py, position()?.as_bytes());
            let id = cfg.uuid7_for.call1(py, (c.occurred_us.div_euclid(1000), seed))?;
            id.getattr(py, "int")?.extract::<u128>(py)?
        }
    };
    let outcome = e.outcome.unwrap_or(Outcome::Success) as usize;
    let class = answers.class(py, cfg, &e.action, outcome)?;
    let mut secret_details = Vec::new();
    if let Some(pairs) = &e.details {
        for (k, _) in pairs {
            secret_details.push(answers.secret(py, cfg, k)?);
        }
    }
    let mut secret_changes = Vec::new();
    if let Some(changes) = &e.changes {
        for ch in changes {
            secret_changes.push(answers.secret(py, cfg, &ch.field)?);
        }
    }
    Ok(Some(Resolved {
        checked: c,
        ip,
        event_id,
        class,
        secret_details,
        secret_changes,
    }))
}

fn or_empty(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// The details pairs as stored: a secret-looking key's value replaced (redaction.py).
fn stored_details(r: &Resolved) -> Vec<(&str, &str)> {
    match &r.checked.event.details {
        Some(pairs) => pairs
            .iter()
            .zip(&r.secret_details)
            .map(|((k, v), &secret)| (k.as_str(), if secret { REDACTED } else { v.as_str() }))
            .collect(),
        None => Vec::new(),
    }
}

/// Pass 3 for one event: the `changes` column and the content hash.
fn finish(r: Resolved, class_text: &[(String, String)]) -> Finished {
    let e = &r.checked.event;
    // orjson.dumps(redact_changes(changes)): [{"field":..,"old":..,"new":..}], compact.
    let mut changes = Vec::new();
    if let Some(list) = e.changes.as_ref().filter(|l| !l.is_empty()) {
        changes.push(b'[');
        for (i, (ch, &secret)) in list.iter().zip(&r.secret_changes).enumerate() {
            if i > 0 {
                changes.push(b',');
            }
            changes.extend_from_slice(b"{\"field\":");
            content::string(&mut changes, &ch.field);
            changes.extend_from_slice(b",\"old\":");
            if secret {
                content::string(&mut changes, REDACTED);
            } else {
                content::scalar(&mut changes, &ch.old);
            }
            changes.extend_from_slice(b",\"new\":");
            if secret {
                content::string(&mut changes, REDACTED);
            } else {
                content::scalar(&mut changes, &ch.new);
            }
            changes.push(b'}');
        }
        changes.push(b']');
    }
    // Written from &str pieces only, so always UTF-8.
    let changes = String::from_utf8(changes).unwrap_or_default();
    // The content, in stored.py's order: the row's columns but received_at and the ingest ones.
    let class = &class_text[r.class];
    let mut out = Vec::with_capacity(1024);
    out.push(b'[');
    content::uuid(&mut out, r.event_id);
    out.push(b',');
    content::string(&mut out, text_column(&r, class, &changes, 1));
    out.push(b',');
    content::utc_datetime(&mut out, r.checked.occurred_us);
    for column in 4..=21 {
        out.push(b',');
        content::string(&mut out, text_column(&r, class, &changes, column));
    }
    out.push(b',');
    content::sorted_object(&mut out, &stored_details(&r));
    out.push(b',');
    content::string(&mut out, text_column(&r, class, &changes, 23));
    out.push(b']');
    let hash = content::blake2b_16(&out);
    Finished {
        resolved: r,
        changes,
        hash,
    }
}

/// Strings made once per batch where they repeat from row to row.
struct Strings<'py> {
    py: Python<'py>,
    made: HashMap<String, Bound<'py, PyString>>,
}

impl<'py> Strings<'py> {
    fn get(&mut self, s: &str) -> Bound<'py, PyAny> {
        if let Some(obj) = self.made.get(s) {
            return obj.clone().into_any();
        }
        let obj = PyString::new(self.py, s);
        self.made.insert(s.to_owned(), obj.clone());
        obj.into_any()
    }
}

fn make_uuid<'py>(py: Python<'py>, cfg: &Config, bits: u128) -> PyResult<Bound<'py, PyAny>> {
    // uuid.UUID(int=bits) without its Python checks: what UUID.__init__ sets, set directly, as
    // object.__setattr__ would (UUID's own __setattr__ refuses), without a Python call each.
    let u = cfg.object_new.bind(py).call1((cfg.uuid.bind(py),))?;
    let value = bits.into_pyobject(py)?;
    for (name, value) in [
        (intern!(py, "int"), value.as_any()),
        (intern!(py, "is_safe"), cfg.uuid_safe.bind(py)),
    ] {
        // SAFETY: three live references, held for the call; the result is checked.
        if unsafe { ffi::PyObject_GenericSetAttr(u.as_ptr(), name.as_ptr(), value.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(u)
}

/// Pass 4 for one event: the row tuple, in COLUMNS order.
#[allow(clippy::too_many_arguments)]
fn row<'py>(
    py: Python<'py>,
    cfg: &Config,
    f: Finished,
    answers: &Answers<'py>,
    strings: &mut Strings<'py>,
    received_at: &Bound<'py, PyAny>,
    position: (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>),
) -> PyResult<Bound<'py, PyTuple>> {
    let r = &f.resolved;
    let secs = r.checked.occurred_us.div_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let utc = cfg.utc.bind(py).downcast::<PyTzInfo>()?;
    let class = &answers.class_text[r.class];
    let (category, severity) = &answers.class_objects[r.class];
    let (topic, partition, offset) = position;
    let mut values: Vec<Bound<'py, PyAny>> = Vec::with_capacity(native::TYPES.len());
    for (column, (_, kind)) in native::TYPES.iter().enumerate() {
        values.push(match column {
            0 => make_uuid(py, cfg, r.event_id)?,
            2 => PyDateTime::new(
                py,
                y as i32,
                m as u8,
                d as u8,
                (sod / 3600) as u8,
                (sod % 3600 / 60) as u8,
                (sod % 60) as u8,
                r.checked.occurred_us.rem_euclid(1_000_000) as u32,
                Some(utc),
            )?
            .into_any(),
            3 => received_at.clone(),
            5 => category.clone(),
            6 => severity.clone(),
            22 => {
                let details = PyDict::new(py);
                for (k, v) in stored_details(r) {
                    details.set_item(k, v)?;
                }
                details.into_any()
            }
            24 => topic.clone(),
            25 => partition.clone(),
            26 => offset.clone(),
            27 => PyBytes::new(py, &f.hash).into_any(),
            _ => {
                let text = text_column(r, class, &f.changes, column);
                // A low-cardinality column's values repeat from row to row: made once per batch.
                if *kind == "LowCardinality(String)" {
                    strings.get(text)
                } else {
                    PyString::new(py, text).into_any()
                }
            }
        });
    }
    PyTuple::new(py, values)
}

/// Each row's position as the Native body stores it, read once per row (pass 2).
struct Positions {
    topics: Vec<String>,
    topic_objects: Vec<usize>,
    rows: Vec<Option<(usize, u16, u64)>>,
}

impl Positions {
    /// The position of row `i`, or `None` when it does not fit the columns (no body then).
    fn read(
        &mut self,
        topic: &Bound<'_, PyAny>,
        partition: &Bound<'_, PyAny>,
        offset: &Bound<'_, PyAny>,
    ) -> Option<(usize, u16, u64)> {
        // Topics repeat: the same object is looked up by identity, a new one by its text.
        let id = topic.as_ptr() as usize;
        let t = match self.topic_objects.iter().position(|&o| o == id) {
            Some(t) => t,
            None => {
                let text: String = topic.extract().ok()?;
                let t = self.topics.iter().position(|known| *known == text).unwrap_or_else(|| {
                    self.topics.push(text);
                    self.topics.len() - 1
                });
                if self.topic_objects.len() <= t {
                    self.topic_objects.resize(t + 1, 0);
                }
                self.topic_objects[t] = id;
                t
            }
        };
        Some((t, partition.extract().ok()?, offset.extract().ok()?))
    }
}

/// The `audit_events` rows of `values` (Kafka values), `None` where pydantic must decide, and
/// with `encode` the body of their Native insert (native.rs), or `None` when it cannot be.
///
/// `topics`, `partitions` and `offsets` are each value's position, put into its row as the
/// very objects given; `received_at` goes into every row as given (aware UTC, milliseconds;
/// `received_ms` is the same instant in milliseconds since the epoch). `now_us` bounds
/// `occurred_at` as model.py's `now` does, `oldest_us` is the retention bound (an older event
/// is left to pydantic, which refuses it), `max_bytes` the size limit. The ingest channel is
/// `kafka`: the caller replaces the last two columns of a labelled record. The body holds
/// exactly the rows returned, in order, as returned.
#[pyfunction]
#[pyo3(signature = (values, topics, partitions, offsets, received_at, received_ms, now_us, oldest_us, max_bytes, encode))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn enrich_many<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    topics: &Bound<'py, PyList>,
    partitions: &Bound<'py, PyList>,
    offsets: &Bound<'py, PyList>,
    received_at: &Bound<'py, PyAny>,
    received_ms: i64,
    now_us: i64,
    oldest_us: Option<i64>,
    max_bytes: usize,
    encode: bool,
) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyBytes>>)> {
    let cfg = CONFIG
        .get(py)
        .ok_or_else(|| PyTypeError::new_err("configure() was not called"))?;
    let n = values.len();
    if topics.len() != n || partitions.len() != n || offsets.len() != n {
        return Err(PyTypeError::new_err(
            "values, topics, partitions and offsets differ in length",
        ));
    }
    let bound: Vec<Bound<'py, PyAny>> = values.iter().collect();
    let raws: Vec<Option<&[u8]>> = bound
        .iter()
        .map(|value| match value.downcast_exact::<PyBytes>() {
            Ok(b) if !b.as_bytes().is_empty() && b.as_bytes().len() <= max_bytes => Some(b.as_bytes()),
            _ => None,
        })
        .collect();
    // Pass 1, the GIL released: the event loop (and the API) run meanwhile.
    let oldest = oldest_us.unwrap_or(i64::MIN);
    let checked: Vec<Option<Checked>> = py.allow_threads(|| {
        raws.iter()
            .map(|raw| raw.and_then(|r| check(r, now_us)).filter(|c| c.occurred_us >= oldest))
            .collect()
    });
    // Pass 2.
    let mut answers = Answers {
        classes: HashMap::new(),
        class_text: Vec::new(),
        class_objects: Vec::new(),
        secret: HashMap::new(),
    };
    let mut positions = Positions {
        topics: Vec::new(),
        topic_objects: Vec::new(),
        rows: Vec::with_capacity(n),
    };
    let mut encode = encode;
    let mut resolved: Vec<Option<Resolved>> = Vec::with_capacity(n);
    for (i, c) in checked.into_iter().enumerate() {
        let r = match c {
            Some(c) => resolve(py, cfg, &mut answers, c, || {
                let topic: String = topics.get_item(i)?.extract()?;
                let partition: i64 = partitions.get_item(i)?.extract()?;
                let offset: i64 = offsets.get_item(i)?.extract()?;
                Ok(format!("{topic}/{partition}/{offset}"))
            })?,
            None => None,
        };
        if encode && r.is_some() {
            let position = positions.read(&topics.get_item(i)?, &partitions.get_item(i)?, &offsets.get_item(i)?);
            encode = position.is_some();
            positions.rows.push(position);
        } else {
            positions.rows.push(None);
        }
        resolved.push(r);
    }
    // Pass 3, the GIL released.
    let class_text = &answers.class_text;
    let (finished, body): (Vec<Option<Finished>>, Option<Vec<u8>>) = py.allow_threads(|| {
        let finished: Vec<Option<Finished>> = resolved.into_iter().map(|r| r.map(|r| finish(r, class_text))).collect();
        let body = if encode {
            let flats: Vec<Flat<'_>> = finished
                .iter()
                .zip(&positions.rows)
                .filter_map(|(f, p)| match (f, p) {
                    (Some(f), Some((t, partition, offset))) => Some(Flat {
                        f,
                        class: &class_text[f.resolved.class],
                        details: stored_details(&f.resolved),
                        topic: &positions.topics[*t],
                        partition: *partition,
                        offset: *offset,
                        received_ms,
                    }),
                    _ => None,
                })
                .collect();
            (!flats.is_empty()).then(|| native::block(&flats))
        } else {
            None
        };
        (finished, body)
    });
    // Pass 4.
    let mut strings = Strings {
        py,
        made: HashMap::new(),
    };
    let out = PyList::empty(py);
    for (i, f) in finished.into_iter().enumerate() {
        match f {
            Some(f) => {
                let position = (topics.get_item(i)?, partitions.get_item(i)?, offsets.get_item(i)?);
                out.append(row(py, cfg, f, &answers, &mut strings, received_at, position)?)?
            }
            None => out.append(py.None())?,
        }
    }
    Ok((out, body.map(|b| PyBytes::new(py, &b))))
}

/// The columns and types a body from `enrich_many` writes, in order (native.rs).
#[pyfunction]
pub(crate) fn native_columns() -> Vec<(&'static str, &'static str)> {
    native::TYPES.to_vec()
}
