//! A row's Vectorize metadata: what the mapping says goes into it, and
//! the rules it must meet. Three ways in (and flags), in this order:
//!
//! 1. whole columns (`vector_metadata`), keyed by column name, in the
//!    form of the type table; a json/jsonb column goes as it is (an object
//!    becomes one nested object) or, when it does not fit, not at all: the
//!    vector is refused, naming the column and the JSON path at fault;
//!    then flags (`vector_metadata_flags`): `tags_billing: true` for each
//!    listed value the row's text array holds (nothing for the others, so
//!    a flag costs metadata bytes only where it is set);
//! 2. JSON paths (`vector_metadata_paths`), each a top-level property
//!    (an object found there is spread under the property's name);
//! 3. spread columns (`vector_metadata_flatten`): a JSON object's members
//!    become top-level properties, nested keys joined by the separator.
//!
//! What 2 and 3 cannot send (see [`super::flatten`]) is left out and
//! counted. The whole object stays under 10 KiB: spread properties are
//! left out, largest first, before a vector is refused; then the refusal
//! names the largest explicit value's column and path.

use std::borrow::Cow;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::flatten::{fit_budget, json_type, largest_member, strict_problem, Entry, Omission, Spread};
use crate::batch::TableSpec;
use crate::cloudflare::limits::VECTORIZE_MAX_METADATA_BYTES;
use crate::config::json_path::JsonPath;
use crate::config::vector_metadata::{FlagColumn, JsonMetadata, PathProperty};
use crate::sink::d1::value::{d1_value, D1Value};
use crate::typemap::MetadataForm;

/// Why a vector cannot be sent: the column, the JSON path inside it (when
/// the fault is there) and the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub column: String,
    pub path: Option<String>,
    pub reason: String,
}

impl Refusal {
    fn at(column: &str, path: Option<&JsonPath>, reason: String) -> Refusal {
        Refusal { column: column.to_string(), path: path.map(JsonPath::to_string), reason }
    }
}

/// Writes the metadata object of rows of one table.
pub struct MetadataWriter {
    /// Whole columns: (name, batch column, form).
    columns: Vec<(String, usize, MetadataForm)>,
    /// Json columns read for paths or spreading: (name, batch column).
    json: Vec<(String, usize)>,
    /// Path properties with the index of their column in `json`.
    paths: Vec<(PathProperty, usize)>,
    /// Spread columns, as indexes into `json`.
    flatten: Vec<usize>,
    /// Flagged array columns: (batch column, flag properties by value).
    flags: Vec<(usize, Vec<(String, String)>)>,
    omit: Vec<JsonPath>,
    /// The paths of path properties (spreading does not repeat them).
    mapped: Vec<JsonPath>,
    separator: String,
}

impl MetadataWriter {
    /// `find` gives a column's index in the batch, or an error naming it.
    pub fn new(
        spec: &TableSpec,
        columns: &[String],
        json: &JsonMetadata,
        flags: &[FlagColumn],
        find: &dyn Fn(&str) -> crate::error::Result<usize>,
    ) -> crate::error::Result<MetadataWriter> {
        let mut whole = Vec::new();
        for name in columns {
            let i = find(name)?;
            let form = spec.columns[i].ty.metadata_form().ok_or_else(|| crate::error::Error::Config {
                setting: format!("vector_metadata of {}", spec.qualified()),
                message: format!(
                    "`{name}` is {}, which Vectorize metadata cannot hold",
                    spec.columns[i].pg_type
                ),
            })?;
            whole.push((name.clone(), i, form));
        }
        let mut json_cols: Vec<(String, usize)> = Vec::new();
        let mut slot = |c: &str| -> crate::error::Result<usize> {
            if let Some(k) = json_cols.iter().position(|(n, _)| n == c) {
                return Ok(k);
            }
            json_cols.push((c.to_string(), find(c)?));
            Ok(json_cols.len() - 1)
        };
        let paths = json
            .paths
            .iter()
            .map(|p| Ok((p.clone(), slot(&p.path.column)?)))
            .collect::<crate::error::Result<Vec<_>>>()?;
        let flatten = json.flatten.iter().map(|c| slot(c)).collect::<crate::error::Result<Vec<_>>>()?;
        let flags = flags
            .iter()
            .map(|f| Ok((find(&f.column)?, f.values.iter().map(|v| (v.clone(), f.property(v))).collect())))
            .collect::<crate::error::Result<Vec<_>>>()?;
        Ok(MetadataWriter {
            flags,
            columns: whole,
            json: json_cols,
            mapped: json.paths.iter().map(|p| p.path.clone()).collect(),
            paths,
            flatten,
            omit: json.omit.clone(),
            separator: json.separator.clone(),
        })
    }

    /// Whether the vectors of this table carry metadata at all.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.paths.is_empty() && self.flatten.is_empty() && self.flags.is_empty()
    }

    /// Appends the metadata object of `row` to `out`; what is left out
    /// goes to `omitted`. `Err` when Vectorize would refuse the vector.
    pub fn write(
        &self,
        batch: &RecordBatch,
        row: usize,
        out: &mut String,
        omitted: &mut Vec<Omission>,
    ) -> Result<(), Refusal> {
        let mut explicit = Vec::new();
        for (name, i, form) in &self.columns {
            let col = batch.column(*i);
            // Vectorize has no null: a NULL column is an absent key.
            if col.is_null(row) {
                continue;
            }
            if let Some(text) = self.column_value(name, col.as_ref(), row, *form, omitted)? {
                explicit.push(Entry::new(name, text, JsonPath::column(name)));
            }
        }
        for (i, by_value) in &self.flags {
            let col = batch.column(*i);
            if col.is_null(row) {
                continue;
            }
            let list = col.as_list::<i32>().value(row);
            let held: Vec<Cow<str>> = (0..list.len())
                .filter_map(|k| match d1_value(list.as_ref(), k) {
                    D1Value::Text(s) => Some(s),
                    _ => None,
                })
                .collect();
            for (value, property) in by_value {
                if held.iter().any(|h| h == value) {
                    explicit.push(Entry::new(property, "true".into(), JsonPath::column(property)));
                }
            }
        }
        let roots = self
            .json
            .iter()
            .map(|(name, i)| parse_json(name, batch.column(*i).as_ref(), row))
            .collect::<Result<Vec<_>, _>>()?;
        let spread = Spread { separator: &self.separator, omit: &self.omit, mapped: &self.mapped };
        for (p, k) in &self.paths {
            let Some(v) = roots[*k].as_ref().and_then(|r| p.path.get(r)) else { continue };
            match p.ty {
                None => spread.add(&p.name, &p.path, v, &mut explicit, omitted),
                Some(ty) if matches_type(v, ty) => {
                    explicit.push(Entry::new(&p.name, v.to_string(), p.path.clone()))
                }
                Some(ty) => omitted.push(Omission {
                    path: p.path.to_string(),
                    reason: format!(
                        "is a JSON {}; `{}` is declared {}",
                        json_type(v),
                        p.name,
                        ty.index_type().unwrap_or("?")
                    ),
                }),
            }
        }
        let mut spread_entries = Vec::new();
        for k in &self.flatten {
            let (name, _) = &self.json[*k];
            match &roots[*k] {
                None => {}
                Some(v @ Value::Object(_)) => {
                    spread.add("", &JsonPath::column(name), v, &mut spread_entries, omitted)
                }
                Some(v) => omitted.push(Omission {
                    path: name.clone(),
                    reason: format!("is a JSON {}, not an object: nothing to spread", json_type(v)),
                }),
            }
        }
        let explicit = first_of_each_key(explicit, &[], omitted);
        let mut spread_entries = first_of_each_key(spread_entries, &explicit, omitted);
        fit_budget(&explicit, &mut spread_entries, VECTORIZE_MAX_METADATA_BYTES, omitted)
            .map_err(|(e, total)| too_big(e, total))?;
        out.push('{');
        for (n, e) in explicit.iter().chain(&spread_entries).enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&e.key);
            out.push(':');
            out.push_str(&e.text);
        }
        out.push('}');
        Ok(())
    }

    /// One whole column's value as JSON text (`None`: left out, e.g. NaN).
    fn column_value(
        &self,
        name: &str,
        col: &dyn Array,
        row: usize,
        form: MetadataForm,
        omitted: &mut Vec<Omission>,
    ) -> Result<Option<String>, Refusal> {
        Ok(Some(match form {
            MetadataForm::Json => {
                let Some(mut v) = parse_json(name, col, row)? else { return Ok(None) };
                remove_omitted(&JsonPath::column(name), &mut v, &self.omit, omitted);
                strict_json(name, &v)?;
                v.to_string()
            }
            MetadataForm::StringArray => {
                let list = col.as_list::<i32>().value(row);
                let mut items = Vec::with_capacity(list.len());
                for k in 0..list.len() {
                    match d1_value(list.as_ref(), k) {
                        D1Value::Text(s) => items.push(Value::String(s.into_owned())),
                        _ => {
                            let r = "holds a NULL element; Vectorize string arrays cannot".to_string();
                            return Err(Refusal::at(name, None, r));
                        }
                    }
                }
                Value::Array(items).to_string()
            }
            MetadataForm::Boolean => col.as_boolean().value(row).to_string(),
            MetadataForm::Number => match d1_value(col, row) {
                D1Value::Integer(v) => v.to_string(),
                D1Value::Real(f) if f.is_finite() => {
                    serde_json::Number::from_f64(f).map(|n| n.to_string()).unwrap_or_default()
                }
                // numeric: its exact decimal text is a valid JSON number unless NaN.
                D1Value::Text(t) if t.parse::<f64>().is_ok_and(f64::is_finite) => t.into_owned(),
                _ => return Ok(None),
            },
            MetadataForm::String => match d1_value(col, row) {
                D1Value::Text(t) => Value::String(t.into_owned()).to_string(),
                other => Value::String(other.literal()).to_string(),
            },
        }))
    }
}

/// A json/jsonb column's value, parsed (`None` for NULL).
fn parse_json(name: &str, col: &dyn Array, row: usize) -> Result<Option<Value>, Refusal> {
    if col.is_null(row) {
        return Ok(None);
    }
    let text = col.as_string::<i32>().value(row);
    serde_json::from_str(text).map(Some).map_err(|e| Refusal::at(name, None, format!("is not JSON: {e}")))
}

fn matches_type(v: &Value, ty: MetadataForm) -> bool {
    matches!(
        (v, ty),
        (Value::String(_), MetadataForm::String)
            | (Value::Number(_), MetadataForm::Number)
            | (Value::Bool(_), MetadataForm::Boolean)
    )
}

/// Takes the `omit` paths out of a whole column's value, counting them.
fn remove_omitted(path: &JsonPath, v: &mut Value, omit: &[JsonPath], omitted: &mut Vec<Omission>) {
    let Value::Object(map) = v else { return };
    map.retain(|k, x| {
        let child = path.child(k);
        if omit.iter().any(|o| child.is_within(o)) {
            omitted.push(Omission {
                path: child.to_string(),
                reason: "left out by vector_metadata_omit".into(),
            });
            return false;
        }
        remove_omitted(&child, x, omit, omitted);
        true
    });
}

/// A whole json column must fit as it is: a scalar, a string array, or an
/// object of those (nested one level under the column's name).
fn strict_json(name: &str, v: &Value) -> Result<(), Refusal> {
    let root = JsonPath::column(name);
    let Value::Object(map) = v else {
        return match strict_problem(v) {
            Some(p) => Err(Refusal::at(name, None, p)),
            None => Ok(()),
        };
    };
    for (k, x) in map {
        let at = root.child(k);
        if let Err(e) = crate::cloudflare::limits::check_metadata_key(k) {
            return Err(Refusal::at(name, Some(&at), format!("key `{}`: {e}", short(k))));
        }
        if x.is_object() {
            let r = format!(
                "is an object inside the nested object `{name}`, and Vectorize metadata nests one level only: \
                 map the keys you need with vector_metadata_paths, or spread the column with \
                 vector_metadata_flatten"
            );
            return Err(Refusal::at(name, Some(&at), r));
        }
        if let Some(p) = strict_problem(x) {
            return Err(Refusal::at(name, Some(&at), p));
        }
    }
    Ok(())
}

/// Keeps the first entry of each key (`taken` keys count as seen); a later
/// one is left out and counted.
fn first_of_each_key(entries: Vec<Entry>, taken: &[Entry], omitted: &mut Vec<Omission>) -> Vec<Entry> {
    let mut seen: std::collections::HashSet<String> = taken.iter().map(|e| e.key.clone()).collect();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if seen.insert(e.key.clone()) {
            out.push(e);
        } else {
            omitted.push(Omission {
                path: e.from.to_string(),
                reason: format!("another metadata property already has the key {}", e.key),
            });
        }
    }
    out
}

/// The refusal of metadata over 10 KiB, naming where most of it comes from.
fn too_big(e: &Entry, total: usize) -> Refusal {
    let path = match (&e.from.keys.is_empty(), serde_json::from_str::<Value>(&e.text)) {
        // A whole json column: the member that weighs most.
        (true, Ok(v @ Value::Object(_))) => Some(largest_member(&e.from, &v)),
        (true, _) => None,
        (false, _) => Some(e.from.clone()),
    };
    let reason = format!(
        "makes the metadata {total} bytes of JSON ({} of them from this value); Vectorize allows \
         {VECTORIZE_MAX_METADATA_BYTES} per vector",
        e.text.len()
    );
    Refusal::at(&e.from.column, path.as_ref().filter(|p| !p.keys.is_empty()), reason)
}

fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
