//! The resolved plan every job starts from, decided before any row moves:
//! the settings from the command line, the environment and the config
//! files ([`resolve`], [`cloudflare`]), the tables read and their D1 and
//! Vectorize mappings ([`prepare`], shared by load, sync and verify), the
//! order tables load in and the foreign keys on a cycle written after the
//! rows (`sink::d1::links::FkPlan`), the estimates `--dry-run` prints,
//! where the rows and vectors go ([`target`], [`vectors`], [`access`]), and
//! a remote D1 made local for reading ([`d1_export`], verify and archive).

use std::collections::BTreeMap;

use serde::Serialize;

pub mod access;
pub mod cloudflare;
pub mod d1_export;
pub mod live;
pub mod live_archive;
pub mod resolve;
pub mod target;
pub mod targets;
pub mod vectors;

pub use target::Target;
pub use vectors::VectorTarget;

use crate::config::mapping::{default_mapping, D1Table};
use crate::config::project::{Project, TableMapping};
use crate::error::{Error, Result};
use crate::sink::d1::render::D1Mapping;
use crate::source::introspect::introspect_lenient;
use crate::source::unsupported::{refuse_unsupported, FixStyle};
use crate::source::{Selection, Snapshot, TableInfo};

/// The D1 side of one introspected table: the configured mapping (or the
/// default: every column but a vector column), checked against the catalog.
pub fn d1_table(configured: Option<&TableMapping>, info: &TableInfo) -> Result<(D1Table, D1Mapping)> {
    let default;
    let m = match configured {
        Some(m) => m,
        None => {
            default = default_mapping(info);
            &default
        }
    };
    let t = crate::config::mapping::d1_table(m, info)?;
    if t.primary_key.is_empty() {
        // Without a key a replayed range would insert its rows twice.
        return Err(crate::error::Error::Config {
            setting: format!("{} (table {})", m.setting, info.spec.qualified()),
            message: "has no primary key, so its rows cannot be upserted and a resumed load could \
                      duplicate them; add a primary key in Postgres, set `primary_key = [\"col\", ...]` \
                      (a unique, non-null column set) in pgflare.toml, or leave the table out with --table"
                .into(),
        });
    }
    let mapping = D1Mapping {
        table: t.name.clone(),
        columns: t
            .source_columns
            .iter()
            .cloned()
            .zip(t.spec.columns.iter().map(|c| c.name.clone()))
            .collect(),
        key: t.primary_key.clone(),
        // Set once every table is known (`FkPlan`).
        links: Vec::new(),
    };
    Ok((t, mapping))
}

/// What `--dry-run` prints for one table.
#[derive(Clone, Debug, Serialize)]
pub struct TablePlan {
    pub table: String,
    pub d1_table: String,
    pub wave: usize,
    pub columns: Vec<String>,
    pub rows_estimate: Option<u64>,
    pub partitions: usize,
    pub partitions_done: usize,
    /// Rough D1 size: rows x average stored width of the D1 columns.
    pub estimated_d1_bytes: u64,
    /// What the target will receive for the ranges not yet done: SQL files
    /// (`files`) or API requests (`api`); 0 where it does not apply.
    pub estimated_files: u64,
    pub estimated_requests: u64,
    /// Vectorize NDJSON files or upsert requests (plus `info` polls) for
    /// the ranges not yet done; 0 when the table sends no vectors.
    pub estimated_vector_files: u64,
    pub estimated_vector_requests: u64,
}

/// Vectorize files or requests for `rows` rows over `ranges` ranges, at
/// `per` vectors per file or request (each range ends on a part-full one;
/// the API waits for each range's last write with ~2 `info` polls).
pub fn estimate_vectors(target: &VectorTarget, rows: u64, ranges: usize, per: usize) -> (u64, u64) {
    let (ranges, per) = (ranges as u64, per.max(1) as u64);
    if ranges == 0 {
        return (0, 0);
    }
    let each = (rows / ranges).div_ceil(per).max(1);
    match target {
        VectorTarget::Off => (0, 0),
        VectorTarget::Files { .. } => (ranges * each, 0),
        VectorTarget::Api { .. } => (0, ranges * (each + 2) + 2),
    }
}

/// Files or requests for `sql_bytes` of SQL spread over `ranges` key
/// ranges, as the targets cut them (see `sink::d1::api`): per range, one
/// import (init, ingest, ~2 polls: 4 requests) per `import_bytes` when the
/// range holds at least `import_min`, else one `query` per `query_bytes`.
pub fn estimate_output(target: &Target, sql_bytes: u64, ranges: usize) -> (u64, u64) {
    let ranges = ranges as u64;
    if ranges == 0 {
        return (0, 0);
    }
    let per = sql_bytes / ranges;
    match target {
        Target::Files { file_bytes, .. } => (ranges * per.div_ceil((*file_bytes).max(1)).max(1), 0),
        Target::Sqlite { .. } => (0, 0),
        Target::Api { import_bytes, query_bytes, .. } => {
            let import_min = crate::sink::d1::api::import_min_bytes(*import_bytes) as u64;
            let each = if per >= import_min {
                4 * per.div_ceil(*import_bytes as u64)
            } else {
                per.div_ceil(*query_bytes as u64).max(1)
            };
            (0, ranges * each)
        }
    }
}

/// Rough D1 size: rows x the sampled average text width of the D1 columns.
pub fn estimated_d1_bytes(info: &TableInfo, mapping: &D1Mapping, widths: &BTreeMap<String, i64>) -> u64 {
    let rows = info.row_estimate.unwrap_or(0);
    let per_row: i64 =
        mapping.columns.iter().map(|(s, _)| widths.get(s).copied().unwrap_or(16)).sum::<i64>() + 16;
    rows.saturating_mul(per_row.max(1) as u64)
}

/// The tables of a load (or a verification), mapped to D1 and Vectorize.
pub struct Prepared {
    /// The tables, with only the columns that are read (those D1 or Vectorize receive).
    pub infos: Vec<TableInfo>,
    pub mappings: Vec<D1Mapping>,
    /// The full catalog view and D1 table, for the schema.
    pub d1: Vec<(TableInfo, crate::config::mapping::D1Table)>,
    /// Foreign keys in D1: the waves tables load in, and the links.
    pub fks: crate::sink::d1::links::FkPlan,
    pub vectors: vectors::VectorPlan,
    /// Which rows are live (soft deletes, cascading along foreign keys).
    pub live: crate::plan::live::LiveRows,
}

/// The tables a job reads, with pgflare.toml's casts: the configured ones
/// (those `--table` names, when given), or with no `[[tables]]` the ones
/// named. A `--table` that names no configured table is refused.
pub fn selection(project: &Project, only_tables: &[String]) -> Result<Selection> {
    let wanted = |m: &crate::config::project::TableMapping| {
        only_tables.is_empty()
            || only_tables.iter().any(|t| *t == m.table || *t == format!("{}.{}", m.schema, m.table))
    };
    let mut casts = BTreeMap::new();
    let mut tables = Vec::new();
    for m in project.tables.iter().filter(|m| wanted(m)) {
        tables.push(format!("{}.{}", m.schema, m.table));
        for (c, ty) in &m.casts {
            casts.insert(format!("{}.{}.{c}", m.schema, m.table), ty.clone());
        }
    }
    if project.tables.is_empty() {
        tables = only_tables.to_vec();
    } else if tables.is_empty() {
        return Err(Error::Config {
            setting: "--table".into(),
            message: format!("none of {} is a table of the configuration", only_tables.join(", ")),
        });
    }
    let schema = if project.schema.is_empty() { "public".to_string() } else { project.schema.clone() };
    Ok(Selection { schema, tables, casts, excludes: Vec::new() })
}

/// Introspects the selected tables and maps each to D1; the columns read
/// are only those D1 receives.
pub async fn prepare(
    snapshot: &mut Snapshot,
    project: &Project,
    only_tables: &[String],
    vectors_on: bool,
) -> Result<Prepared> {
    let selection = selection(project, only_tables)?;
    let mut infos = introspect_lenient(snapshot.conn(), &selection).await?;
    // A column nothing reads may be of any type; the rest are refused
    // together, with the pgflare.toml keys that fix them.
    let configured_for =
        |i: &TableInfo| project.tables.iter().find(|m| m.schema == i.spec.schema && m.table == i.spec.name);
    refuse_unsupported(&infos, FixStyle::Config, |info, u| match configured_for(info) {
        Some(m) => m.reads(&u.column),
        None => true,
    })?;
    let Mapped { mappings, d1, fks, vectors } = map_tables(project, &mut infos, vectors_on)?;
    let live = crate::plan::live::LiveRows::read(snapshot.conn(), project, &infos).await?;
    Ok(Prepared { infos, mappings, d1, fks, vectors, live })
}

/// The D1 and vector side of tables already described: what
/// [`prepare`] does after introspection, and what a restore does with the
/// tables an archive's manifest describes. The columns of `infos` are cut
/// to those D1 or Vectorize receive (and the soft-delete column).
pub struct Mapped {
    pub mappings: Vec<D1Mapping>,
    pub d1: Vec<(TableInfo, crate::config::mapping::D1Table)>,
    pub fks: crate::sink::d1::links::FkPlan,
    pub vectors: vectors::VectorPlan,
}

pub fn map_tables(project: &Project, infos: &mut [TableInfo], vectors_on: bool) -> Result<Mapped> {
    let (mut mappings, mut d1) = (Vec::new(), Vec::new());
    let mut vectors = vectors::VectorPlan::default();
    for info in infos.iter_mut() {
        let configured =
            project.tables.iter().find(|m| m.schema == info.spec.schema && m.table == info.spec.name);
        let (table, m) = d1_table(configured, info)?;
        d1.push((info.clone(), table));
        // With vectors off, the vector column is not even read.
        let vm = match configured {
            Some(c) if vectors_on => crate::config::mapping::vector_mapping(c, info, &project.vectorize)?,
            _ => None,
        };
        if let (Some(vm), Some(c)) = (&vm, configured) {
            if let Some(other) = vectors.mappings.0.keys().next() {
                return Err(Error::Config {
                    setting: format!("{}.vector", c.setting),
                    message: format!(
                        "{other} also sends vectors: one load fills one Vectorize index, and ids of two \
                         tables could collide; load one of them with --table (and another index) at a time"
                    ),
                });
            }
            vectors.mappings.0.insert(info.spec.qualified(), vm.clone());
            vectors.metadata_indexes = crate::config::mapping::metadata_index_types(c, info);
        }
        // Read what D1 or Vectorize receives, nothing else.
        let vector_columns: Vec<&String> = vm.iter().flat_map(|v| v.columns()).collect();
        // The soft-delete column too: load, verify and sync filter on it.
        let soft = configured.and_then(|c| c.soft_delete.as_ref());
        info.spec.columns.retain(|c| {
            m.columns.iter().any(|(s, _)| *s == c.name)
                || vector_columns.contains(&&c.name)
                || soft == Some(&c.name)
        });
        mappings.push(m);
    }
    // `d1` holds every column of each table, as the D1 schema does.
    let fks = crate::sink::d1::links::FkPlan::new(&d1);
    for (i, m) in mappings.iter_mut().enumerate() {
        m.links = fks.links(i);
    }
    Ok(Mapped { mappings, d1, fks, vectors })
}
