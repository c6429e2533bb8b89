//! Finding rows deleted in the source (hard deletes) with verify's bucket
//! machinery, on keys only: both sides sum the digests of their primary
//! keys into buckets (the source at the run's snapshot, D1 after the run's
//! upserts), and only buckets whose sums differ are read again to find the
//! keys D1 has and the source does not. Reading keys is cheap (an
//! index-only scan on each side, no row bodies, no vectors) and the
//! drill-down and the deletes follow the number of differing buckets.
//!
//! For uuid and integer keys ([`ranges`]) D1's sums are those saved by the
//! last run, and only the keys of differing buckets are read from D1; other
//! keys read all of D1's keys each run. For the `api` target D1 keys read
//! in full are first copied, page by page, into a local SQLite file, so
//! both targets are compared by the same code.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::UInt32Array;
use arrow::record_batch::RecordBatch;

use super::deletes::{Deleted, Deleter};
use crate::batch::collect::{take, Collector, Collectors};
use crate::batch::sink::SinkFactory;
use crate::batch::{quote_ident, TableSpec};
use crate::config::mapping::D1Table;
use crate::d1::read::read_table;
use crate::digest::buckets::{bucket_of, Buckets};
use crate::digest::pass::{d1_pass, source_sinks, D1Shape, Pass, Side};
use crate::digest::{key_bytes, row_digests};
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::progress::Progress;
use crate::source::{read_all, Partition, ReadOptions, Source, TableJob};
use crate::state::ranges::{self, Scheme, Sums};

/// One table's sweep.
pub struct SweepTable {
    /// The source table with only its key columns.
    pub source: TableSpec,
    /// Its ranges, with the live-rows filter when soft deletes are configured.
    pub partitions: Vec<Partition>,
    /// The D1 table with only its key columns.
    pub d1: D1Table,
    pub deleter: Deleter,
    /// Buckets D1 can read one by one (uuid and integer keys); `None`: the
    /// full sweep, which reads every D1 key each run.
    pub scheme: Option<Scheme>,
}

impl SweepTable {
    /// One read of the table's keys, shown as `label table`.
    fn job(&self, label: &str, progress: &Progress) -> TableJob {
        TableJob {
            table: Arc::new(self.source.clone()),
            partitions: self.partitions.clone(),
            progress: progress.rows(&format!("{label} {}", self.source.name), None),
        }
    }
}

/// What a sweep found and did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SweepReport {
    pub source_keys: u64,
    pub d1_keys: u64,
    pub buckets: usize,
    pub buckets_differing: usize,
    /// Keys in the source that D1 lacks (a verify finds and names them).
    pub missing_in_d1: u64,
    pub deleted: Deleted,
}

/// Where the D1 keys are read from.
pub enum KeySource {
    /// The D1 file itself (`sqlite` target).
    File(PathBuf),
    /// Copied from the API into this folder first.
    Api(D1Access, PathBuf),
}

pub async fn sweep(
    src: &Source,
    snapshot_id: &str,
    t: &SweepTable,
    keys: &KeySource,
    buckets: usize,
    read: ReadOptions,
    progress: &Progress,
) -> Result<SweepReport> {
    match &t.scheme {
        Some(scheme) => ranged(src, snapshot_id, t, scheme, keys, read, progress).await,
        None => full(src, snapshot_id, t, keys, buckets, read, progress).await,
    }
}

/// The sweep by key ranges: D1's sums come from the last run, only
/// differing buckets are read from D1.
async fn ranged(
    src: &Source,
    snapshot_id: &str,
    t: &SweepTable,
    scheme: &Scheme,
    keys: &KeySource,
    read: ReadOptions,
    progress: &Progress,
) -> Result<SweepReport> {
    let name = t.source.qualified();
    let d1 = &t.deleter.d1;
    let job = |label: &str| t.job(label, progress);
    let schema = t.d1.spec.arrow_schema();
    let run = |wanted: Option<Arc<HashSet<String>>>| {
        let out = Arc::new(Mutex::new(Labelled::default()));
        let (scheme, schema) = (scheme.clone(), schema.clone());
        let sinks: Arc<dyn SinkFactory> = Arc::new(Collectors::new(out.clone(), move |_, _| {
            let (scheme, schema, wanted) = (scheme.clone(), schema.clone(), wanted.clone());
            Ok(LabelSink { scheme, schema, wanted, local: Labelled::default() })
        }));
        (sinks, out)
    };
    let (sinks, out) = run(None);
    read_all(src, snapshot_id, vec![job("keys")], sinks, read).await?;
    let source = take(&out)?.sums;
    let saved = ranges::load(d1, &name).await?.filter(|s| &s.scheme == scheme);
    let target = match saved {
        Some(s) => s.sums(),
        // The first run after a load reads D1's keys once.
        None => {
            let file = match keys {
                KeySource::File(p) => p.clone(),
                KeySource::Api(d1, dir) => copy_keys(d1, &t.d1, dir).await?,
            };
            let (spec, d1_name, scheme) = (t.d1.spec.clone(), t.d1.name.clone(), scheme.clone());
            tokio::task::spawn_blocking(move || -> Result<Sums> {
                let mut l = Labelled::default();
                read_table(&open(&file)?, &d1_name, &spec, 4096, &mut |b| l.absorb(&scheme, &b, None))?;
                Ok(l.sums)
            })
            .await
            .map_err(|e| Error::Internal(format!("the D1 key reader died: {e}")))??
        }
    };
    let labels: BTreeSet<&String> = source.keys().chain(target.keys()).collect();
    let differing: Vec<String> =
        labels.iter().filter(|l| source.get(**l) != target.get(**l)).map(|l| l.to_string()).collect();
    let mut report = SweepReport {
        source_keys: source.values().map(|s| s.rows).sum(),
        d1_keys: target.values().map(|s| s.rows).sum(),
        buckets: labels.len(),
        buckets_differing: differing.len(),
        ..SweepReport::default()
    };
    if !differing.is_empty() {
        let (sinks, out) = run(Some(Arc::new(differing.iter().cloned().collect())));
        read_all(src, snapshot_id, vec![job("drill-down keys")], sinks, read).await?;
        let in_source = take(&out)?.keys;
        // Expected D1 rows per bucket: the larger of its saved count and
        // the source's (D1 got the source's upserts since).
        let rows = |l: &String| [&source, &target].iter().filter_map(|s| s.get(l)).map(|s| s.rows).max();
        let buckets: Vec<(String, u64)> =
            differing.iter().map(|l| (l.clone(), rows(l).unwrap_or(0))).collect();
        let batch = ranges::d1_keys(d1, &t.d1.name, &t.d1.spec, scheme, &buckets).await?;
        let key = t.d1.spec.key_indices();
        let mut pick = Vec::new();
        let mut in_d1 = HashSet::new();
        for row in 0..batch.num_rows() {
            let id = key_bytes(&batch, &key, row)?;
            if !in_source.contains(&id) {
                pick.push(row as u32);
            }
            in_d1.insert(id);
        }
        report.missing_in_d1 = in_source.iter().filter(|k| !in_d1.contains(*k)).count() as u64;
        if !pick.is_empty() {
            report.deleted = t.deleter.delete(&take_rows(&batch, &pick)?).await?;
        }
    }
    // D1's keys now equal the source's: the next run compares with these.
    ranges::save(d1, &name, &ranges::Saved::new(scheme, &source)).await?;
    Ok(report)
}

/// Source keys per bucket label: digest sums, and (for wanted labels) the keys.
#[derive(Default)]
struct Labelled {
    sums: Sums,
    keys: HashSet<Vec<u8>>,
}

impl Labelled {
    fn absorb(
        &mut self,
        scheme: &Scheme,
        batch: &RecordBatch,
        wanted: Option<&HashSet<String>>,
    ) -> Result<()> {
        let digests = row_digests(batch)?;
        let key: Vec<usize> = (0..batch.num_columns()).collect();
        for (row, d) in digests.iter().enumerate() {
            let Some(label) = scheme.label(batch.column(0).as_ref(), row) else { continue };
            match wanted {
                None => self.sums.entry(label).or_default().add(d),
                Some(w) if w.contains(&label) => {
                    self.keys.insert(key_bytes(batch, &key, row)?);
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// One partition's labelled keys, under D1's column names.
struct LabelSink {
    scheme: Scheme,
    schema: arrow::datatypes::SchemaRef,
    wanted: Option<Arc<HashSet<String>>>,
    local: Labelled,
}

impl Collector for LabelSink {
    type Out = Labelled;

    fn write(&mut self, batch: &crate::batch::TableBatch) -> Result<()> {
        // Under D1's column names, so digests match D1's side.
        let b = RecordBatch::try_new(self.schema.clone(), batch.batch.columns().to_vec())?;
        self.local.absorb(&self.scheme, &b, self.wanted.as_deref())
    }

    fn merge_into(self, out: &mut Labelled) -> u64 {
        for (k, s) in self.local.sums {
            out.sums.entry(k).or_default().merge(&s);
        }
        out.keys.extend(self.local.keys);
        0
    }
}

/// The sweep by hash buckets of every key on both sides.
async fn full(
    src: &Source,
    snapshot_id: &str,
    t: &SweepTable,
    keys: &KeySource,
    buckets: usize,
    read: ReadOptions,
    progress: &Progress,
) -> Result<SweepReport> {
    let name = t.source.qualified();
    let shape = D1Shape::new(&t.source, &t.d1);
    let shapes = Arc::new(HashMap::from([(name.clone(), shape.clone())]));
    let job = |label: &str| t.job(label, progress);
    let d1_file = match keys {
        KeySource::File(p) => p.clone(),
        KeySource::Api(d1, dir) => copy_keys(d1, &t.d1, dir).await?,
    };

    // Pass 1: key-digest sums per bucket, both sides at once.
    let sums = Arc::new(Mutex::new(HashMap::new()));
    let sinks: Arc<dyn SinkFactory> =
        Arc::new(source_sinks(shapes.clone(), buckets, Pass::Sum, sums.clone()));
    let (file, d1_shape) = (d1_file.clone(), shape.clone());
    let d1_side = tokio::task::spawn_blocking(move || -> Result<Side> {
        d1_pass(&open(&file)?, &d1_shape, buckets, &Pass::Sum)
    });
    let source_read = read_all(src, snapshot_id, vec![job("keys")], sinks, read).await;
    let d1_sums = d1_side.await.map_err(|e| Error::Internal(format!("the D1 key reader died: {e}")))??;
    source_read?;
    let src_sums = take(&sums)?.remove(&name).unwrap_or_default();
    let (a, b) = (
        src_sums.buckets.unwrap_or_else(|| Buckets::new(buckets)),
        d1_sums.buckets.unwrap_or_else(|| Buckets::new(buckets)),
    );
    let differing = a.differing(&b);
    let mut report = SweepReport {
        source_keys: a.total().rows,
        d1_keys: b.total().rows,
        buckets,
        buckets_differing: differing.len(),
        ..SweepReport::default()
    };
    if differing.is_empty() {
        return Ok(report);
    }

    // Pass 2: the keys of the differing buckets.
    let wanted = Arc::new(differing);
    let rows = Arc::new(Mutex::new(HashMap::new()));
    let sinks: Arc<dyn SinkFactory> =
        Arc::new(source_sinks(shapes, buckets, Pass::Collect(wanted.clone()), rows.clone()));
    read_all(src, snapshot_id, vec![job("drill-down keys")], sinks, read).await?;
    let src_rows = take(&rows)?.remove(&name).unwrap_or_default().rows;
    let (file, spec, d1_name) = (d1_file.clone(), t.d1.spec.clone(), t.d1.name.clone());
    let (gone, missing) = tokio::task::spawn_blocking(move || -> Result<(Vec<RecordBatch>, u64)> {
        let conn = open(&file)?;
        let key = spec.key_indices();
        let (mut gone, mut in_d1) = (Vec::new(), HashSet::new());
        read_table(&conn, &d1_name, &spec, 4096, &mut |batch| {
            let mut pick = Vec::new();
            for row in 0..batch.num_rows() {
                let id = key_bytes(&batch, &key, row)?;
                if wanted.contains(&bucket_of(&id, buckets)) {
                    if !src_rows.contains_key(&id) {
                        pick.push(row as u32);
                    }
                    in_d1.insert(id);
                }
            }
            if !pick.is_empty() {
                gone.push(take_rows(&batch, &pick)?);
            }
            Ok(())
        })?;
        // Keys the source has and D1 lacks are not deletes; they are
        // counted so that the summary can point at `pgflare verify`.
        let missing = src_rows.keys().filter(|k| !in_d1.contains(*k)).count() as u64;
        Ok((gone, missing))
    })
    .await
    .map_err(|e| Error::Internal(format!("the D1 key reader died: {e}")))??;
    report.missing_in_d1 = missing;
    for batch in &gone {
        let d = t.deleter.delete(batch).await?;
        report.deleted.rows += d.rows;
        report.deleted.vectors += d.vectors;
    }
    Ok(report)
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let idx = UInt32Array::from(rows.to_vec());
    let cols = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}

fn open(path: &Path) -> Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(format!("opening {} to read keys", path.display())))
}

/// Copies the key columns of a D1 table into `dir/<table>-keys.sqlite`
/// (exactly, in rowid pages: [`crate::sink::d1::copy`]), so that the
/// sweep reads them like a local D1 file.
async fn copy_keys(d1: &D1Access, table: &D1Table, dir: &Path) -> Result<PathBuf> {
    let D1Access::Api(api) = d1 else {
        return Err(Error::Internal("D1 keys are copied from the API only".into()));
    };
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let path = dir.join(format!("{}-keys.sqlite", table.name.replace(['/', '\\'], "_")));
    if path.exists() {
        std::fs::remove_file(&path).map_err(Error::io(&path))?;
    }
    let names: Vec<String> = table.spec.columns.iter().map(|c| c.name.clone()).collect();
    let cols: Vec<String> = names.iter().map(|c| quote_ident(c)).collect();
    let mut conn =
        rusqlite::Connection::open(&path).map_err(Error::sqlite(format!("creating {}", path.display())))?;
    let ctx = || format!("copying the keys of D1 table {}", table.name);
    conn.execute_batch(&format!("CREATE TABLE {} ({});", quote_ident(&table.name), cols.join(", ")))
        .map_err(Error::sqlite(ctx()))?;
    crate::sink::d1::copy::copy_table(api, &table.name, &names, &mut conn).await?;
    Ok(path)
}

/// Buckets for a sweep: fewer for small tables (each differing bucket
/// costs a drill-down), at most verify's default.
pub fn buckets_for(rows: Option<u64>) -> usize {
    (rows.unwrap_or(0) / 16).clamp(64, crate::digest::buckets::DEFAULT_BUCKETS as u64) as usize
}
