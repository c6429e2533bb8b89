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

use super::flatten::Omission;
use super::metadata::{MetadataWriter, Refusal};
use crate::batch::sink::{Omitted, Rejected, VectorReport, MAX_NAMED_REJECTS};
use crate::batch::{BatchShape, TableBatch, TableSpec};
use crate::cloudflare::limits::{VECTORIZE_MAX_DIMS, VECTORIZE_MAX_ID_BYTES, VECTORIZE_MAX_NAMESPACE_BYTES};
use crate::config::mapping::VectorMapping;
use crate::config::project::OnInvalid;
use crate::digest::key_display;
use crate::digest::vector::Vector;
use crate::error::{Error, Result};
use crate::sink::d1::value::{d1_value, push_json_array, D1Value};

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
    metadata: MetadataWriter,
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
    shape: BatchShape,
}

impl LineWriter {
    pub fn new(spec: &TableSpec, m: &VectorMapping) -> Result<Self> {
        let find = |c: &str| {
            spec.columns.iter().position(|x| x.name == c).ok_or_else(|| Error::Config {
                setting: format!("Vectorize mapping of {}", spec.qualified()),
                message: format!("column `{c}` is not among the columns read"),
            })
        };
        let metadata = MetadataWriter::new(spec, &m.metadata, &m.json, &m.flags, &find)?;
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
            shape: BatchShape::of(spec),
        })
    }

    /// For verification: lines carry `"values":[]`; take the values from
    /// [`LineWriter::values`].
    pub fn for_comparison(mut self) -> Self {
        self.values_as_text = false;
        self
    }

    /// The vector id of `row` (`None` when the id column is NULL).
    pub fn id_of(&self, batch: &RecordBatch, row: usize) -> Option<String> {
        id_text(batch.column(self.id).as_ref(), row)
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
        self.shape.check(batch)?;
        let mut line = String::new();
        let mut omitted = Vec::new();
        for row in 0..batch.num_rows() {
            line.clear();
            omitted.clear();
            match self.line_with(batch, row, &mut line, &mut omitted) {
                Line::Written => {
                    report.written += 1;
                    report.bytes += line.len() as u64;
                    count_omissions(report, &omitted, || key_display(batch, &self.key_index, row));
                    emit(&line)?;
                }
                Line::Null => report.null += 1,
                Line::Invalid(r) if self.on_invalid == OnInvalid::Fail => {
                    let column = match &r.path {
                        Some(p) => format!("{}, path {p}", r.column),
                        None => r.column,
                    };
                    return Err(Error::Value {
                        table: self.table.clone(),
                        column,
                        key: r.key,
                        message: format!("{}, so Vectorize would refuse this vector", r.reason),
                        hint: "fix the row in Postgres, or set [vectorize] on_invalid = \"skip\" \
                               (--on-invalid-vector skip) to load the other vectors and list such rows \
                               in the summary (their D1 rows are still written); JSON metadata can be \
                               mapped to fit with vector_metadata_paths / vector_metadata_flatten / \
                               vector_metadata_omit"
                            .into(),
                    });
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
        self.line_with(batch, row, out, &mut Vec::new())
    }

    /// [`LineWriter::line`], recording metadata left out in `omitted`.
    pub fn line_with(
        &self,
        batch: &RecordBatch,
        row: usize,
        out: &mut String,
        omitted: &mut Vec<Omission>,
    ) -> Line {
        let start = out.len();
        match self.try_line(batch, row, out, omitted) {
            Ok(true) => Line::Written,
            Ok(false) => Line::Null,
            Err(r) => {
                out.truncate(start);
                Line::Invalid(Rejected {
                    key: key_display(batch, &self.key_index, row),
                    column: r.column,
                    path: r.path,
                    reason: r.reason,
                })
            }
        }
    }

    fn try_line(
        &self,
        batch: &RecordBatch,
        row: usize,
        out: &mut String,
        omitted: &mut Vec<Omission>,
    ) -> std::result::Result<bool, Refusal> {
        let refuse =
            |column: &str, reason: String| Refusal { column: column.to_string(), path: None, reason };
        let vec_col = batch.column(self.vector);
        if vec_col.is_null(row) {
            return Ok(false);
        }
        let values = match vec_col.data_type() {
            DataType::FixedSizeList(_, _) => vec_col.as_fixed_size_list().value(row),
            DataType::List(_) => vec_col.as_list::<i32>().value(row),
            other => return Err(refuse(&self.vector_column, format!("is {other}, not a vector"))),
        };
        let n = values.len() as u32;
        if n > VECTORIZE_MAX_DIMS {
            let r = format!("has {n} dimensions; Vectorize takes at most {VECTORIZE_MAX_DIMS}");
            return Err(refuse(&self.vector_column, r));
        }
        if let Some(d) = self.dims.filter(|d| *d != n) {
            return Err(refuse(&self.vector_column, format!("has {n} dimensions; the index has {d}")));
        }
        let id = self.text(batch, row, self.id, &self.id_column).map_err(|(c, r)| refuse(&c, r))?;
        if id.is_empty() || id.len() > VECTORIZE_MAX_ID_BYTES {
            let r = format!(
                "id `{}` is {} bytes; Vectorize ids are 1 to {VECTORIZE_MAX_ID_BYTES}",
                short(&id),
                id.len()
            );
            return Err(refuse(&self.id_column, r));
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
                let ns = self.text(batch, row, i, col).map_err(|(c, r)| refuse(&c, r))?;
                if ns.len() > VECTORIZE_MAX_NAMESPACE_BYTES {
                    let r = format!(
                        "namespace `{}` is {} bytes; Vectorize allows {VECTORIZE_MAX_NAMESPACE_BYTES}",
                        short(&ns),
                        ns.len()
                    );
                    return Err(refuse(col, r));
                }
                out.push_str(",\"namespace\":");
                out.push_str(&json_string(&ns));
            }
        }
        if !self.metadata.is_empty() {
            out.push_str(",\"metadata\":");
            self.metadata.write(batch, row, out, omitted)?;
        }
        out.push_str("}\n");
        Ok(true)
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

/// Adds one written row's omissions to the report.
fn count_omissions(report: &mut VectorReport, omitted: &[Omission], key: impl Fn() -> String) {
    for o in omitted {
        report.metadata_omitted += 1;
        let entry =
            Omitted { path: o.path.clone(), reason: o.reason.clone(), count: 1, example: String::new() };
        if report.omissions.iter().any(|x| x.path == o.path && x.reason == o.reason) {
            report.count_omission(entry);
        } else {
            report.count_omission(Omitted { example: key(), ..entry });
        }
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

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Every vector `load` would send for the rows of `batch` (NULL vectors
/// and rows the load's rules refuse are not expected in Vectorize). `w`
/// is a [`LineWriter::for_comparison`]: the line gives id, namespace and
/// metadata, the batch gives the values.
pub fn each_vector(w: &LineWriter, batch: &TableBatch, f: &mut dyn FnMut(Vector)) -> Result<()> {
    let mut line = String::new();
    for row in 0..batch.batch.num_rows() {
        if let (Line::Written, Some(v)) = vector_at(w, &batch.batch, row, &mut line)? {
            f(v);
        }
    }
    Ok(())
}

/// What becomes of one row: the line's fate and, when it is written, the
/// vector `load` sends for it. `line` is scratch space.
pub fn vector_at(
    w: &LineWriter,
    batch: &arrow::record_batch::RecordBatch,
    row: usize,
    line: &mut String,
) -> Result<(Line, Option<Vector>)> {
    line.clear();
    match w.line(batch, row, line) {
        Line::Written => {
            let mut v = vector_from_line(line)?;
            v.values = w.values(batch, row);
            Ok((Line::Written, Some(v)))
        }
        other => Ok((other, None)),
    }
}

/// The id, namespace and metadata of a comparison line (its values come
/// from the batch).
fn vector_from_line(line: &str) -> Result<Vector> {
    let v: Value = serde_json::from_str(line).map_err(|e| Error::Internal(format!("an NDJSON line: {e}")))?;
    Ok(Vector {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        // Filled from the batch by `each_vector`: lines for comparison carry no values.
        values: Vec::new(),
        namespace: v.get("namespace").and_then(Value::as_str).map(str::to_string),
        metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
    })
}
