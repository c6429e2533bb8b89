//! `pgflare reconcile --into postgres`: the full rollback after Cloudflare
//! took writes. Cloudflare's side, read into an archive of Cloudflare (D1's
//! rows in the source's names and types, each row's vector taken back from
//! Vectorize), is compared with the live Postgres by the bucket engine
//! verify uses ([`compare`]), and what differs is written back in one
//! transaction ([`apply`]): rows Cloudflare added are inserted, rows it
//! changed (text, metadata, a re-embedded vector) updated, rows it deleted
//! deleted. Only the columns Cloudflare holds are written; the others keep
//! their Postgres values (inserts take their defaults). A dry run stops
//! after the comparison with the plan. [`run`] reads as those steps.

pub mod apply;
pub mod compare;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::archive::manifest::Manifest;
use crate::source::{partition, ReadOptions, Snapshot, Source, SplitOptions};
use compare::{Changes, Compared};

/// The `format` of `pgflare --json reconcile` (schemas/reconcile-summary.schema.json).
pub const FORMAT: &str = "pgflare-reconcile-v1";

pub struct ReconcileOptions {
    /// The archive of Cloudflare to write back (`archive --from cloudflare`).
    pub archive: PathBuf,
    /// pgflare.toml: which rows of Postgres are live (soft deletes).
    pub project: Project,
    pub only_tables: Vec<String>,
    /// Compare and report; write nothing.
    pub dry_run: bool,
    /// Write with `session_replication_role = replica` (no user triggers).
    pub disable_triggers: bool,
    pub read: ReadOptions,
    pub split: SplitOptions,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReconcileSummary {
    pub archive: String,
    /// What the archive read: the D1 database or file and Vectorize index.
    pub cloudflare: String,
    /// When the archive read Cloudflare.
    pub read_at: String,
    pub dry_run: bool,
    /// Whether anything was written.
    pub written: bool,
    pub tables: Vec<TableSummary>,
    pub seconds: f64,
    pub notes: Vec<String>,
}

impl ReconcileSummary {
    /// Rows that differ(ed), all tables and kinds.
    pub fn differences(&self) -> u64 {
        self.tables.iter().map(|t| t.inserts + t.updates + t.deletes).sum()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TableSummary {
    pub table: String,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Per column, the updated rows that change it.
    pub columns_updated: BTreeMap<String, u64>,
    /// The first keys per kind (`insert`, `update`, `delete`).
    pub first_keys: BTreeMap<&'static str, Vec<String>>,
    /// Columns of the Postgres table that Cloudflare does not hold: left
    /// as they are (inserted rows take their defaults).
    pub columns_kept: Vec<String>,
}

pub async fn run(src: &Source, opts: &ReconcileOptions, progress: &Progress) -> Result<ReconcileSummary> {
    let started = Instant::now();
    let manifest = Manifest::read(&opts.archive)?;
    crate::source::archive::check_files(&opts.archive, &manifest)?;
    let mut snapshot = Snapshot::export(src).await?;
    let tables = resolve(&manifest, opts, &mut snapshot).await?;
    let mut live = HashMap::new();
    let mut notes = Vec::new();
    for t in &tables {
        live.insert(t.spec.qualified(), apply::live_columns(snapshot.conn(), &t.spec).await?);
        notes.extend(trigger_note(snapshot.conn(), t, opts.disable_triggers).await?);
    }
    let changes =
        compare::compare(src, &snapshot.info.id, &opts.archive, &tables, opts.read, progress).await?;
    snapshot.release().await?;
    for (t, c) in tables.iter().zip(&changes) {
        apply::check(t, &live[&t.spec.qualified()], c)?;
    }
    let write = !opts.dry_run && changes.iter().any(|c| !c.is_empty());
    if write {
        apply::apply(src, &opts.archive, &tables, &changes, &live, opts.disable_triggers, progress).await?;
    }
    notes.extend(side_note(&manifest));
    Ok(ReconcileSummary {
        archive: opts.archive.display().to_string(),
        cloudflare: manifest.source.url.clone(),
        read_at: manifest.created_at.clone(),
        dry_run: opts.dry_run,
        written: write,
        tables: tables.iter().zip(changes).map(|(t, c)| table_summary(t, c, &live)).collect(),
        seconds: started.elapsed().as_secs_f64(),
        notes,
    })
}

/// The archive's tables (those `--table` names), each with the live key
/// ranges of its Postgres table (live rows only), parents first.
async fn resolve<'m>(
    manifest: &'m Manifest,
    opts: &ReconcileOptions,
    snapshot: &mut Snapshot,
) -> Result<Vec<Compared<'m>>> {
    let vectors = manifest.cloudflare.as_ref().is_some_and(|c| c.vectorize.is_some());
    let prepared = crate::plan::prepare(snapshot, &opts.project, &opts.only_tables, vectors).await?;
    let mut tables = Vec::new();
    for t in &manifest.tables {
        let named = |o: &String| *o == t.spec.name || *o == t.spec.qualified();
        if !opts.only_tables.is_empty() && !opts.only_tables.iter().any(named) {
            continue;
        }
        let info =
            prepared.infos.iter().find(|i| i.spec.qualified() == t.spec.qualified()).ok_or_else(|| {
                Error::Config {
                    setting: format!("table {}", t.spec.qualified()),
                    message:
                        "is in the archive of Cloudflare but not among pgflare.toml's tables in Postgres: \
                          reconcile with the pgflare.toml the load used, or leave it out with --table"
                            .into(),
                }
            })?;
        if t.spec.primary_key.is_empty() {
            return Err(Error::Config {
                setting: format!("table {}", t.spec.qualified()),
                message: "has no primary key: its rows cannot be matched between Cloudflare and Postgres; \
                          declare primary_key in pgflare.toml (and load again), or leave it out with --table"
                    .into(),
            });
        }
        let spec = Arc::new(t.spec.clone());
        let mut parts = partition::plan(snapshot.conn(), &spec, info.total_bytes, opts.split).await?;
        let filter = prepared.live.live(&info.spec);
        parts.iter_mut().for_each(|p| p.filter = filter.clone());
        let parents = info.foreign_keys.iter().map(|f| format!("{}.{}", f.ref_schema, f.ref_table)).collect();
        let soft = prepared.live.soft_column(&info.spec);
        tables.push(Compared { table: t, spec, parts, parents, live: filter, soft });
    }
    Ok(parents_first(tables))
}

/// Tables ordered so that a table's parents come before it (a cycle
/// between tables keeps the archive's order for its members).
fn parents_first(mut rest: Vec<Compared<'_>>) -> Vec<Compared<'_>> {
    let mut out: Vec<Compared> = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let names: Vec<String> = rest.iter().map(|t| t.spec.qualified()).collect();
        let ready = rest
            .iter()
            .position(|t| t.parents.iter().all(|p| *p == t.spec.qualified() || !names.contains(p)));
        out.push(rest.remove(ready.unwrap_or(0)));
    }
    out
}

fn table_summary(t: &Compared, c: Changes, live: &HashMap<String, Vec<apply::LiveColumn>>) -> TableSummary {
    let held = |n: &str| t.spec.columns.iter().any(|c| c.name == n);
    TableSummary {
        table: c.table,
        inserts: c.inserts,
        updates: c.updates,
        deletes: c.deleted,
        columns_updated: c.columns,
        first_keys: c.first,
        columns_kept: live
            .get(&t.spec.qualified())
            .map(|cols| cols.iter().filter(|l| !held(&l.name)).map(|l| l.name.clone()).collect())
            .unwrap_or_default(),
    }
}

/// User triggers fire on the rows reconcile writes (an `updated_at`
/// trigger would stamp them now, and the next verify would see it).
async fn trigger_note(
    conn: &mut crate::source::SourceConn,
    t: &Compared<'_>,
    disabled: bool,
) -> Result<Option<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY 1",
    )
    .bind(t.spec.sql_name())
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the triggers of {}", t.spec.qualified())))?;
    Ok((!names.is_empty() && !disabled).then(|| {
        format!(
            "{} has triggers ({}): they fire on the rows written; if one changes columns Cloudflare holds \
             (an updated_at stamp), pass --disable-triggers",
            t.spec.qualified(),
            names.join(", ")
        )
    }))
}

/// Vectors no archived row holds as they are are not written back.
fn side_note(manifest: &Manifest) -> Option<String> {
    let rows: u64 = manifest.side_tables.iter().map(|t| t.rows).sum();
    (rows > 0).then(|| {
        format!(
            "{rows} vectors of the index belong to no row as they are (the archive's _vectorize side table: \
             another id, namespace or metadata): they are not written to Postgres"
        )
    })
}
