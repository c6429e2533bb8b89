//! Source against D1, table by table. Both sides are brought to the same
//! shape: the source batch projected to the D1 columns (in D1 order, the
//! source types, [`d1_read::target_form`]) and the D1 rows read back into
//! those types ([`d1_read::read_table`]). Each side sums its row digests
//! into key buckets; only buckets whose sums differ are read again, row by
//! row with their values, and every difference is classified: missing,
//! extra, or changed (with the differing columns and both values).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::buckets::{bucket_of, Buckets};
use super::d1_read::{read_table, target_form};
use super::digest::{field_digest, key_bytes, key_display, row_digests, RowDigest};
use super::report::{DiffKind, Difference, FieldDiff, TargetKind, TargetReport, MAX_LISTED};
use crate::batch::{TableBatch, TableSpec};
use crate::config::mapping::D1Table;
use crate::error::{Error, Result};
use crate::sink::{BatchSink, SinkFactory, SinkReport};

/// One table's D1 shape: the source columns that feed it and its spec.
#[derive(Clone)]
pub struct D1Shape {
    /// Qualified source table name.
    pub source: String,
    pub table: D1Table,
    schema: SchemaRef,
}

impl D1Shape {
    pub fn new(source: &TableSpec, table: &D1Table) -> Self {
        D1Shape { source: source.qualified(), table: table.clone(), schema: table.spec.arrow_schema() }
    }

    /// The source batch in D1's columns, order and names, in D1's form.
    fn project(&self, batch: &RecordBatch, spec: &TableSpec) -> Result<RecordBatch> {
        let mut cols = Vec::with_capacity(self.table.source_columns.len());
        for c in &self.table.source_columns {
            let i =
                spec.columns.iter().position(|x| &x.name == c).ok_or_else(|| {
                    Error::Internal(format!("column {c} of {} was not read", spec.qualified()))
                })?;
            cols.push(batch.column(i).clone());
        }
        target_form(&RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    fn key(&self) -> Vec<usize> {
        self.table.spec.key_indices()
    }
}

/// A row of a differing bucket, with what the report needs.
#[derive(Clone, Debug)]
pub struct SeenRow {
    pub key: String,
    pub digest: RowDigest,
    /// Per D1 column: the field digest and the value as text, shortened.
    pub fields: Vec<(RowDigest, String)>,
}

pub type Rows = HashMap<Vec<u8>, SeenRow>;

/// What a pass does with each (projected) batch.
#[derive(Clone)]
pub enum Pass {
    /// Sum row digests per bucket.
    Sum,
    /// Keep the rows (with values) of these buckets.
    Collect(Arc<BTreeSet<usize>>),
}

/// The per-table result of a pass over one side.
#[derive(Default)]
pub struct Side {
    pub buckets: Option<Buckets>,
    pub rows: Rows,
}

/// Runs one pass over a batch into `side`.
pub fn absorb(side: &mut Side, batch: &RecordBatch, key: &[usize], n: usize, pass: &Pass) -> Result<()> {
    match pass {
        Pass::Sum => side.buckets.get_or_insert_with(|| Buckets::new(n)).add_batch(batch, key),
        Pass::Collect(wanted) => {
            let digests = row_digests(batch)?;
            for (row, d) in digests.iter().enumerate() {
                let id = key_bytes(batch, key, row)?;
                if !wanted.contains(&bucket_of(&id, n)) {
                    continue;
                }
                let mut fields = Vec::with_capacity(batch.num_columns());
                for col in batch.columns() {
                    fields.push((field_digest(col, row)?, shown(col, row)));
                }
                side.rows.insert(id, SeenRow { key: key_display(batch, key, row), digest: *d, fields });
            }
            Ok(())
        }
    }
}

fn shown(col: &arrow::array::ArrayRef, row: usize) -> String {
    if col.is_null(row) {
        return "NULL".into();
    }
    let text = match col.data_type() {
        arrow::datatypes::DataType::FixedSizeBinary(16) => {
            use arrow::array::AsArray;
            uuid::Uuid::from_slice(col.as_fixed_size_binary().value(row))
                .map(|u| u.to_string())
                .unwrap_or_default()
        }
        _ => arrow::util::display::array_value_to_string(col, row).unwrap_or_else(|_| "?".into()),
    };
    shorten(&text)
}

/// At most ~120 characters, with the length said when cut.
pub fn shorten(s: &str) -> String {
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}… ({} chars)", &s[..i], s.chars().count()),
        None => s.to_string(),
    }
}

/// Sinks that run a pass over the source, per D1 shape.
pub struct SourceSinks {
    pub shapes: Arc<HashMap<String, D1Shape>>,
    pub buckets: usize,
    pub pass: Pass,
    pub result: Arc<Mutex<HashMap<String, Side>>>,
}

struct SourceSink {
    shape: D1Shape,
    spec: Arc<TableSpec>,
    buckets: usize,
    pass: Pass,
    local: Side,
    result: Arc<Mutex<HashMap<String, Side>>>,
}

impl SinkFactory for SourceSinks {
    fn open(&self, table: &Arc<TableSpec>, _: usize) -> Result<Box<dyn BatchSink>> {
        let shape = self
            .shapes
            .get(&table.qualified())
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no D1 shape for {}", table.qualified())))?;
        Ok(Box::new(SourceSink {
            shape,
            spec: table.clone(),
            buckets: self.buckets,
            pass: self.pass.clone(),
            local: Side::default(),
            result: self.result.clone(),
        }))
    }
}

impl BatchSink for SourceSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let b = self.shape.project(&batch.batch, &self.spec)?;
        absorb(&mut self.local, &b, &self.shape.key(), self.buckets, &self.pass)
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let rows =
            self.local.buckets.as_ref().map(|b| b.total().rows).unwrap_or(self.local.rows.len() as u64);
        let mut all =
            self.result.lock().map_err(|_| Error::Internal("a comparison worker panicked".into()))?;
        let side = all.entry(self.shape.source.clone()).or_default();
        if let Some(b) = &self.local.buckets {
            side.buckets.get_or_insert_with(|| Buckets::new(b.len())).merge(b);
        }
        side.rows.extend(self.local.rows);
        Ok(SinkReport { rows, ..SinkReport::default() })
    }
}

/// One pass over a D1 table in a local SQLite file.
pub fn d1_pass(conn: &rusqlite::Connection, shape: &D1Shape, buckets: usize, pass: &Pass) -> Result<Side> {
    let mut side = Side::default();
    if let Pass::Sum = pass {
        side.buckets = Some(Buckets::new(buckets));
    }
    let key = shape.key();
    read_table(conn, &shape.table.name, &shape.table.spec, 2048, &mut |b| {
        absorb(&mut side, &b, &key, buckets, pass)
    })?;
    Ok(side)
}

/// The buckets a `--sample` fraction compares: the first `fraction` of them.
pub fn sampled(buckets: usize, fraction: f64) -> BTreeSet<usize> {
    let n = ((buckets as f64 * fraction).ceil() as usize).clamp(1, buckets);
    (0..n).collect()
}

/// Classifies the rows of the differing buckets into a target report.
pub fn classify(
    shape: &D1Shape,
    location: &str,
    counts: (u64, u64, usize, usize),
    source: &Rows,
    target: &Rows,
    sampled: f64,
) -> TargetReport {
    let (source_rows, target_rows, buckets, differing) = counts;
    let columns: Vec<&str> = shape.table.spec.columns.iter().map(|c| c.name.as_str()).collect();
    let mut found: Vec<Difference> = Vec::new();
    for (id, s) in source {
        match target.get(id) {
            None => found.push(Difference {
                kind: DiffKind::Missing,
                key: s.key.clone(),
                fields: vec![],
                max_abs_diff: None,
            }),
            Some(t) if t.digest != s.digest => {
                let fields = columns
                    .iter()
                    .zip(s.fields.iter().zip(&t.fields))
                    .filter(|(_, (a, b))| a.0 != b.0)
                    .map(|(c, (a, b))| FieldDiff {
                        field: c.to_string(),
                        source: a.1.clone(),
                        target: b.1.clone(),
                    })
                    .collect();
                found.push(Difference {
                    kind: DiffKind::Changed,
                    key: s.key.clone(),
                    fields,
                    max_abs_diff: None,
                });
            }
            Some(_) => {}
        }
    }
    for (id, t) in target {
        if !source.contains_key(id) {
            found.push(Difference {
                kind: DiffKind::Extra,
                key: t.key.clone(),
                fields: vec![],
                max_abs_diff: None,
            });
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key).then(a.kind.cmp(&b.kind)));
    let mut counts: BTreeMap<DiffKind, u64> = BTreeMap::new();
    found.iter().for_each(|d| *counts.entry(d.kind).or_default() += 1);
    found.truncate(MAX_LISTED);
    TargetReport {
        kind: TargetKind::D1,
        location: location.to_string(),
        name: shape.table.name.clone(),
        source_rows,
        target_rows,
        buckets: buckets as u64,
        buckets_differing: differing as u64,
        counts,
        differences: found,
        pending_sync: 0,
        sampled,
        notes: Vec::new(),
    }
}
