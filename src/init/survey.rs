//! What the json/jsonb columns of a table hold, for deciding how they
//! become Vectorize metadata: from a bounded sample of rows, every key
//! path (objects walked, arrays not), how deep, in what share of the
//! sampled rows, with which JSON types and sizes, and what would not fit
//! Vectorize metadata (keys it refuses, nulls, arrays of non-strings,
//! objects deeper than one level when the column goes whole, values that
//! crowd or break the 10 KiB per vector). `inspect` prints it and `init`
//! proposes a mapping from it ([`crate::init`]).

use std::collections::BTreeMap;

use crate::source::conn::SourceConn;
use serde::Serialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;

use crate::batch::quote_ident;
use crate::cloudflare::limits::check_metadata_key;
use crate::cloudflare::limits::VECTORIZE_MAX_METADATA_BYTES;
use crate::config::json_path::JsonPath;
use crate::error::{Error, Result};
use crate::sink::vectorize::flatten::json_type;
use crate::source::TableInfo;
use crate::typemap::Kind;

/// Non-NULL values read per column, at most.
pub const SAMPLE_ROWS: u64 = 1000;

/// Distinct paths kept per column (more are counted, not listed).
pub const MAX_PATHS: usize = 200;

/// A value this large is flagged: it takes a good part of the 10 KiB.
pub const LARGE_VALUE_BYTES: u64 = 1024;

/// One json/jsonb column, surveyed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct JsonSurvey {
    pub column: String,
    /// Non-NULL values read.
    pub sampled_rows: u64,
    /// How they were chosen.
    pub sample: String,
    /// The deepest key path (`{"a": {"b": 1}}`: 2).
    pub max_depth: usize,
    /// The largest value's JSON text, in bytes.
    pub max_bytes: u64,
    /// Values whose whole JSON is over Vectorize's 10 KiB per vector.
    pub over_metadata_limit: u64,
    /// Values that are not JSON objects.
    pub not_objects: u64,
    /// Whether every sampled value could go whole (`vector_metadata`).
    pub fits_whole: bool,
    pub paths: Vec<PathStats>,
    /// Distinct paths beyond [`MAX_PATHS`], not listed.
    pub paths_not_listed: u64,
}

/// One key path of a column.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PathStats {
    /// `metadata.loc.pageNumber` (keys holding `.` quoted).
    pub path: String,
    #[serde(skip)]
    pub json_path: JsonPath,
    /// Keys below the column.
    pub depth: usize,
    /// Sampled rows that have it, and their share of the sample.
    pub rows: u64,
    pub share: f64,
    /// JSON types seen, with counts (`array<string>` for string arrays).
    pub types: BTreeMap<&'static str, u64>,
    /// The largest value's JSON text, in bytes.
    pub max_bytes: u64,
    /// Why it would not fit Vectorize metadata as it is.
    pub problems: Vec<String>,
}

impl PathStats {
    /// The one scalar type of its non-null values, if there is one.
    pub fn scalar_type(&self) -> Option<&'static str> {
        let mut kinds = self.types.keys().copied().filter(|k| *k != "null");
        match (kinds.next(), kinds.next()) {
            (Some(t @ ("string" | "number" | "boolean")), None) => Some(t),
            _ => None,
        }
    }
}

/// Folds sampled values into a [`JsonSurvey`].
pub struct Surveyor {
    column: String,
    sampled: u64,
    max_depth: usize,
    max_bytes: u64,
    over: u64,
    not_objects: u64,
    fits_whole: bool,
    paths: BTreeMap<JsonPath, PathStats>,
    not_listed: std::collections::BTreeSet<JsonPath>,
}

impl Surveyor {
    pub fn new(column: &str) -> Surveyor {
        Surveyor {
            column: column.to_string(),
            sampled: 0,
            max_depth: 0,
            max_bytes: 0,
            over: 0,
            not_objects: 0,
            fits_whole: true,
            paths: BTreeMap::new(),
            not_listed: Default::default(),
        }
    }

    /// One sampled value (its JSON text).
    pub fn add(&mut self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else { return };
        self.sampled += 1;
        let bytes = v.to_string().len() as u64;
        self.max_bytes = self.max_bytes.max(bytes);
        if bytes > VECTORIZE_MAX_METADATA_BYTES as u64 {
            self.over += 1;
            self.fits_whole = false;
        }
        match &v {
            Value::Object(_) => self.walk(&JsonPath::column(&self.column.clone()), &v),
            Value::Null => {
                self.not_objects += 1;
                self.fits_whole = false;
            }
            other => {
                self.not_objects += 1;
                if crate::sink::vectorize::flatten::strict_problem(other).is_some() {
                    self.fits_whole = false;
                }
            }
        }
    }

    fn walk(&mut self, at: &JsonPath, v: &Value) {
        let Value::Object(map) = v else { return };
        for (k, x) in map {
            let p = at.child(k);
            self.max_depth = self.max_depth.max(p.depth());
            // As a whole column: keys checked, objects only one level deep.
            if check_metadata_key(k).is_err()
                || x.is_object() && p.depth() >= 1
                || crate::sink::vectorize::flatten::strict_problem(x).is_some() && !x.is_object()
            {
                self.fits_whole = false;
            }
            self.record(&p, x);
            self.walk(&p, x);
        }
    }

    fn record(&mut self, p: &JsonPath, x: &Value) {
        if !self.paths.contains_key(p) && self.paths.len() >= MAX_PATHS {
            self.not_listed.insert(p.clone());
            return;
        }
        let s = self.paths.entry(p.clone()).or_insert_with(|| PathStats {
            path: p.to_string(),
            json_path: p.clone(),
            depth: p.depth(),
            rows: 0,
            share: 0.0,
            types: BTreeMap::new(),
            max_bytes: 0,
            problems: Vec::new(),
        });
        s.rows += 1;
        let ty = match x {
            Value::Array(items) if items.iter().all(Value::is_string) => "array<string>",
            other => json_type(other),
        };
        *s.types.entry(ty).or_default() += 1;
        s.max_bytes = s.max_bytes.max(x.to_string().len() as u64);
    }

    pub fn finish(self) -> JsonSurvey {
        let n = self.sampled.max(1) as f64;
        let paths = self
            .paths
            .into_values()
            .map(|mut s| {
                s.share = (s.rows as f64 / n * 1000.0).round() / 1000.0;
                s.problems = problems(&s);
                s
            })
            .collect();
        JsonSurvey {
            column: self.column,
            sampled_rows: self.sampled,
            sample: String::new(),
            max_depth: self.max_depth,
            max_bytes: self.max_bytes,
            over_metadata_limit: self.over,
            not_objects: self.not_objects,
            fits_whole: self.fits_whole && self.sampled > 0,
            paths,
            paths_not_listed: self.not_listed.len() as u64,
        }
    }
}

/// What keeps one path from fitting Vectorize metadata as it is.
fn problems(s: &PathStats) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(k) = s.json_path.keys.last() {
        if let Err(e) = check_metadata_key(k) {
            out.push(format!("key: {e}"));
        }
    }
    if s.types.contains_key("object") && s.depth >= 1 {
        out.push(
            "an object inside the column's object: sent whole, the column would nest deeper than \
             Vectorize's one level (map its keys or spread the column)"
                .into(),
        );
    }
    if let Some(n) = s.types.get("null") {
        out.push(format!("null in {n} sampled rows: Vectorize metadata has no null (left out when mapped)"));
    }
    if let Some(n) = s.types.get("array") {
        out.push(format!(
            "an array holding non-strings in {n} sampled rows: Vectorize takes arrays of strings only"
        ));
    }
    if s.max_bytes > VECTORIZE_MAX_METADATA_BYTES as u64 {
        out.push(format!(
            "values up to {} bytes: over Vectorize's {VECTORIZE_MAX_METADATA_BYTES} bytes of metadata per vector",
            s.max_bytes
        ));
    } else if s.max_bytes > LARGE_VALUE_BYTES && !s.types.contains_key("object") {
        out.push(format!(
            "values up to {} bytes of the {VECTORIZE_MAX_METADATA_BYTES}-byte metadata budget (consider leaving it out)",
            s.max_bytes
        ));
    }
    out
}

/// Surveys every json/jsonb column of `info` from a bounded sample: the
/// first [`SAMPLE_ROWS`] non-NULL values, from a page sample
/// (`TABLESAMPLE SYSTEM`) sized for about three times that many rows when
/// the planner knows the table is bigger, else from the whole table.
pub async fn survey_table(conn: &mut SourceConn, info: &TableInfo) -> Result<Vec<JsonSurvey>> {
    let mut out = Vec::new();
    let rows = info.row_estimate.unwrap_or(0);
    let pct = (3.0 * SAMPLE_ROWS as f64 / rows.max(1) as f64 * 100.0).clamp(0.01, 100.0);
    let (sample, how) = if rows > 3 * SAMPLE_ROWS {
        (format!(" TABLESAMPLE SYSTEM ({pct:.4})"), format!("a {pct:.2}% page sample of ~{rows} rows"))
    } else {
        (String::new(), "the whole table".to_string())
    };
    for c in info.spec.columns.iter().filter(|c| matches!(c.ty.kind, Kind::Json | Kind::Jsonb) && !c.ty.array)
    {
        let col = quote_ident(&c.name);
        let sql = format!(
            "SELECT {col}::text FROM {}{sample} WHERE {col} IS NOT NULL LIMIT {SAMPLE_ROWS}",
            info.spec.sql_name()
        );
        let values: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db(format!("sampling the JSON keys of {}.{}", info.spec.qualified(), c.name)))?;
        let mut s = Surveyor::new(&c.name);
        values.iter().for_each(|v| s.add(v));
        let mut survey = s.finish();
        survey.sample = format!("the first {} non-NULL values of {how}", survey.sampled_rows);
        out.push(survey);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_survey_counts_paths_depths_types_and_misfits() {
        let mut s = Surveyor::new("metadata");
        s.add(
            r#"{"source": "a.pdf", "loc": {"pageNumber": 3, "lines": {"from": 1, "to": 40}}, "tags": ["x"]}"#,
        );
        s.add(r#"{"source": "b.pdf", "loc": {"pageNumber": "iv"}, "n": null, "ids": [1, 2], "a.b": 1}"#);
        s.add(&format!(r#"{{"_node_content": "{}"}}"#, "x".repeat(3000)));
        s.add("[1]");
        let v = s.finish();
        assert_eq!((v.sampled_rows, v.max_depth, v.not_objects, v.fits_whole), (4, 3, 1, false));
        let p =
            |path: &str| v.paths.iter().find(|p| p.path == path).unwrap_or_else(|| panic!("{path}: {v:#?}"));
        assert_eq!((p("metadata.source").rows, p("metadata.source").share), (2, 0.5));
        assert_eq!(p("metadata.source").scalar_type(), Some("string"));
        assert_eq!(p("metadata.loc.pageNumber").types, BTreeMap::from([("number", 1), ("string", 1)]));
        assert_eq!(p("metadata.loc.pageNumber").scalar_type(), None);
        assert_eq!(p("metadata.loc.lines.to").depth, 3);
        assert!(p("metadata.loc").problems[0].contains("deeper than Vectorize's one level"));
        assert!(p("metadata.loc.lines").problems[0].contains("deeper"));
        assert_eq!(p("metadata.tags").types, BTreeMap::from([("array<string>", 1)]));
        assert!(p("metadata.tags").problems.is_empty());
        assert!(p("metadata.n").problems[0].starts_with("null in 1 sampled rows"));
        assert!(p("metadata.ids").problems[0].contains("arrays of strings only"));
        assert!(p("metadata.\"a.b\"").problems[0].contains("may not contain `.`"));
        assert!(p("metadata._node_content").problems[0].contains("3002 bytes of the 10240-byte"));
        // A column of flat scalars fits whole; an object inside it does not.
        let mut flat = Surveyor::new("m");
        flat.add(r#"{"a": 1, "b": "x", "c": ["y"]}"#);
        assert!(flat.finish().fits_whole);
        let mut nested = Surveyor::new("m");
        nested.add(r#"{"d": {"e": true}}"#);
        assert!(!nested.finish().fits_whole);
    }
}
