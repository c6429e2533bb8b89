//! `pgflare restore`: a pgflare archive back into D1, the rollback path
//! "clear D1 and restore it from the backup". The archive is a source like
//! Postgres ([`crate::source::archive`]): its files are checked against the
//! manifest before anything is written, then read back as batches of the
//! tables they came from and sent through the same D1 writers as `load`
//! ([`crate::plan::Target`]), each file one partition. The D1 tables are
//! what `load` makes without a pgflare.toml: every column but the vector
//! column, under its own name, keyed as in the source.
//!
//! Upserts make a rerun after a failure safe (it writes every row again);
//! restore keeps no state of its own yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::batch::sink::{BatchSink, SinkFactory};
use crate::batch::TableBatch;
use crate::config::mapping::D1Table;
use crate::error::{Error, Result};
use crate::plan::Target;
use crate::progress::Progress;
use crate::sink::d1::render::{D1Mapping, D1Mappings};
use crate::source::archive::manifest::{Manifest, ManifestTable};
use crate::source::archive::{check_files, table_batches};
use crate::source::TableInfo;

pub struct RestoreOptions {
    /// The archive folder.
    pub dir: PathBuf,
    pub target: Target,
    /// Only these tables (`name` or `schema.name`); empty = all.
    pub only_tables: Vec<String>,
    pub create_tables: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    pub archive: String,
    pub target: String,
    /// The source snapshot the archive was read at.
    pub snapshot_taken_at: String,
    pub tables: Vec<TableRestored>,
    pub rows: u64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TableRestored {
    pub table: String,
    pub d1_table: String,
    pub rows: u64,
    pub files: usize,
}

pub async fn run(opts: &RestoreOptions, progress: &Progress) -> Result<RestoreSummary> {
    let started = Instant::now();
    let manifest = Manifest::read(&opts.dir)?;
    let tables = selected(&manifest, &opts.only_tables)?;
    check_files(&opts.dir, &manifest)?;
    let d1: Vec<(TableInfo, D1Table, D1Mapping)> = tables
        .iter()
        .map(|t| {
            let info = info_of(t);
            let (table, mapping) = crate::plan::d1_table(None, &info)?;
            Ok((info, table, mapping))
        })
        .collect::<Result<_>>()?;
    let api = match &opts.target {
        Target::Api { settings, .. } => {
            Some(Arc::new(crate::cloudflare::Api::new(settings.clone())?.with_progress(progress.clone())))
        }
        _ => None,
    };
    let mappings = D1Mappings(d1.iter().map(|(i, _, m)| (i.spec.qualified(), m.clone())).collect());
    let target = opts.target.open(mappings, api)?;
    target.clear_previous_output()?;
    if opts.create_tables {
        let pairs: Vec<(TableInfo, D1Table)> = d1.iter().map(|(i, t, _)| (i.clone(), t.clone())).collect();
        target.apply_schema(&crate::sink::d1::migration::migration_sql(&pairs)?).await?;
    }
    let mut restored = Vec::new();
    for (t, (_, table, _)) in tables.iter().zip(&d1) {
        let rows = write_table(&opts.dir, t, target.sinks(), progress).await?;
        restored.push(TableRestored {
            table: t.spec.qualified(),
            d1_table: table.name.clone(),
            rows,
            files: t.files.len(),
        });
    }
    Ok(RestoreSummary {
        archive: opts.dir.display().to_string(),
        target: opts.target.describe(),
        snapshot_taken_at: manifest.snapshot.taken_at.clone(),
        rows: restored.iter().map(|t| t.rows).sum(),
        tables: restored,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The archive's tables `only` names (all when empty); a name the archive
/// does not hold is refused with the names it does.
fn selected<'a>(manifest: &'a Manifest, only: &[String]) -> Result<Vec<&'a ManifestTable>> {
    let names = |t: &ManifestTable| [t.spec.name.clone(), t.spec.qualified()];
    for o in only {
        if !manifest.tables.iter().any(|t| names(t).contains(o)) {
            let held: Vec<String> = manifest.tables.iter().map(|t| t.spec.qualified()).collect();
            return Err(Error::Config {
                setting: format!("--table {o}"),
                message: format!("the archive holds no such table; it holds {}", held.join(", ")),
            });
        }
    }
    Ok(manifest
        .tables
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| names(t).contains(o)))
        .collect())
}

/// The table as the archive describes it, for the D1 mapping and schema
/// (its foreign keys and indexes are text in the manifest: the D1 tables
/// get their keys, not those).
fn info_of(t: &ManifestTable) -> TableInfo {
    TableInfo {
        spec: t.spec.clone(),
        row_estimate: Some(t.rows),
        total_bytes: i64::try_from(t.bytes).unwrap_or(i64::MAX),
        constraints: t.constraints.clone(),
        indexes: t.indexes.clone(),
        ddl: t.ddl.clone(),
        foreign_keys: Vec::new(),
        unique_keys: Vec::new(),
        btree_indexes: Vec::new(),
        skipped_indexes: Vec::new(),
        unsupported: Vec::new(),
    }
}

/// Sends every file of `t` through `sinks`, a file per partition, on a
/// blocking thread (the writers block on the API client's runtime).
async fn write_table(
    dir: &std::path::Path,
    t: &ManifestTable,
    sinks: Arc<dyn SinkFactory>,
    progress: &Progress,
) -> Result<u64> {
    let (dir, t) = (dir.to_path_buf(), t.clone());
    let bar = progress.rows(&t.spec.qualified(), Some(t.rows));
    let task = tokio::task::spawn_blocking(move || -> Result<u64> {
        let spec = Arc::new(t.spec.clone());
        let mut open: BTreeMap<usize, Box<dyn BatchSink>> = BTreeMap::new();
        let mut rows = 0;
        table_batches(&dir, &t, |partition, batch| {
            // Files come in order: a new partition finishes the one before.
            if !open.contains_key(&partition) {
                if let Some((_, sink)) = open.pop_first() {
                    rows += sink.finish()?.rows;
                }
                open.insert(partition, sinks.open(&spec, partition)?);
            }
            bar.inc(batch.num_rows() as u64);
            match open.get_mut(&partition) {
                Some(sink) => sink.write(&TableBatch { table: spec.clone(), partition, batch }),
                None => Err(Error::Internal("a restore partition without a sink".into())),
            }
        })?;
        if let Some((_, sink)) = open.pop_first() {
            rows += sink.finish()?.rows;
        }
        bar.finish();
        Ok(rows)
    });
    task.await.map_err(|e| Error::Internal(format!("a restore worker died: {e}")))?
}
