//! One row as one Vectorize NDJSON line,
//! `{"id":…,"values":[…],"namespace":…,"metadata":{…}}`, checked against
//! every per-vector limit Vectorize enforces (dimension, id and namespace
//! length, metadata size and keys) before it is written. Floats are the
//! float32 values Postgres sent in binary, written in the shortest form
//! that reads back to the same float32 (the same formatter as D1's JSON
//! arrays), so no precision is lost or invented on the way.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::{check_metadata_key, Rejected, VectorMapping, VectorReport, MAX_NAMED_REJECTS};
use crate::batch::TableSpec;
use crate::cloudflare::limits::{
    VECTORIZE_MAX_DIMS, VECTORIZE_MAX_ID_BYTES, VECTORIZE_MAX_METADATA_BYTES, VECTORIZE_MAX_NAMESPACE_BYTES,
};
use crate::config::project::OnInvalid;
use crate::error::{Error, Result};
use crate::sink::d1::value::{d1_value, push_json_array, D1Value};
use crate::typemap::MetadataForm;
use crate::verify::digest::key_display;

/// What became of one row.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A line was appended.
    Written,
    /// The vector is NULL: nothing to send.
    Null,
    /// Vectorize would refuse it; nothing was appended.
    Invalid(Rejected),
}

/// Writes lines for the rows of one table.
pub struct LineWriter {
    id: usize,
    vector: usize,
    namespace: Option<usize>,
    /// (JSON-quoted key, batch column, form).
    metadata: Vec<(String, usize, MetadataForm)>,
    dims: Option<u32>,
    key_index: Vec<usize>,
    vector_column: String,
    id_column: String,
    on_invalid: OnInvalid,
    table: String,
    /// `false` for comparisons: `values` is written as `[]` and read from
    /// the batch instead ([`LineWriter::values`]), so no float makes a
    /// round trip through text.
    values_as_text: bool,
}

impl LineWriter {
    pub fn new(spec: &TableSpec, m: &VectorMapping) -> Result<Self> {
        let find = |c: &str| {
            spec.columns.iter().position(|x| x.name == c).ok_or_else(|| Error::Config {
                setting: format!("Vectorize mapping of {}", spec.qualified()),
                message: format!("column `{c}` is not among the columns read"),
            })
        };
        let mut metadata = Vec::new();
        for name in &m.metadata {
            let i = find(name)?;
            let form = spec.columns[i].ty.metadata_form().ok_or_else(|| Error::Config {
                setting: format!("vector_metadata of {}", spec.qualified()),
                message: format!(
                    "`{name}` is {}, which Vectorize metadata cannot hold",
                    spec.columns[i].pg_type
                ),
            })?;
            metadata.push((json_string(name), i, form));
        }
        Ok(LineWriter {
            id: find(&m.id)?,
            vector: find(&m.vector)?,
            namespace: m.namespace.as_deref().map(find).transpose()?,
            metadata,
            dims: m.dims,
            key_index: spec.key_indices(),
            vector_column: m.vector.clone(),
            id_column: m.id.clone(),
            on_invalid: m.on_invalid,
            values_as_text: true,
            table: spec.qualified(),
        })
    }

    /// For verification: lines carry `"values":[]`; take the values from
    /// [`LineWriter::values`].
    pub fn for_comparison(mut self) -> Self {
        self.values_as_text = false;
        self
    }

    /// The float32 values of `row`'s vector, straight from the batch
    /// (empty when NULL).
    pub fn values(&self, batch: &RecordBatch, row: usize) -> Vec<f32> {
        let col = batch.column(self.vector);
        if col.is_null(row) {
            return Vec::new();
        }
        let items = match col.data_type() {
            DataType::FixedSizeList(_, _) => col.as_fixed_size_list().value(row),
            DataType::List(_) => col.as_list::<i32>().value(row),
            _ => return Vec::new(),
        };
        match items.data_type() {
            DataType::Float32 => items.as_primitive::<arrow::datatypes::Float32Type>().values().to_vec(),
            _ => Vec::new(),
        }
    }

    /// Runs every row of `batch` through the rules: each line goes to
    /// `emit`; NULL vectors and skipped rows are counted in `report`. Under
    /// the `fail` policy the first row Vectorize would refuse is an error
    /// naming the table, row key, column and limit.
    pub fn write_batch(
        &self,
        batch: &RecordBatch,
        report: &mut VectorReport,
        emit: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        let mut line = String::new();
        for row in 0..batch.num_rows() {
            line.clear();
            match self.line(batch, row, &mut line) {
                Line::Written => {
                    report.written += 1;
                    report.bytes += line.len() as u64;
                    emit(&line)?;
                }
                Line::Null => report.null += 1,
                Line::Invalid(r) if self.on_invalid == OnInvalid::Fail => {
                    return Err(Error::Value {
                        table: self.table.clone(),
                        column: r.column,
                        key: r.key,
                        message: format!("{}, so Vectorize would refuse this vector", r.reason),
                        hint: "fix the row in Postgres, or set [vectorize] on_invalid = \"skip\" \
                               (--on-invalid-vector skip) to load the other vectors and list such rows \
                               in the summary (their D1 rows are still written)"
                            .into(),
                    })
                }
                Line::Invalid(r) => {
                    report.skipped += 1;
                    if report.rejected.len() < MAX_NAMED_REJECTS {
                        report.rejected.push(r);
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends the line (with its `\n`) of `row` to `out`, or says why not.
    pub fn line(&self, batch: &RecordBatch, row: usize, out: &mut String) -> Line {
        let start = out.len();
        match self.try_line(batch, row, out) {
            Ok(true) => Line::Written,
            Ok(false) => Line::Null,
            Err((column, reason)) => {
                out.truncate(start);
                Line::Invalid(Rejected { key: key_display(batch, &self.key_index, row), column, reason })
            }
        }
    }

    fn try_line(
        &self,
        batch: &RecordBatch,
        row: usize,
        out: &mut String,
    ) -> std::result::Result<bool, (String, String)> {
        let vec_col = batch.column(self.vector);
        if vec_col.is_null(row) {
            return Ok(false);
        }
        let values = match vec_col.data_type() {
            DataType::FixedSizeList(_, _) => vec_col.as_fixed_size_list().value(row),
            DataType::List(_) => vec_col.as_list::<i32>().value(row),
            other => return Err((self.vector_column.clone(), format!("is {other}, not a vector"))),
        };
        let n = values.len() as u32;
        if n > VECTORIZE_MAX_DIMS {
            let r = format!("has {n} dimensions; Vectorize takes at most {VECTORIZE_MAX_DIMS}");
            return Err((self.vector_column.clone(), r));
        }
        if let Some(d) = self.dims.filter(|d| *d != n) {
            return Err((self.vector_column.clone(), format!("has {n} dimensions; the index has {d}")));
        }
        let id = self.text(batch, row, self.id, &self.id_column)?;
        if id.is_empty() || id.len() > VECTORIZE_MAX_ID_BYTES {
            let r = format!(
                "id `{}` is {} bytes; Vectorize ids are 1 to {VECTORIZE_MAX_ID_BYTES}",
                short(&id),
                id.len()
            );
            return Err((self.id_column.clone(), r));
        }
        out.push_str("{\"id\":");
        out.push_str(&json_string(&id));
        out.push_str(",\"values\":");
        if self.values_as_text {
            push_json_array(out, values.as_ref());
        } else {
            out.push_str("[]");
        }
        if let Some(i) = self.namespace {
            if !batch.column(i).is_null(row) {
                let col = &batch.schema_ref().field(i).name().clone();
                let ns = self.text(batch, row, i, col)?;
                if ns.len() > VECTORIZE_MAX_NAMESPACE_BYTES {
                    let r = format!(
                        "namespace `{}` is {} bytes; Vectorize allows {VECTORIZE_MAX_NAMESPACE_BYTES}",
                        short(&ns),
                        ns.len()
                    );
                    return Err((col.clone(), r));
                }
                out.push_str(",\"namespace\":");
                out.push_str(&json_string(&ns));
            }
        }
        if !self.metadata.is_empty() {
            out.push_str(",\"metadata\":");
            let m0 = out.len();
            self.push_metadata(batch, row, out)?;
            let size = out.len() - m0;
            if size > VECTORIZE_MAX_METADATA_BYTES {
                return Err((
                    "metadata".into(),
                    format!(
                        "is {size} bytes of JSON; Vectorize allows {VECTORIZE_MAX_METADATA_BYTES} per vector"
                    ),
                ));
            }
        }
        out.push_str("}\n");
        Ok(true)
    }

    fn push_metadata(
        &self,
        batch: &RecordBatch,
        row: usize,
        out: &mut String,
    ) -> std::result::Result<(), (String, String)> {
        out.push('{');
        let mut first = true;
        for (key, i, form) in &self.metadata {
            let col = batch.column(*i);
            // Vectorize has no null: a NULL column is an absent key.
            if col.is_null(row) {
                continue;
            }
            let name = || batch.schema_ref().field(*i).name().clone();
            let value = match form {
                MetadataForm::Json => {
                    let text = col.as_string::<i32>().value(row);
                    let v: Value =
                        serde_json::from_str(text).map_err(|e| (name(), format!("is not JSON: {e}")))?;
                    check_json(&v, 1).map_err(|r| (name(), r))?;
                    v.to_string()
                }
                MetadataForm::StringArray => {
                    let list = col.as_list::<i32>().value(row);
                    let mut items = Vec::with_capacity(list.len());
                    for k in 0..list.len() {
                        match d1_value(list.as_ref(), k) {
                            D1Value::Text(s) => items.push(Value::String(s.into_owned())),
                            _ => {
                                return Err((
                                    name(),
                                    "holds a NULL element; Vectorize string arrays cannot".into(),
                                ))
                            }
                        }
                    }
                    Value::Array(items).to_string()
                }
                MetadataForm::Boolean => (col.as_boolean().value(row)).to_string(),
                MetadataForm::Number => match d1_value(col.as_ref(), row) {
                    D1Value::Integer(v) => v.to_string(),
                    D1Value::Real(f) if f.is_finite() => {
                        serde_json::Number::from_f64(f).map(|n| n.to_string()).unwrap_or_default()
                    }
                    // numeric: its exact decimal text is a valid JSON number unless NaN.
                    D1Value::Text(t) if t.parse::<f64>().is_ok_and(f64::is_finite) => t.into_owned(),
                    _ => continue,
                },
                MetadataForm::String => match d1_value(col.as_ref(), row) {
                    D1Value::Text(t) => json_string(&t),
                    other => json_string(&other.literal()),
                },
            };
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            out.push(':');
            out.push_str(&value);
        }
        out.push('}');
        Ok(())
    }

    /// A column's value as text (id, namespace): integers in decimal,
    /// uuids hyphenated, text as it is.
    fn text(
        &self,
        batch: &RecordBatch,
        row: usize,
        i: usize,
        column: &str,
    ) -> std::result::Result<String, (String, String)> {
        id_text(batch.column(i).as_ref(), row).ok_or_else(|| (column.to_string(), "is NULL".into()))
    }
}

/// A value as a Vectorize id or namespace: the text of its D1 form (the
/// D1 key and the vector id of a row are the same text). `None` for NULL.
pub fn id_text(col: &dyn arrow::array::Array, row: usize) -> Option<String> {
    match d1_value(col, row) {
        D1Value::Null => None,
        D1Value::Integer(v) => Some(v.to_string()),
        D1Value::Text(t) => Some(t.into_owned()),
        other => Some(other.literal()),
    }
}

/// Checks a JSON metadata value at nesting `depth` (1 = a column's value).
fn check_json(v: &Value, depth: usize) -> std::result::Result<(), String> {
    match v {
        Value::Null => Err("holds JSON null, which Vectorize metadata cannot".into()),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
        Value::Array(_) => Err("holds an array of non-strings; Vectorize takes only string arrays".into()),
        Value::Object(_) if depth > 1 => Err("nests objects deeper than Vectorize's one level".into()),
        Value::Object(map) => {
            for (k, x) in map {
                check_metadata_key(k).map_err(|e| format!("key `{}`: {e}", short(k)))?;
                check_json(x, depth + 1)?;
            }
            Ok(())
        }
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
