//! JSON values as Vectorize metadata values. Vectorize takes strings,
//! numbers, booleans and arrays of strings, and objects of those one level
//! deep (workerd `types/defines/vectorize.d.ts`: `VectorizeVectorMetadata`);
//! it has no null. The rules here decide, for one JSON value, what goes:
//!
//! - [`strict_problem`]: why a value cannot stay as it is (a whole column
//!   sent unchanged is refused with that reason and its path);
//! - [`Spread`]: a JSON object spread into top-level properties, nested
//!   keys joined by a separator (`loc.lines.from` -> `loc_lines_from`), so
//!   every property is top-level and can carry a metadata index; what does
//!   not fit (null, arrays holding non-strings, keys Vectorize refuses,
//!   paths the configuration leaves out) is left out and recorded as an
//!   [`Omission`], never dropped silently.

use serde_json::Value;

use crate::cloudflare::limits::check_metadata_key;
use crate::config::json_path::JsonPath;

/// A value left out of a vector's metadata, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Omission {
    pub path: String,
    pub reason: String,
}

/// One top-level metadata property about to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key as a JSON string (quoted).
    pub key: String,
    /// The value as compact JSON.
    pub text: String,
    /// Where it came from: the column, or the JSON path.
    pub from: JsonPath,
}

impl Entry {
    pub fn new(key: &str, text: String, from: JsonPath) -> Entry {
        Entry { key: Value::String(key.to_string()).to_string(), text, from }
    }

    /// Bytes this entry adds to the metadata object (`"key":value` and a comma).
    pub fn size(&self) -> usize {
        self.key.len() + 1 + self.text.len() + 1
    }
}

/// The JSON type of a value, as errors and reports name it.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Why `v` cannot be a metadata value where no object may be (inside a
/// nested object, or as a declared scalar), if it cannot.
pub fn strict_problem(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("is JSON null, and Vectorize metadata has no null".into()),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
        Value::Array(items) => items.iter().find(|x| !x.is_string()).map(|x| {
            format!("is an array holding a {}; Vectorize takes arrays of strings only", json_type(x))
        }),
        Value::Object(_) => Some("is an object nested deeper than Vectorize's one level".into()),
    }
}

/// Spreads JSON objects into top-level properties.
pub struct Spread<'a> {
    /// Joins the keys of nested objects (`_` by default).
    pub separator: &'a str,
    /// Paths the configuration leaves out (with everything below them).
    pub omit: &'a [JsonPath],
    /// Paths already sent under a name of their own: not repeated.
    pub mapped: &'a [JsonPath],
}

impl Spread<'_> {
    /// Adds `value`, found at `path`, to `out` under `name` (objects:
    /// their members under `name` + separator + key, recursively; an
    /// empty `name` spreads an object's members under their own keys).
    pub fn add(
        &self,
        name: &str,
        path: &JsonPath,
        value: &Value,
        out: &mut Vec<Entry>,
        omitted: &mut Vec<Omission>,
    ) {
        let left_out = |reason: String, omitted: &mut Vec<Omission>| {
            omitted.push(Omission { path: path.to_string(), reason });
        };
        if self.omit.iter().any(|o| path.is_within(o)) {
            return left_out("left out by vector_metadata_omit".into(), omitted);
        }
        if let Value::Object(map) = value {
            for (k, v) in map {
                let child = path.child(k);
                if self.mapped.contains(&child) {
                    continue;
                }
                let key = if name.is_empty() { k.clone() } else { format!("{name}{}{k}", self.separator) };
                self.add(&key, &child, v, out, omitted);
            }
            return;
        }
        // A JSON key holding `.` or `"` makes the joined key invalid too.
        if let Err(e) = check_metadata_key(name) {
            return left_out(format!("its key `{name}` cannot be a metadata key: {e}"), omitted);
        }
        match strict_problem(value) {
            Some(p) => left_out(p, omitted),
            None => out.push(Entry::new(name, value.to_string(), path.clone())),
        }
    }
}

/// Makes `explicit` + `spread` fit `limit` bytes of JSON: spread entries
/// are left out, largest first (ties by key), until the object fits.
/// `Err` names the largest explicit entry when those alone are too big.
pub fn fit_budget<'e>(
    explicit: &'e [Entry],
    spread: &mut Vec<Entry>,
    limit: usize,
    omitted: &mut Vec<Omission>,
) -> Result<(), (&'e Entry, usize)> {
    let size = |e: &[Entry], s: &[Entry]| -> usize {
        // `{` + entries + `}`, minus the comma after the last entry.
        let n: usize = e.iter().chain(s).map(Entry::size).sum();
        (2 + n).saturating_sub(usize::from(!e.is_empty() || !s.is_empty()))
    };
    if size(explicit, spread) <= limit {
        return Ok(());
    }
    spread.sort_by(|a, b| b.size().cmp(&a.size()).then(a.key.cmp(&b.key)));
    let mut dropped = 0;
    while dropped < spread.len() && size(explicit, &spread[dropped..]) > limit {
        dropped += 1;
    }
    for e in spread.drain(..dropped) {
        omitted.push(Omission {
            path: e.from.to_string(),
            reason: format!(
                "{} bytes did not fit the 10 KiB metadata budget (largest left out first)",
                e.text.len()
            ),
        });
    }
    spread.sort_by(|a, b| a.key.cmp(&b.key));
    let total = size(explicit, spread);
    if total <= limit {
        return Ok(());
    }
    match explicit.iter().max_by_key(|e| e.size()) {
        Some(e) => Err((e, total)),
        None => Ok(()),
    }
}

/// The member of an object (recursively) with the largest JSON text, for
/// naming where a too-big value comes from.
pub fn largest_member(path: &JsonPath, v: &Value) -> JsonPath {
    match v {
        Value::Object(map) => map
            .iter()
            .max_by_key(|(_, x)| x.to_string().len())
            .map(|(k, x)| largest_member(&path.child(k), x))
            .unwrap_or_else(|| path.clone()),
        _ => path.clone(),
    }
}
