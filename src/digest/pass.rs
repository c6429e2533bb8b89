//! One pass of the bucket engine over one side of a comparison, in D1's
//! shape: the source batch projected to the D1 columns (in D1 order, the
//! source types, [`crate::d1::read::target_form`]) or the D1 rows read back
//! into those types ([`crate::d1::read::read_table`]). A `Sum` pass adds
//! row digests into key buckets; a `Refine` pass sums them into the finer
//! parts of some differing buckets ([`super::buckets::Refinement`]); a
//! `Collect` pass keeps the rows (with their values) of the buckets (or
//! parts) that differ. verify compares two sides
//! with it; sync's delete sweep finds the keys D1 holds and the source no
//! longer has.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::buckets::{bucket_of, identity, Buckets, Parts, Refinement};
use super::shown::{shorten, Kept, SIDE_BUDGET};
use super::{field_digest, key_display, row_digests, RowDigest};
use crate::batch::collect::{Collector, Collectors};
use crate::batch::{TableBatch, TableSpec};
use crate::config::mapping::D1Table;
use crate::d1::read::{read_rows, read_table, rowid_span, table_exists, target_form, Unreadable};
use crate::error::{Error, Result};

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
    pub(super) fn project(&self, batch: &RecordBatch, spec: &TableSpec) -> Result<RecordBatch> {
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

    pub(super) fn key(&self) -> Vec<usize> {
        self.table.spec.key_indices()
    }
}

/// A row of a differing bucket, with what the report needs.
#[derive(Clone, Debug)]
pub struct SeenRow {
    /// The key as the report shows it (`id=7`), or for a table without
    /// one `row digest` and the digest's first bytes.
    pub key: String,
    pub digest: RowDigest,
    /// Per column: the field digest and the value as text, shortened.
    pub fields: Vec<(RowDigest, String)>,
    /// Per column: the first characters of a long text, to show where it
    /// differs from the other side's (see [`super::shown`]).
    pub kept: Vec<Option<Kept>>,
    /// Where the row lives on its side (`file.parquet#17`), when a side
    /// says so; empty otherwise.
    pub location: String,
}

pub type Rows = HashMap<Vec<u8>, SeenRow>;

/// What a pass does with each (projected) batch.
#[derive(Clone)]
pub enum Pass {
    /// Sum row digests per bucket.
    Sum,
    /// Sum row digests per part of the split buckets (rows of other
    /// buckets are passed over).
    Refine(Arc<Refinement>),
    /// Keep the rows (with values) of these buckets.
    Collect(Arc<BTreeSet<usize>>),
}

/// The per-table result of a pass over one side.
pub struct Side {
    pub buckets: Option<Buckets>,
    /// A `Refine` pass's sums, by part.
    pub parts: Parts,
    pub rows: Rows,
    /// Bytes left for long texts' kept prefixes ([`super::shown::SIDE_BUDGET`]).
    pub kept_budget: usize,
}

impl Default for Side {
    fn default() -> Self {
        Side { buckets: None, parts: Parts::new(), rows: Rows::default(), kept_budget: SIDE_BUDGET }
    }
}

impl Side {
    /// Adds what another reader of the same side found (other key ranges).
    pub fn merge(&mut self, other: Side) {
        if let Some(b) = &other.buckets {
            self.buckets.get_or_insert_with(|| Buckets::new(b.len())).merge(b);
        }
        for (part, sum) in other.parts {
            self.parts.entry(part).or_default().merge(&sum);
        }
        self.rows.extend(other.rows);
    }
}

/// Runs one pass over a batch into `side`. `odd` are the D1 values of the
/// batch that are not in pgflare's form (none on the source side): their
/// rows get digests no faithful row has, so they differ, and the
/// drill-down shows the stored value.
pub fn absorb(
    side: &mut Side,
    batch: &RecordBatch,
    key: &[usize],
    n: usize,
    pass: &Pass,
    odd: &[Unreadable],
) -> Result<()> {
    absorb_at(side, batch, key, n, pass, odd, &|_| String::new())
}

/// [`absorb`], with where each row of the batch lives (`location(row)`)
/// kept on the rows a `Collect` pass keeps.
pub fn absorb_at(
    side: &mut Side,
    batch: &RecordBatch,
    key: &[usize],
    n: usize,
    pass: &Pass,
    odd: &[Unreadable],
    location: &dyn Fn(usize) -> String,
) -> Result<()> {
    let mut digests = row_digests(batch)?;
    for u in odd {
        if let Some(d) = digests.get_mut(u.row) {
            *d = unreadable_digest(Some(d), u);
        }
    }
    // Bucketed by the same identity in both passes (the key, or the
    // digest when the table has none), so pass 2 finds pass 1's rows.
    let id_of = |row: usize, d: &RowDigest| -> Result<Vec<u8>> {
        let mut id = identity(batch, key, row, d)?;
        for u in odd.iter().filter(|u| u.row == row && key.contains(&u.column)) {
            // Unreadable keys stand for themselves, not for NULL.
            id.extend_from_slice(&unreadable_digest(None, u));
        }
        Ok(id)
    };
    match pass {
        Pass::Sum => {
            let b = side.buckets.get_or_insert_with(|| Buckets::new(n));
            for (row, d) in digests.iter().enumerate() {
                b.add_row(&id_of(row, d)?, d);
            }
            Ok(())
        }
        Pass::Refine(r) => {
            for (row, d) in digests.iter().enumerate() {
                if let Some(part) = r.part_of(&id_of(row, d)?) {
                    side.parts.entry(part).or_default().add(d);
                }
            }
            Ok(())
        }
        Pass::Collect(wanted) => {
            for (row, d) in digests.iter().enumerate() {
                let id = id_of(row, d)?;
                if !wanted.contains(&bucket_of(&id, n)) {
                    continue;
                }
                let mut fields = Vec::with_capacity(batch.num_columns());
                let mut kept = Vec::with_capacity(batch.num_columns());
                for (c, col) in batch.columns().iter().enumerate() {
                    match odd.iter().find(|u| u.row == row && u.column == c) {
                        Some(u) => {
                            fields.push((
                                unreadable_digest(None, u),
                                shorten(&format!("unreadable: {}", u.found)),
                            ));
                            kept.push(None);
                        }
                        None => {
                            let text = shown(col, row);
                            kept.push(Kept::of(&text, &mut side.kept_budget));
                            fields.push((field_digest(col, row)?, shorten(&text)));
                        }
                    }
                }
                let mut shown_key = match key.is_empty() {
                    true => format!("row digest {}", hex::encode(&d[..8])),
                    false => key_display(batch, key, row),
                };
                for u in odd.iter().filter(|u| u.row == row && key.contains(&u.column)) {
                    shown_key.push_str(&format!(
                        " ({} unreadable: {})",
                        batch.schema().field(u.column).name(),
                        u.found
                    ));
                }
                side.rows.insert(
                    id,
                    SeenRow { key: shown_key, digest: *d, fields, kept, location: location(row) },
                );
            }
            Ok(())
        }
    }
}

/// A digest no faithful row or field can have: a marker, the stored value
/// and its column, chained onto the row digest (`row`) when given.
fn unreadable_digest(row: Option<&RowDigest>, u: &Unreadable) -> RowDigest {
    let mut h = blake3::Hasher::new();
    h.update(b"pgflare-unreadable-d1-value\0");
    if let Some(d) = row {
        h.update(d);
    }
    h.update(&(u.column as u64).to_le_bytes());
    h.update(&(u.raw.len() as u64).to_le_bytes());
    h.update(&u.raw);
    *h.finalize().as_bytes()
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
    text
}

/// Runs a pass over one partition of the source: in its D1 shape (what D1
/// should hold, for verify and the sweep), or as read (the archive, which
/// holds the source's exact values).
pub struct SourceSink {
    shape: Option<D1Shape>,
    spec: Arc<TableSpec>,
    /// Where the result goes (the qualified source name).
    name: String,
    key: Vec<usize>,
    buckets: usize,
    pass: Pass,
    local: Side,
    /// Rows fed (the report's `rows`).
    seen: u64,
}

/// Sinks that run `pass` over the source tables of `shapes` (by qualified
/// name), in their D1 shape, and merge each table's side into `result`.
pub fn source_sinks(
    shapes: Arc<HashMap<String, D1Shape>>,
    buckets: usize,
    pass: Pass,
    result: Arc<Mutex<HashMap<String, Side>>>,
) -> Collectors<SourceSink> {
    Collectors::new(result, move |table, _| {
        let shape = shapes
            .get(&table.qualified())
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no D1 shape for {}", table.qualified())))?;
        let (name, key) = (shape.source.clone(), shape.key());
        Ok(SourceSink {
            shape: Some(shape),
            spec: table.clone(),
            name,
            key,
            buckets,
            pass: pass.clone(),
            local: Side::default(),
            seen: 0,
        })
    })
}

/// Sinks that run `pass` over tables as read (every column, the table's
/// own key, exact values), merging each table's side into `result`.
pub fn table_sinks(
    buckets: usize,
    pass: Pass,
    result: Arc<Mutex<HashMap<String, Side>>>,
) -> Collectors<SourceSink> {
    Collectors::new(result, move |table, _| {
        Ok(SourceSink {
            shape: None,
            spec: table.clone(),
            name: table.qualified(),
            key: table.key_indices(),
            buckets,
            pass: pass.clone(),
            local: Side::default(),
            seen: 0,
        })
    })
}

impl Collector for SourceSink {
    type Out = HashMap<String, Side>;

    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.seen += batch.batch.num_rows() as u64;
        match &self.shape {
            Some(shape) => {
                let b = shape.project(&batch.batch, &self.spec)?;
                absorb(&mut self.local, &b, &self.key, self.buckets, &self.pass, &[])
            }
            None => absorb(&mut self.local, &batch.batch, &self.key, self.buckets, &self.pass, &[]),
        }
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        out.entry(self.name).or_default().merge(self.local);
        self.seen
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
        absorb(&mut side, &b, &key, buckets, pass, &[])
    })?;
    Ok(side)
}

/// One pass over the D1 table of `shape` in the SQLite file `path`, read
/// in up to `threads` rowid ranges on as many connections at once (parsing
/// vectors back from JSON text is the cost, and it divides). `None` when
/// the table does not exist. Values not in pgflare's form do not stop the
/// read: their rows differ (see [`absorb`]).
pub fn d1_pass_file(
    path: &Path,
    shape: &D1Shape,
    buckets: usize,
    pass: &Pass,
    threads: usize,
) -> Result<Option<Side>> {
    let name = &shape.table.name;
    let conn = open_read_only(path)?;
    if !table_exists(&conn, name)? {
        return Ok(None);
    }
    let ranges: Vec<Option<(i64, i64)>> = match rowid_span(&conn, name) {
        Some((lo, hi)) if threads > 1 && hi > lo => {
            // Equal rowid spans (i128: no overflow at the i64 ends).
            let (lo, span, t) = (lo as i128, hi as i128 - lo as i128 + 1, threads as i128);
            (0..t)
                .map(|i| (lo + span * i / t, lo + span * (i + 1) / t - 1))
                .filter(|(a, b)| a <= b)
                .map(|(a, b)| Some((a as i64, b as i64)))
                .collect()
        }
        _ => vec![None],
    };
    drop(conn);
    let key = shape.key();
    let results: Vec<Result<Side>> = std::thread::scope(|s| {
        let readers: Vec<_> = ranges
            .iter()
            .map(|&range| {
                let key = &key;
                s.spawn(move || -> Result<Side> {
                    let conn = open_read_only(path)?;
                    let mut side = Side::default();
                    if let Pass::Sum = pass {
                        side.buckets = Some(Buckets::new(buckets));
                    }
                    read_rows(&conn, name, &shape.table.spec, 2048, range, &mut |b, odd| {
                        absorb(&mut side, &b, key, buckets, pass, &odd)
                    })?;
                    Ok(side)
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| {
                r.join().unwrap_or_else(|_| Err(Error::Internal(format!("a reader of D1 {name} panicked"))))
            })
            .collect()
    });
    let mut all = Side::default();
    for side in results {
        all.merge(side?);
    }
    Ok(Some(all))
}

fn open_read_only(path: &Path) -> Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::sqlite(format!("opening {}", path.display())))
}

/// The key-only view of a table for a pass over keys only (sync's delete sweep, verify's pending rows): `(source spec, D1 table)`.
pub fn key_views(source: &TableSpec, d1: &D1Table) -> Result<(TableSpec, D1Table)> {
    if source.primary_key.is_empty() {
        return Err(Error::Config {
            setting: source.qualified(),
            message: "has no primary key: rows deleted in the source cannot be found in D1; \
                      declare primary_key in pgflare.toml or sync with --no-hard-deletes"
                .into(),
        });
    }
    // Columns in key order: deletes list key tuples in that order.
    let mut src = source.clone();
    src.columns = source.primary_key.iter().filter_map(|k| source.column(k).cloned()).collect();
    let mut spec = d1.spec.clone();
    spec.columns = d1.primary_key.iter().filter_map(|k| d1.spec.column(k).cloned()).collect();
    let source_columns = spec
        .columns
        .iter()
        .map(|c| {
            d1.spec
                .columns
                .iter()
                .position(|x| x.name == c.name)
                .map(|i| d1.source_columns[i].clone())
                .ok_or_else(|| {
                    Error::Internal(format!("D1 key column {} of {} has no source column", c.name, d1.name))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((src, D1Table { name: d1.name.clone(), spec, source_columns, primary_key: d1.primary_key.clone() }))
}
