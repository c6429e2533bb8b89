//! The final archive export: every selected table, read at one snapshot by
//! parallel workers, written as Parquet (see [`writer`]) with a manifest
//! that proves what was written ([`manifest`]), and the verification that
//! checks both later ([`verify`]). [`cloudflare`] archives the other side,
//! D1 and Vectorize, in the same layout with the same manifest.

pub mod cloudflare;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::digest::DigestSum;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::archive::manifest::{self, DigestInfo, Manifest, ManifestTable, SourceInfo};
use crate::source::job::TableRead;
use crate::source::{self, ReadOptions, Selection, Snapshot, Source, SplitOptions};
pub use writer::ParquetConfig;

/// Everything `pgflare archive` needs.
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    pub selection: Selection,
    pub read: ReadOptions,
    pub split: SplitOptions,
    pub parquet: ParquetConfig,
    /// Replace an existing archive in the output folder.
    pub overwrite: bool,
}

/// Per-table outcome, for people and `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct TableSummary {
    pub table: String,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub partitions: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ArchiveSummary {
    pub out: String,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub snapshot: String,
    pub tables: Vec<TableSummary>,
}

/// Refuses an output folder that holds something `overwrite` does not
/// allow replacing; writes nothing (that waits until the source has been
/// read enough to know the archive can be made: [`prepare_out`]).
pub(crate) fn check_out(dir: &Path, overwrite: bool) -> Result<()> {
    if dir.exists() && !overwrite && std::fs::read_dir(dir).map_err(Error::io(dir))?.next().is_some() {
        return Err(Error::Config {
            setting: "--out".into(),
            message: format!(
                "{} is not empty; choose an empty folder, or pass --overwrite to replace the archive in it",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// Prepares the output folder: it must be empty, or hold a pgflare archive
/// that `overwrite` allows us to replace.
pub(crate) fn prepare_out(dir: &Path, overwrite: bool) -> Result<()> {
    check_out(dir, overwrite)?;
    if dir.exists() {
        let entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(Error::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        if !entries.is_empty() {
            // The manifest goes first, so an interrupted overwrite never
            // leaves a manifest describing files that are gone.
            let m = dir.join(manifest::FILE_NAME);
            if m.exists() {
                std::fs::remove_file(&m).map_err(Error::io(&m))?;
            }
            for e in entries.into_iter().filter(|p| p.is_dir()) {
                std::fs::remove_dir_all(&e).map_err(Error::io(&e))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(Error::io(dir))
}

/// A table's manifest entry from what its files' sink reported; `schema`
/// is its constraints, indexes and DDL.
pub fn manifest_table(
    spec: crate::batch::TableSpec,
    report: crate::batch::sink::SinkReport,
    schema: (Vec<crate::source::table::Constraint>, Vec<String>, String),
) -> Result<ManifestTable> {
    let mut digest = DigestSum::default();
    for f in &report.files {
        let one = DigestSum::from_hex(&f.row_digest)
            .ok_or_else(|| Error::Internal(format!("bad row digest for {}", f.path)))?;
        digest.merge(&one);
    }
    // The types in the files, which is what a reader of the archive sees.
    let arrow_types = crate::source::archive::file_schema(&spec)
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    let (constraints, indexes, ddl) = schema;
    Ok(ManifestTable {
        arrow_types,
        rows: report.rows,
        bytes: report.bytes,
        row_digest: digest.hex(),
        files: report.files,
        constraints,
        indexes,
        ddl,
        spec,
        omitted_columns: Vec::new(),
    })
}

/// A manifest of `tables`, read from `source` at `snapshot`, made now.
pub fn new_manifest(
    source: SourceInfo,
    snapshot: crate::source::SnapshotInfo,
    tables: Vec<ManifestTable>,
) -> Manifest {
    Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        pgflare_version: env!("CARGO_PKG_VERSION").into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        source,
        snapshot,
        digest: DigestInfo {
            hash: "blake3".into(),
            row_encoding: crate::digest::ROW_ENCODING.into(),
            combine: "sum of 4 little-endian u64 lanes, wrapping".into(),
        },
        tables,
        side_tables: Vec::new(),
        cloudflare: None,
    }
}

/// Exports the selection at a new snapshot.
pub async fn export(
    src: &Source,
    opts: &ArchiveOptions,
    progress: &Progress,
) -> Result<(Manifest, ArchiveSummary)> {
    check_out(&opts.parquet.dir, opts.overwrite)?;
    let snapshot = Snapshot::export(src).await?;
    export_at(src, snapshot, opts, progress).await
}

/// Exports the selection at an already exported snapshot (the caller may
/// have done other work at the same point in time).
pub async fn export_at(
    src: &Source,
    snapshot: Snapshot,
    opts: &ArchiveOptions,
    progress: &Progress,
) -> Result<(Manifest, ArchiveSummary)> {
    let started = Instant::now();
    let dir = &opts.parquet.dir;
    // The folder is made (or emptied) once the tables are known to be
    // readable: a refused column leaves no empty archive behind.
    let plan = source::job::Plan { selection: &opts.selection, split: opts.split, read: opts.read };
    let sinks = Arc::new(opts.parquet.clone());
    let reading = source::job::read_selection_after(src, snapshot, plan, sinks, progress, || {
        prepare_out(dir, opts.overwrite)
    })
    .await?;
    let info = reading.snapshot;

    let mut out_tables = Vec::new();
    let mut summaries = Vec::new();
    for TableRead { info: t, partitions, report } in reading.tables {
        summaries.push(TableSummary {
            table: t.spec.qualified(),
            rows: report.rows,
            files: report.files.len(),
            bytes: report.bytes,
            partitions,
        });
        out_tables.push(manifest_table(t.spec, report, (t.constraints, t.indexes, t.ddl))?);
    }
    let source = SourceInfo { url: src.display().to_string(), server_version: info.server_version.clone() };
    let manifest = new_manifest(source, info, out_tables);
    manifest.write(dir)?;
    let summary = ArchiveSummary {
        out: dir.display().to_string(),
        rows: summaries.iter().map(|s| s.rows).sum(),
        bytes: summaries.iter().map(|s| s.bytes).sum(),
        seconds: started.elapsed().as_secs_f64(),
        snapshot: manifest.snapshot.txid_snapshot.clone(),
        tables: summaries,
    };
    Ok((manifest, summary))
}
