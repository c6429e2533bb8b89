//! The files of an archive of Cloudflare. Each D1 table is read back in
//! key order (the same D1 gives the same files) into the source's names
//! and types ([`crate::d1::read`]), its vector column filled from the
//! spool by vector id (the id `load` gave the row: [`id_text`]), and
//! written through the archive's Parquet sink as one partition. Each
//! stored vector is compared with the one `load` would send for the
//! archived row ([`vector_at`]): one that differs (namespace, metadata,
//! values), belongs to no row, or whose row would send none is also kept,
//! as it is, in the side table `_vectorize` ([`write_side`]).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, StringBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::DataType;

use super::spool::{Held, Spool};
use super::tables::CfTable;
use crate::archive::ParquetConfig;
use crate::batch::sink::{SinkFactory, SinkReport};
use crate::batch::{ColumnSpec, TableBatch, TableSpec};
use crate::config::mapping::VectorMapping;
use crate::d1::read::read_ordered;
use crate::digest::vector::{canonical, Vector};
use crate::error::{Error, Result};
use crate::sink::vectorize::ndjson::{id_text, vector_at, Line, LineWriter};
use crate::typemap::{ColumnType, Kind};

/// The side table's name (public schema: its folder is `_vectorize/`).
pub const SIDE_TABLE: &str = "_vectorize";

/// Writes table `t` from the D1 file `d1` (and its vectors from `spool`);
/// `each_batch(rows)` hears progress. Returns what the sink wrote and how
/// many archived rows have no vector.
pub fn write_table(
    d1: &Path,
    t: &CfTable,
    mut spool: Option<&mut Spool>,
    parquet: &ParquetConfig,
    batch_rows: usize,
    each_batch: &dyn Fn(u64),
) -> Result<(SinkReport, u64)> {
    let conn = rusqlite::Connection::open_with_flags(d1, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(format!("opening {}", d1.display())))?;
    let spec = Arc::new(t.spec.clone());
    let mut sink = parquet.open(&spec, 0)?;
    let join = match (&t.vector, spool.is_some()) {
        (Some(m), true) => Some(Join::new(t, m)?),
        _ => None,
    };
    let mut without = 0u64;
    let batch_rows = batch_rows_for(t, batch_rows);
    read_ordered(&conn, &t.d1.name, &t.d1.spec, batch_rows, &t.d1.primary_key, &mut |batch, odd| {
        if let Some(u) = odd.first() {
            // The local copy is ours and was checked: only a pgflare bug gets here.
            return Err(Error::Internal(format!("D1 {}: {} changed after the check", t.d1.name, u.found)));
        }
        let out = match (&join, spool.as_deref_mut()) {
            (Some(j), Some(s)) => s.batch(|s| j.assemble(t, &spec, &batch, s, &mut without))?,
            _ => assemble_plain(t, &spec, &batch)?,
        };
        each_batch(out.num_rows() as u64);
        sink.write(&TableBatch { table: spec.clone(), partition: 0, batch: out })
    })?;
    Ok((sink.finish()?, without))
}

/// Rows per batch: `batch_rows`, fewer for wide vectors, so that a batch
/// stays near 2 MiB of vector data as the source reader's do (8,192 rows
/// of 1536 dimensions would be 48 MiB, and the peak a multiple of it).
fn batch_rows_for(t: &CfTable, batch_rows: usize) -> usize {
    let floats: u32 = t.spec.columns.iter().filter_map(|c| c.ty.dims).sum();
    let per_row = floats as usize * 4 + 256;
    batch_rows.min((2 << 20) / per_row).max(64)
}

/// The D1 batch's column holding source column `name`.
fn d1_column(t: &CfTable, batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    t.d1.source_columns.iter().position(|s| s == name).map(|i| batch.column(i).clone())
}

/// A table without vectors: the D1 columns in the archive's order.
fn assemble_plain(t: &CfTable, spec: &TableSpec, batch: &RecordBatch) -> Result<RecordBatch> {
    let cols = spec
        .columns
        .iter()
        .map(|c| {
            d1_column(t, batch, &c.name).ok_or_else(|| {
                Error::Internal(format!("{}: column {} is not in D1", spec.qualified(), c.name))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(spec.arrow_schema(), cols)?)
}

/// How one vector table meets its vectors.
struct Join {
    /// The vector column's position in the archived spec.
    vector: usize,
    /// D1 holds the vector column itself (else Vectorize fills it).
    from_d1: bool,
    /// The line `load` writes for a row, for comparison; `None` when a
    /// column the vector is made from is not in D1 (nothing to compare).
    writer: Option<LineWriter>,
    id: String,
}

impl Join {
    fn new(t: &CfTable, m: &VectorMapping) -> Result<Join> {
        let vector = t.spec.columns.iter().position(|c| c.name == m.vector).ok_or_else(|| {
            Error::Internal(format!("{}: the vector column {} is not archived", t.spec.qualified(), m.vector))
        })?;
        let writer = LineWriter::new(&t.spec, m).ok().map(LineWriter::for_comparison);
        Ok(Join { vector, from_d1: t.d1.source_columns.contains(&m.vector), writer, id: m.id.clone() })
    }

    /// The archived batch: D1's columns, the vector column from D1 or the
    /// spool; each stored vector compared with the row's.
    fn assemble(
        &self,
        t: &CfTable,
        spec: &TableSpec,
        batch: &RecordBatch,
        spool: &Spool,
        without: &mut u64,
    ) -> Result<RecordBatch> {
        let ids: Option<ArrayRef> = d1_column(t, batch, &self.id);
        let mut held: Vec<Option<(String, Held)>> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let id = ids.as_ref().and_then(|c| id_text(c.as_ref(), row));
            held.push(match id {
                Some(id) => spool.take(&id)?.map(|h| (id, h)),
                None => None,
            });
        }
        let mut cols = Vec::with_capacity(spec.columns.len());
        for (i, c) in spec.columns.iter().enumerate() {
            cols.push(match (i == self.vector && !self.from_d1, d1_column(t, batch, &c.name)) {
                (true, _) => vector_column(spec, c, &held)?,
                (false, Some(col)) => col,
                (false, None) => {
                    return Err(Error::Internal(format!(
                        "{}: column {} is not in D1",
                        spec.qualified(),
                        c.name
                    )))
                }
            });
        }
        let out = RecordBatch::try_new(spec.arrow_schema(), cols)?;
        *without += out.column(self.vector).null_count() as u64;
        self.compare(&out, &held, spool)?;
        Ok(out)
    }

    /// Sets aside every stored vector that is not the one `load` would
    /// send for its row.
    fn compare(&self, out: &RecordBatch, held: &[Option<(String, Held)>], spool: &Spool) -> Result<()> {
        let mut line = String::new();
        for (row, h) in held.iter().enumerate() {
            let Some((id, stored)) = h else { continue };
            let Some(w) = &self.writer else {
                spool.set_aside(id, "unchecked")?;
                continue;
            };
            let reason = match vector_at(w, out, row, &mut line)? {
                (Line::Written, Some(expected)) => differences(&expected, id, stored),
                _ => Some("row_sends_none".to_string()),
            };
            if let Some(r) = reason {
                spool.set_aside(id, &r)?;
            }
        }
        Ok(())
    }
}

/// What differs between the vector `load` would send and the stored one,
/// as reasons (`namespace_differs,metadata_differs,values_differ`).
fn differences(expected: &Vector, id: &str, stored: &Held) -> Option<String> {
    let metadata: serde_json::Value =
        stored.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    let mut why = Vec::new();
    if expected.namespace != stored.namespace || expected.id != id {
        why.push("namespace_differs");
    }
    if canonical(&expected.metadata) != canonical(&metadata) {
        why.push("metadata_differs");
    }
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    if bits(&expected.values) != bits(&stored.values) {
        why.push("values_differ");
    }
    (!why.is_empty()).then(|| why.join(","))
}

/// The vector column of a batch from the vectors its rows hold (NULL
/// where the index has none).
fn vector_column(spec: &TableSpec, c: &ColumnSpec, held: &[Option<(String, Held)>]) -> Result<ArrayRef> {
    let field = spec.arrow_schema().field_with_name(&c.name)?.clone();
    let nulls = NullBuffer::from(held.iter().map(Option::is_some).collect::<Vec<_>>());
    match field.data_type() {
        DataType::FixedSizeList(item, n) => {
            let mut values = Vec::with_capacity(held.len() * *n as usize);
            for h in held {
                match h {
                    Some((id, v)) => {
                        check_dims(spec, c, id, v.values.len(), *n as usize)?;
                        values.extend_from_slice(&v.values);
                    }
                    None => values.extend(std::iter::repeat_n(0.0f32, *n as usize)),
                }
            }
            let values = Arc::new(Float32Array::from(values)) as ArrayRef;
            Ok(Arc::new(FixedSizeListArray::try_new(item.clone(), *n, values, Some(nulls))?))
        }
        DataType::List(item) => {
            let lengths = held.iter().map(|h| h.as_ref().map_or(0, |(_, v)| v.values.len()));
            let offsets = OffsetBuffer::from_lengths(lengths);
            let values: Vec<f32> =
                held.iter().flatten().flat_map(|(_, v)| v.values.iter().copied()).collect();
            let values = Arc::new(Float32Array::from(values)) as ArrayRef;
            Ok(Arc::new(ListArray::try_new(item.clone(), offsets, values, Some(nulls))?))
        }
        other => Err(Error::Internal(format!("{}.{} is {other}, not a vector", spec.qualified(), c.name))),
    }
}

fn check_dims(spec: &TableSpec, c: &ColumnSpec, id: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::Value {
        table: spec.qualified(),
        column: c.name.clone(),
        key: format!("vector id {id}"),
        message: format!("Vectorize returned {got} values for a {} column", c.pg_type),
        hint: "the index does not hold vectors of this column's dimension: name the index the load \
               filled (--vectorize-index)"
            .into(),
    })
}

/// The side table: every vector no row holds as it is.
pub fn side_spec(dims: u32) -> TableSpec {
    let col = |name: &str, pg: &str, ty: ColumnType, nullable: bool| ColumnSpec {
        name: name.into(),
        pg_type: pg.into(),
        ty,
        nullable,
        cast: None,
    };
    TableSpec {
        schema: "public".into(),
        name: SIDE_TABLE.into(),
        columns: vec![
            col("id", "text", ColumnType::scalar(Kind::Text), false),
            col("reason", "text", ColumnType::scalar(Kind::Text), false),
            col("namespace", "text", ColumnType::scalar(Kind::Text), true),
            col("metadata", "jsonb", ColumnType::scalar(Kind::Jsonb), true),
            col(
                "values",
                &format!("vector({dims})"),
                ColumnType { dims: Some(dims), ..ColumnType::scalar(Kind::Vector) },
                false,
            ),
        ],
        primary_key: vec!["id".into()],
    }
}

/// Writes the side table from the spool, in id order, `batch_rows` a batch.
pub fn write_side(
    spool: &Spool,
    parquet: &ParquetConfig,
    dims: u32,
    batch_rows: usize,
) -> Result<(TableSpec, SinkReport)> {
    let spec = Arc::new(side_spec(dims));
    let mut sink = parquet.open(&spec, 0)?;
    let mut rows: Vec<(String, String, Held)> = Vec::new();
    let mut flush = |rows: &mut Vec<(String, String, Held)>| -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = side_batch(&spec, rows)?;
        rows.clear();
        sink.write(&TableBatch { table: spec.clone(), partition: 0, batch })
    };
    spool.side_rows(&mut |id, reason, held| {
        rows.push((id, reason, held));
        if rows.len() >= batch_rows.max(1) {
            flush(&mut rows)?;
        }
        Ok(())
    })?;
    flush(&mut rows)?;
    // `flush` borrows the sink until its last use above.
    Ok((TableSpec::clone(&spec), sink.finish()?))
}

fn side_batch(spec: &Arc<TableSpec>, rows: &[(String, String, Held)]) -> Result<RecordBatch> {
    let (mut id, mut reason, mut ns, mut meta) =
        (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let values = spec.columns.iter().position(|c| c.name == "values").unwrap_or(4);
    let held: Vec<Option<(String, Held)>> =
        rows.iter().map(|(i, _, h)| Some((i.clone(), h.clone()))).collect();
    for (i, r, h) in rows {
        id.append_value(i);
        reason.append_value(r);
        ns.append_option(h.namespace.as_deref());
        meta.append_option(h.metadata.as_deref());
    }
    let vectors = vector_column(spec, &spec.columns[values], &held)?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(reason.finish()),
        Arc::new(ns.finish()),
        Arc::new(meta.finish()),
        vectors,
    ];
    Ok(RecordBatch::try_new(spec.arrow_schema(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(ns: Option<&str>, meta: Option<&str>, values: &[f32]) -> Held {
        Held {
            namespace: ns.map(str::to_string),
            metadata: meta.map(str::to_string),
            values: values.to_vec(),
        }
    }

    #[test]
    fn a_stored_vector_differs_by_what_load_would_send_differently() {
        let expected = Vector {
            id: "7".into(),
            values: vec![1.0, -0.0],
            namespace: Some("t1".into()),
            metadata: serde_json::json!({"a": 1, "b": "x"}),
        };
        let same = held(Some("t1"), Some(r#"{"b":"x","a":1.0}"#), &[1.0, -0.0]);
        assert_eq!(differences(&expected, "7", &same), None, "key order and 1 vs 1.0 are one value");
        let moved = held(Some("t2"), Some(r#"{"a":2,"b":"x"}"#), &[1.0, 0.0]);
        assert_eq!(
            differences(&expected, "7", &moved).as_deref(),
            Some("namespace_differs,metadata_differs,values_differ"),
            "-0.0 and 0.0 are other bits"
        );
    }

    #[test]
    fn vectors_fill_their_rows_and_rows_without_one_are_null() {
        let spec = side_spec(2);
        let rows = vec![Some(("a".to_string(), held(None, None, &[1.5, 2.5]))), None];
        let col = vector_column(&spec, &spec.columns[4], &rows).expect("column");
        assert_eq!(col.len(), 2);
        assert!(col.is_valid(0) && col.is_null(1));
        let bad = vec![Some(("b".to_string(), held(None, None, &[1.0])))];
        let e = vector_column(&spec, &spec.columns[4], &bad).expect_err("1 value in a vector(2)");
        assert!(e.to_string().contains("vector id b") && e.to_string().contains("1 values"), "{e}");
    }
}
