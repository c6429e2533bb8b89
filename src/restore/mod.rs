//! `pgflare restore`: a pgflare archive back into D1 and Vectorize ("clear
//! D1 or the index and restore it from the backup", [`d1`]) or into a new
//! Postgres ("go back to Supabase", [`postgres`]). The archive is a source
//! like Postgres ([`crate::source::archive`]): its files are checked
//! against the manifest before anything is written, then read back as
//! batches of the tables they came from, each file one partition, and sent
//! through the sinks `load` uses (D1, Vectorize) or the Postgres COPY sink.

mod d1;
mod postgres;

use std::path::PathBuf;

use serde::Serialize;

use crate::batch::sink::VectorReport;
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::plan::{Target, VectorTarget};
use crate::progress::Progress;
use crate::sink::postgres::schema::LeftOut;
use crate::source::archive::manifest::{Manifest, ManifestTable};
use crate::source::Source;

pub struct RestoreOptions {
    /// The archive folder.
    pub dir: PathBuf,
    /// The mapping (and Vectorize settings), as for `load`.
    pub project: Project,
    /// Only these tables (`name` or `schema.name`); empty = all.
    pub only_tables: Vec<String>,
    pub to: RestoreTo,
}

/// Where a restore writes.
pub enum RestoreTo {
    /// D1 (files, SQLite or the API) and Vectorize, mapped as `load` maps.
    D1 { target: Target, vectorize: VectorTarget, create_tables: bool },
    /// A Postgres database, tables as the source had them.
    Postgres(PgRestore),
}

/// How to restore into Postgres.
pub struct PgRestore {
    pub target: Source,
    /// Write into tables that already exist (else a target holding any
    /// of the archive's tables is refused).
    pub into_existing: bool,
    /// Files copied at once.
    pub jobs: usize,
    /// Build hnsw and ivfflat indexes (else their statements are listed).
    pub vector_indexes: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    pub archive: String,
    pub target: String,
    /// The source snapshot the archive was read at.
    pub snapshot_taken_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectorize: Option<String>,
    pub tables: Vec<TableRestored>,
    pub rows: u64,
    /// Files an earlier, interrupted restore had already copied (Postgres).
    #[serde(skip_serializing_if = "is_zero")]
    pub files_already_copied: usize,
    /// Statements of the source's schema not run (Postgres): vector
    /// indexes on request, foreign keys to tables the target lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
    pub seconds: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize)]
pub struct TableRestored {
    pub table: String,
    /// The table written: the D1 table, or the Postgres table.
    pub target_table: String,
    pub rows: u64,
    pub files: usize,
    /// Archived rows left out because they are not live: soft-deleted
    /// themselves, or below a soft-deleted parent (pgflare.toml's
    /// `soft_delete`, as `load` leaves them out).
    #[serde(skip_serializing_if = "no_rows")]
    pub not_live: u64,
    /// What went to Vectorize (tables with a vector mapping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectors: Option<VectorReport>,
}

pub async fn run(opts: &RestoreOptions, progress: &Progress) -> Result<RestoreSummary> {
    let manifest = Manifest::read(&opts.dir)?;
    // Into Postgres the archive comes back as it is: pgflare.toml's
    // mapping is D1's.
    let mapped = matches!(opts.to, RestoreTo::D1 { .. });
    let tables = selected(&manifest, mapped.then_some(&opts.project), &opts.only_tables)?;
    crate::source::archive::check_files(&opts.dir, &manifest)?;
    match &opts.to {
        RestoreTo::D1 { target, vectorize, create_tables } => {
            let to = d1::D1To { target, vectorize, create_tables: *create_tables };
            d1::run(opts, &manifest, &tables, &to, progress).await
        }
        RestoreTo::Postgres(pg) => postgres::run(opts, &manifest, &tables, pg, progress).await,
    }
}

/// The archive's tables `only` names (all when empty); a name the archive
/// does not hold is refused with the names it does.
fn selected<'a>(
    manifest: &'a Manifest,
    project: Option<&Project>,
    only: &[String],
) -> Result<Vec<&'a ManifestTable>> {
    let names = |t: &ManifestTable| [t.spec.name.clone(), t.spec.qualified()];
    let none = Project::default();
    let project = project.unwrap_or(&none);
    // With [[tables]] in pgflare.toml, the configured ones (as load).
    let configured = |t: &ManifestTable| {
        project.tables.is_empty()
            || project.tables.iter().any(|m| m.schema == t.spec.schema && m.table == t.spec.name)
    };
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
        .filter(|t| configured(t) && (only.is_empty() || only.iter().any(|o| names(t).contains(o))))
        .collect())
}

fn no_rows(n: &u64) -> bool {
    *n == 0
}
