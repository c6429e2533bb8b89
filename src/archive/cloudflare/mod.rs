//! `pgflare archive --from cloudflare`: what Cloudflare holds, archived in
//! the layout and with the manifest of a Postgres archive, for the full
//! rollback (after Cloudflare took writes: archive it, then restore into
//! Postgres). The tables are the source's as `load` mapped them to D1
//! ([`tables`]: definitions from the live Postgres or a Postgres
//! archive), D1 is made a local file and checked ([`d1_side`]), the
//! Vectorize index is spooled ([`spool`]), and the files are written
//! ([`rows`]): each table's D1 columns and its vector column, and the
//! vectors no row holds as they are in the side table `_vectorize`.
//! Nothing is written to the output folder before every input is known
//! good: the tables and columns exist, every value reads back as its
//! source type, every vector was fetched. [`run`] reads as those steps.

pub mod d1_side;
pub mod rows;
pub mod spool;
pub mod tables;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::{check_out, manifest_table, new_manifest, prepare_out, ParquetConfig, TableSummary};
use crate::batch::sink::SinkReport;
use crate::batch::TableSpec;
use crate::cloudflare::vectorize::IndexConfig;
use crate::cloudflare::Vectorize;
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::archive::manifest::{CloudflareRead, D1Read, Manifest, SourceInfo, VectorizeRead};
use crate::source::SnapshotInfo;
use d1_side::{D1At, LocalD1};
use spool::Spool;
use tables::{CfTable, Definitions};

/// Everything `pgflare archive --from cloudflare` needs.
pub struct CloudflareOptions {
    /// The mapping `load` used (pgflare.toml).
    pub project: Project,
    pub only_tables: Vec<String>,
    pub definitions: Definitions,
    pub d1: D1At,
    /// The index the vector table's vectors are in (`None`: D1 only).
    pub vectorize: Option<Arc<Vectorize>>,
    /// Where D1's copy and the vector spool are kept while the archive is made.
    pub work_dir: PathBuf,
    pub parquet: ParquetConfig,
    pub overwrite: bool,
    pub batch_rows: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CloudflareSummary {
    pub out: String,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// API requests the read was estimated to take (0 for a local D1 file
    /// without Vectorize).
    pub requests_estimate: u64,
    pub d1: D1Read,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectorize: Option<VectorizeRead>,
    pub tables: Vec<TableSummary>,
    /// Rows of the side table (vectors no row holds as they are).
    pub side_rows: u64,
    pub notes: Vec<String>,
}

pub async fn run(opts: &CloudflareOptions, progress: &Progress) -> Result<(Manifest, CloudflareSummary)> {
    let started = Instant::now();
    let dir = &opts.parquet.dir;
    check_out(dir, opts.overwrite)?;
    let (mut tables, definitions) =
        tables::resolve(&opts.definitions, &opts.project, &opts.only_tables, opts.vectorize.is_some())
            .await?;
    if let Some(t) = tables.iter().find(|t| t.spec.file_stem() == rows::SIDE_TABLE) {
        return Err(Error::Config {
            setting: format!("table {}", t.spec.qualified()),
            message: format!(
                "its folder would be the side table's ({}/): leave it out with --table",
                rows::SIDE_TABLE
            ),
        });
    }
    let index = open_index(opts.vectorize.as_ref(), &mut tables).await?;
    let requests = announce(opts, index.as_ref(), progress);
    let local = d1_side::make_local(&opts.d1, &tables, &opts.work_dir, progress).await?;
    let checked = d1_side::check(&local.path, &mut tables, opts.batch_rows)?;
    let spool = match &index {
        Some((v, config, _)) => Some(Spool::fill(v, config, &opts.work_dir, progress).await?),
        None => None,
    };
    // Every input is known good: now the folder is made (or emptied).
    prepare_out(dir, opts.overwrite)?;
    let written = write_files(&local, &tables, &checked.rows, spool, opts, progress).await?;
    let mut notes = local.notes.clone();
    notes.extend(checked.notes);
    let manifest = manifest_of(&local, &tables, &written, definitions, &mut notes)?;
    manifest.write(dir)?;
    for f in ["d1-export.sqlite", "d1-file-copy.sqlite", "vectorize-spool.sqlite"] {
        let _ = std::fs::remove_file(opts.work_dir.join(f));
    }
    let summary = summarize(opts, started, requests, &local, &tables, &written, notes);
    Ok((manifest, summary))
}

/// What the run says: per table, the side table, the reads.
fn summarize(
    opts: &CloudflareOptions,
    started: Instant,
    requests: u64,
    local: &LocalD1,
    tables: &[CfTable],
    written: &Written,
    notes: Vec<String>,
) -> CloudflareSummary {
    let summaries: Vec<TableSummary> = tables
        .iter()
        .zip(&written.tables)
        .map(|(t, (r, _))| TableSummary {
            table: t.spec.qualified(),
            rows: r.rows,
            files: r.files.len(),
            bytes: r.bytes,
            partitions: 1,
        })
        .collect();
    CloudflareSummary {
        out: opts.parquet.dir.display().to_string(),
        rows: summaries.iter().map(|s| s.rows).sum(),
        bytes: summaries.iter().map(|s| s.bytes).sum::<u64>()
            + written.side.as_ref().map_or(0, |s| s.2.bytes),
        seconds: started.elapsed().as_secs_f64(),
        requests_estimate: requests,
        d1: local.read.clone(),
        vectorize: written.side.as_ref().map(|s| s.0.clone()),
        tables: summaries,
        side_rows: written.side.as_ref().map_or(0, |s| s.2.rows),
        notes,
    }
}

/// The index of the vector table (when one table sends vectors): it
/// exists, and its dimension is the vector column's. A vector column
/// without a declared dimension takes the index's.
async fn open_index(
    vectorize: Option<&Arc<Vectorize>>,
    tables: &mut [CfTable],
) -> Result<Option<(Arc<Vectorize>, IndexConfig, u64)>> {
    let (Some(v), Some(t)) = (vectorize, tables.iter_mut().find(|t| t.vector.is_some())) else {
        return Ok(None);
    };
    let config = match v.lookup().await? {
        Ok(c) => c,
        Err(_) => {
            return Err(Error::Config {
                setting: "--vectorize-index".into(),
                message: format!(
                    "the Vectorize index `{}` does not exist: name the index `load` filled, or pass \
                     --no-vectorize to archive D1 only",
                    v.index()
                ),
            })
        }
    };
    let column = t.vector_column().unwrap_or_default().to_string();
    if let Some(m) = t.vector.as_mut() {
        match m.dims {
            Some(d) if d != config.dimensions => {
                return Err(Error::Config {
                    setting: "--vectorize-index".into(),
                    message: format!(
                        "the index `{}` holds {}-dimensional vectors, but {}.{column} has {d}: name the \
                         index `load` filled for this table",
                        v.index(),
                        config.dimensions,
                        t.spec.qualified()
                    ),
                })
            }
            _ => m.dims = Some(config.dimensions),
        }
    }
    let count = v.info().await?.vector_count.unwrap_or(0);
    Ok(Some((v.clone(), config, count)))
}

/// Says before the long part how many API requests the read takes and,
/// on the request budget, how long at least; returns the estimate.
fn announce(
    opts: &CloudflareOptions,
    index: Option<&(Arc<Vectorize>, IndexConfig, u64)>,
    progress: &Progress,
) -> u64 {
    // D1 over the API: its description, two bookmarks, the SQLite
    // version, and an export (start, polls).
    let d1 = if matches!(opts.d1, D1At::Api(_)) { 8 } else { 0 };
    let vectors = index.map_or(0, |(_, _, n)| spool::requests_for(*n));
    let total = d1 + vectors;
    let budget = match (&opts.d1, index) {
        (D1At::Api(d), _) => Some(d.api().budget()),
        (_, Some((v, _, _))) => Some(v.api().budget()),
        _ => None,
    };
    if let Some((left, per, window)) = budget {
        let floor = crate::cloudflare::ratelimit::eta(
            total,
            left.unwrap_or(0) as u64,
            per,
            window,
            Default::default(),
        );
        let vectors =
            index.map(|(v, _, n)| format!(", {n} vectors of index {}", v.index())).unwrap_or_default();
        let bound = match floor.is_zero() {
            true => "within it".to_string(),
            false => format!("it makes this take at least {}", crate::timeouts::human(floor)),
        };
        progress.println(&format!(
            "reading Cloudflare{vectors}: about {total} API requests (budget {per} per {}: {bound})",
            crate::timeouts::human(window)
        ));
    }
    total
}

/// What the files phase wrote: per table its report and rows without a
/// vector; the side table with the spool's tally.
struct Written {
    tables: Vec<(SinkReport, u64)>,
    side: Option<(VectorizeRead, TableSpec, SinkReport, Vec<String>)>,
}

/// Writes every table and the side table, on a blocking thread.
async fn write_files(
    local: &LocalD1,
    tables: &[CfTable],
    rows: &[u64],
    spool: Option<Spool>,
    opts: &CloudflareOptions,
    progress: &Progress,
) -> Result<Written> {
    let (path, tables, rows) = (local.path.clone(), tables.to_vec(), rows.to_vec());
    let (parquet, batch_rows, progress) = (opts.parquet.clone(), opts.batch_rows.max(1), progress.clone());
    let job = tokio::task::spawn_blocking(move || -> Result<Written> {
        let mut spool = spool;
        let mut out = Vec::new();
        for (t, n) in tables.iter().zip(rows) {
            let bar = progress.rows(&t.spec.name, Some(n));
            let b = bar.clone();
            let r = rows::write_table(&path, t, spool.as_mut(), &parquet, batch_rows, &move |k| b.inc(k))?;
            bar.finish();
            out.push(r);
        }
        let side = match spool {
            Some(mut s) => {
                s.tally()?;
                let without: u64 =
                    tables.iter().zip(&out).filter(|(t, _)| t.vector.is_some()).map(|(_, r)| r.1).sum();
                s.read.rows_without_vector = without;
                let (spec, report) = rows::write_side(&s, &parquet, s.read.dimensions, batch_rows)?;
                Some((s.read.clone(), spec, report, s.notes.clone()))
            }
            None => None,
        };
        Ok(Written { tables: out, side })
    });
    job.await.map_err(|e| Error::Internal(format!("the archive writer died: {e}")))?
}

/// The manifest: the tables as archived, the side table, and where and
/// when Cloudflare was read.
fn manifest_of(
    local: &LocalD1,
    tables: &[CfTable],
    written: &Written,
    definitions: String,
    notes: &mut Vec<String>,
) -> Result<Manifest> {
    let mut out = Vec::new();
    for (t, (report, _)) in tables.iter().zip(&written.tables) {
        let schema = (t.info.constraints.clone(), t.info.indexes.clone(), t.info.ddl.clone());
        let mut m = manifest_table(t.spec.clone(), report.clone(), schema)?;
        m.omitted_columns = t.omitted.clone();
        out.push(m);
    }
    let r = &local.read;
    let d1 = match (&r.database_id, &r.sqlite_file) {
        (Some(id), _) => format!("D1 database {} ({id})", r.database_name.as_deref().unwrap_or("?")),
        (None, Some(f)) => format!("D1 file {f}"),
        (None, None) => "D1".into(),
    };
    let mut url = format!("cloudflare: {d1}");
    let server_version = format!("Cloudflare D1 (SQLite {})", r.sqlite_version);
    let id = read_point(r);
    let snapshot = SnapshotInfo {
        id: id.unwrap_or_else(|| r.read_by.clone()),
        txid_snapshot: String::new(),
        in_progress_elsewhere: Vec::new(),
        in_progress_without_subtransactions: Vec::new(),
        wal_lsn: None,
        taken_at: r.read_at.clone(),
        server_version: server_version.clone(),
    };
    let mut side_tables = Vec::new();
    let mut vectorize = None;
    if let Some((read, spec, report, spool_notes)) = &written.side {
        url.push_str(&format!(", Vectorize index {}", read.index));
        notes.extend(spool_notes.iter().cloned());
        notes.extend(vector_notes(read));
        let schema = (Vec::new(), Vec::new(), String::new());
        side_tables.push(manifest_table(spec.clone(), report.clone(), schema)?);
        vectorize = Some(read.clone());
    }
    let mut manifest = new_manifest(SourceInfo { url, server_version }, snapshot, out);
    manifest.side_tables = side_tables;
    manifest.cloudflare =
        Some(CloudflareRead { d1: local.read.clone(), vectorize, definitions, notes: notes.clone() });
    Ok(manifest)
}

/// The D1 state the archive holds: the Time Travel bookmark when it did
/// not move during the read (a bookmark `time_travel/restore` takes), else
/// the export's own, else whichever was read.
pub fn read_point(r: &D1Read) -> Option<String> {
    match (&r.bookmark_before, &r.bookmark_after) {
        (Some(b), Some(a)) if a == b => Some(a.clone()),
        _ => r.export_bookmark.clone().or(r.bookmark_after.clone()).or(r.bookmark_before.clone()),
    }
}

/// What the side table and the vector column mean for this archive.
fn vector_notes(read: &VectorizeRead) -> Vec<String> {
    let mut notes = Vec::new();
    let aside: u64 = read.set_aside.values().sum();
    if aside > 0 {
        let by: Vec<String> = read.set_aside.iter().map(|(k, n)| format!("{n} {k}")).collect();
        notes.push(format!(
            "{aside} vectors are kept as they are in the side table {} ({}): no archived row holds them as \
             the index does",
            rows::SIDE_TABLE,
            by.join(", ")
        ));
    }
    if read.rows_without_vector > 0 {
        notes.push(format!(
            "{} archived rows of the vector table have no vector in the index: their vector column is NULL",
            read.rows_without_vector
        ));
    }
    notes
}
