//! Finding rows deleted in the source (hard deletes) with verify's bucket
//! machinery, on keys only: both sides sum the digests of their primary
//! keys into buckets (the source at the run's snapshot, D1 after the run's
//! upserts), and only buckets whose sums differ are read again to find the
//! keys D1 has and the source does not. Reading keys is cheap (an
//! index-only scan on each side, no row bodies, no vectors) and the
//! drill-down and the deletes follow the number of differing buckets.
//!
//! For the `api` target the D1 keys are first copied, page by page, into a
//! local SQLite file, so both targets are compared by the same code.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::UInt32Array;
use arrow::record_batch::RecordBatch;
use serde_json::{json, Value};

use super::deletes::{Deleted, Deleter};
use super::store::D1Access;
use crate::batch::{quote_ident, TableSpec};
use crate::config::mapping::D1Table;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sink::SinkFactory;
use crate::source::{read_all, Partition, ReadOptions, Source, TableJob};
use crate::verify::buckets::{bucket_of, Buckets};
use crate::verify::compare::{d1_pass, D1Shape, Pass, Side, SourceSinks};
use crate::verify::d1_read::read_table;
use crate::verify::digest::key_bytes;

/// One table's sweep.
pub struct SweepTable {
    /// The source table with only its key columns.
    pub source: TableSpec,
    /// Its ranges, with the live-rows filter when soft deletes are configured.
    pub partitions: Vec<Partition>,
    /// The D1 table with only its key columns.
    pub d1: D1Table,
    pub deleter: Deleter,
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
    let name = t.source.qualified();
    let shape = D1Shape::new(&t.source, &t.d1);
    let shapes = Arc::new(HashMap::from([(name.clone(), shape.clone())]));
    let job = |label: &str| TableJob {
        table: Arc::new(t.source.clone()),
        partitions: t.partitions.clone(),
        progress: progress.rows(&format!("{label} {}", t.source.name), None),
    };
    let d1_file = match keys {
        KeySource::File(p) => p.clone(),
        KeySource::Api(d1, dir) => copy_keys(d1, &t.d1, dir).await?,
    };

    // Pass 1: key-digest sums per bucket, both sides at once.
    let sums = Arc::new(Mutex::new(HashMap::new()));
    let sinks: Arc<dyn SinkFactory> =
        Arc::new(SourceSinks { shapes: shapes.clone(), buckets, pass: Pass::Sum, result: sums.clone() });
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
        Arc::new(SourceSinks { shapes, buckets, pass: Pass::Collect(wanted.clone()), result: rows.clone() });
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

fn take<T: Default>(m: &Mutex<T>) -> Result<T> {
    Ok(std::mem::take(&mut *m.lock().map_err(|_| Error::Internal("a key reader panicked".into()))?))
}

/// Pages of keys per request when copying them from the D1 API.
const KEY_PAGE: usize = 10_000;

/// Copies the key columns of a D1 table into `dir/<table>-keys.sqlite`,
/// paging by rowid, so that the sweep reads them like a local D1 file.
async fn copy_keys(d1: &D1Access, table: &D1Table, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let path = dir.join(format!("{}-keys.sqlite", table.name.replace(['/', '\\'], "_")));
    if path.exists() {
        std::fs::remove_file(&path).map_err(Error::io(&path))?;
    }
    let cols: Vec<String> = table.spec.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let conn =
        rusqlite::Connection::open(&path).map_err(Error::sqlite(format!("creating {}", path.display())))?;
    let ctx = || format!("copying the keys of D1 table {}", table.name);
    conn.execute_batch(&format!("CREATE TABLE {} ({});", quote_ident(&table.name), cols.join(", ")))
        .map_err(Error::sqlite(ctx()))?;
    let select = format!(
        "SELECT rowid AS pgflare_rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT {KEY_PAGE}",
        cols.join(", "),
        quote_ident(&table.name)
    );
    let insert = format!(
        "INSERT INTO {} VALUES ({})",
        quote_ident(&table.name),
        (1..=cols.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
    );
    let mut after = 0i64;
    loop {
        let page = d1.select(&ctx(), &select, &[json!(after)]).await?;
        let tx = conn.unchecked_transaction().map_err(Error::sqlite(ctx()))?;
        {
            let mut st = tx.prepare(&insert).map_err(Error::sqlite(ctx()))?;
            for row in &page {
                after = row.get("pgflare_rowid").and_then(Value::as_i64).unwrap_or(after);
                let values: Vec<rusqlite::types::Value> = table
                    .spec
                    .columns
                    .iter()
                    .map(|c| match row.get(&c.name) {
                        Some(Value::Number(n)) => match n.as_i64() {
                            Some(i) => rusqlite::types::Value::Integer(i),
                            None => rusqlite::types::Value::Real(n.as_f64().unwrap_or(0.0)),
                        },
                        Some(Value::String(s)) => rusqlite::types::Value::Text(s.clone()),
                        _ => rusqlite::types::Value::Null,
                    })
                    .collect();
                st.execute(rusqlite::params_from_iter(values)).map_err(Error::sqlite(ctx()))?;
            }
        }
        tx.commit().map_err(Error::sqlite(ctx()))?;
        if page.len() < KEY_PAGE {
            break;
        }
    }
    Ok(path)
}

/// The key-only view of a table for the sweep: `(source spec, D1 table)`.
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

/// Buckets for a sweep: fewer for small tables (each differing bucket
/// costs a drill-down), at most verify's default.
pub fn buckets_for(rows: Option<u64>) -> usize {
    (rows.unwrap_or(0) / 16).clamp(64, crate::verify::buckets::DEFAULT_BUCKETS as u64) as usize
}
