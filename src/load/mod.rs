//! `pgflare load`: the initial bulk load of the configured tables into D1.
//! One exported snapshot, parallel workers over key ranges, tables in
//! foreign-key order, every range rendered as idempotent upserts and sent
//! to the chosen target ([`target`]), each finished range recorded in a
//! state file ([`state`]) so that a killed load, run again, loads only
//! what is missing. `--dry-run` stops after planning ([`plan`]).

pub mod checkpoint;
pub mod plan;
pub mod state;
pub mod target;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sqlx::Row as _;

use self::plan::TablePlan;
use self::state::{LoadState, PartitionState, StateFile, TableState};
pub use self::target::Target;
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sink::d1::render::{D1Mapping, D1Mappings};
use crate::source::{
    introspect, partition, read_all, ReadOptions, Selection, Snapshot, SnapshotInfo, Source,
};
use crate::source::{SplitOptions, TableInfo, TableJob};

pub struct LoadOptions {
    pub project: Project,
    /// Only these tables of the project (`--table`); empty = all.
    pub only_tables: Vec<String>,
    pub target: Target,
    pub read: ReadOptions,
    pub split: SplitOptions,
    pub state_dir: PathBuf,
    pub restart: bool,
    pub dry_run: bool,
    pub create_tables: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct TableSummary {
    pub table: String,
    pub d1_table: String,
    /// Rows in the target from this load, all runs together.
    pub rows: u64,
    /// Rows written by this run.
    pub rows_this_run: u64,
    pub bytes: u64,
    pub partitions: usize,
    /// Ranges a previous run had finished, skipped now.
    pub partitions_skipped: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    pub target: String,
    pub state_file: String,
    pub dry_run: bool,
    pub resumed: bool,
    pub complete: bool,
    pub snapshot: SnapshotInfo,
    /// Where a later sync must start: the snapshot of the first run.
    pub first_snapshot: SnapshotInfo,
    pub seconds: f64,
    pub rows_this_run: u64,
    pub tables: Vec<TableSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<TablePlan>,
    pub estimated_d1_bytes: u64,
    pub d1_limit_bytes: u64,
}

struct Prepared {
    /// The tables, with only the columns that are read (those D1 receives).
    infos: Vec<TableInfo>,
    mappings: Vec<D1Mapping>,
    /// The full catalog view and D1 table, for the schema.
    d1: Vec<(TableInfo, crate::config::mapping::D1Table)>,
}

pub async fn run(src: &Source, opts: &LoadOptions, progress: &Progress) -> Result<LoadSummary> {
    let started = Instant::now();
    let mut snapshot = Snapshot::export(src).await?;
    let prepared = prepare(&mut snapshot, opts).await?;
    let (infos, mappings) = (&prepared.infos, &prepared.mappings);
    let waves = plan::waves(infos);
    let fingerprint = fingerprint(&opts.target, infos, mappings);
    let state_path = opts.target.state_path(&opts.state_dir);
    let previous = if opts.restart { None } else { StateFile::read(&state_path)? };
    if let Some(p) = &previous {
        if p.fingerprint != fingerprint {
            return Err(Error::Config {
                setting: "pgflare load".into(),
                message: format!(
                    "{} holds an unfinished load with other tables or column mappings; \
                     run with the settings it was started with, or pass --restart to load everything again",
                    state_path.display()
                ),
            });
        }
    }
    let resumed = previous.is_some();
    let mut state = match previous {
        Some(mut s) => {
            s.runs += 1;
            s
        }
        None => new_state(&mut snapshot, opts, infos, mappings, &fingerprint).await?,
    };
    let mut table_plans = Vec::new();
    let widths = if opts.dry_run { column_widths(&mut snapshot, infos).await? } else { BTreeMap::new() };
    for (w, wave) in waves.iter().enumerate() {
        for &i in wave {
            let t = &state.tables[i];
            let d1_bytes = plan::estimated_d1_bytes(
                &infos[i],
                &mappings[i],
                widths.get(&t.table).unwrap_or(&BTreeMap::new()),
            );
            let todo = t.partitions.iter().filter(|p| !p.done).count();
            let done_share = 1.0 - todo as f64 / t.partitions.len().max(1) as f64;
            // SQL text is a little more than the stored text (quotes, separators, statement heads).
            let sql_todo = (d1_bytes as f64 * 1.05 * (1.0 - done_share)) as u64;
            let (files, requests) = plan::estimate_output(&opts.target, sql_todo, todo);
            table_plans.push(TablePlan {
                table: t.table.clone(),
                d1_table: t.d1_table.clone(),
                wave: w,
                columns: mappings[i].columns.iter().map(|(_, d)| d.clone()).collect(),
                rows_estimate: infos[i].row_estimate,
                partitions: t.partitions.len(),
                partitions_done: t.partitions.iter().filter(|p| p.done).count(),
                estimated_d1_bytes: d1_bytes,
                estimated_files: files,
                estimated_requests: requests,
            });
        }
    }
    let done_before: BTreeMap<String, usize> = state
        .tables
        .iter()
        .map(|t| (t.table.clone(), t.partitions.iter().filter(|p| p.done).count()))
        .collect();
    let estimated: u64 = table_plans.iter().map(|p| p.estimated_d1_bytes).sum();
    let mut summary = LoadSummary {
        target: opts.target.describe(),
        state_file: state_path.display().to_string(),
        dry_run: opts.dry_run,
        resumed,
        complete: state.complete,
        snapshot: snapshot.info.clone(),
        first_snapshot: state.first_snapshot.clone(),
        seconds: 0.0,
        rows_this_run: 0,
        tables: Vec::new(),
        plan: if opts.dry_run { table_plans } else { Vec::new() },
        estimated_d1_bytes: estimated,
        d1_limit_bytes: crate::cloudflare::limits::D1_MAX_DATABASE_BYTES,
    };
    if opts.dry_run || state.complete {
        snapshot.release().await?;
        summary.tables = table_summaries(&state, &BTreeMap::new(), &done_before);
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    state.complete = false;
    let state = Arc::new(StateFile::create(&state_path, state)?);
    let d1_mappings =
        D1Mappings(infos.iter().zip(mappings).map(|(i, m)| (i.spec.qualified(), m.clone())).collect());
    let notices = progress.clone();
    let target = opts.target.open(d1_mappings, Arc::new(move |m: &str| notices.println(m)))?;
    if !resumed {
        target.clear_previous_output()?;
    }
    if opts.create_tables {
        let ddl = crate::sink::d1::migration::migration_sql(&prepared.d1)?;
        target.apply_schema(&ddl).await?;
    }
    let snap = state.snapshot()?;
    let bars: Vec<(String, indicatif::ProgressBar)> = infos
        .iter()
        .zip(&snap.tables)
        .map(|(i, t)| {
            let bar = progress.rows(&i.spec.qualified(), i.row_estimate);
            bar.set_position(t.partitions.iter().map(|p| p.rows).sum());
            (i.spec.qualified(), bar)
        })
        .collect();
    let sinks = Arc::new(checkpoint::Checkpointing {
        inner: target.sinks(),
        state: state.clone(),
        bars: bars.clone(),
        bytes: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    });
    let mut this_run: BTreeMap<String, u64> = BTreeMap::new();
    for wave in &waves {
        let jobs: Vec<TableJob> = wave
            .iter()
            .map(|&i| TableJob {
                table: Arc::new(infos[i].spec.clone()),
                partitions: snap.tables[i]
                    .partitions
                    .iter()
                    .filter(|p| !p.done)
                    .map(|p| p.range.clone())
                    .collect(),
                progress: bars[i].1.clone(),
            })
            .filter(|j| !j.partitions.is_empty())
            .collect();
        if jobs.is_empty() {
            continue;
        }
        for r in read_all(src, &snapshot.info.id, jobs, sinks.clone(), opts.read).await? {
            *this_run.entry(r.table.qualified()).or_default() += r.rows;
        }
    }
    snapshot.release().await?;
    bars.iter().for_each(|(_, b)| b.finish());
    state.mark_complete()?;
    let done = state.snapshot()?;
    if let target::OpenTarget::Files(c) = &target {
        write_files_manifest(&c.dir, &done, &waves)?;
    }
    summary.complete = true;
    summary.tables = table_summaries(&done, &this_run, &done_before);
    summary.rows_this_run = this_run.values().sum();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Introspects the selected tables and maps each to D1; the columns read
/// are only those D1 receives.
async fn prepare(snapshot: &mut Snapshot, opts: &LoadOptions) -> Result<Prepared> {
    let project = &opts.project;
    let wanted = |m: &crate::config::project::TableMapping| {
        opts.only_tables.is_empty()
            || opts.only_tables.iter().any(|t| *t == m.table || *t == format!("{}.{}", m.schema, m.table))
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
        tables = opts.only_tables.clone();
    } else if tables.is_empty() {
        return Err(Error::Config {
            setting: "--table".into(),
            message: format!("none of {} is a table of the configuration", opts.only_tables.join(", ")),
        });
    }
    let schema = if project.schema.is_empty() { "public".to_string() } else { project.schema.clone() };
    let selection = Selection { schema, tables, casts, excludes: Vec::new() };
    let mut infos = introspect(snapshot.conn(), &selection).await?;
    let (mut mappings, mut d1) = (Vec::new(), Vec::new());
    for info in &mut infos {
        let configured =
            project.tables.iter().find(|m| m.schema == info.spec.schema && m.table == info.spec.name);
        let (table, m) = plan::d1_table(configured, info)?;
        d1.push((info.clone(), table));
        info.spec.columns.retain(|c| m.columns.iter().any(|(s, _)| *s == c.name));
        mappings.push(m);
    }
    Ok(Prepared { infos, mappings, d1 })
}

async fn new_state(
    snapshot: &mut Snapshot,
    opts: &LoadOptions,
    infos: &[TableInfo],
    mappings: &[D1Mapping],
    fingerprint: &str,
) -> Result<LoadState> {
    let mut tables = Vec::new();
    for (info, m) in infos.iter().zip(mappings) {
        let parts = partition::plan(snapshot.conn(), &info.spec, info.total_bytes, opts.split).await?;
        tables.push(TableState {
            table: info.spec.qualified(),
            d1_table: m.table.clone(),
            partitions: parts
                .into_iter()
                .map(|range| PartitionState { range, done: false, rows: 0, bytes: 0, files: Vec::new() })
                .collect(),
        });
    }
    Ok(LoadState {
        format: state::FORMAT.into(),
        target: opts.target.describe(),
        fingerprint: fingerprint.to_string(),
        first_snapshot: snapshot.info.clone(),
        runs: 1,
        complete: false,
        tables,
    })
}

fn fingerprint(target: &Target, infos: &[TableInfo], mappings: &[D1Mapping]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(target.describe().as_bytes());
    for (i, m) in infos.iter().zip(mappings) {
        h.update(format!("\n{}>{}:{:?}:{:?}", i.spec.qualified(), m.table, m.columns, m.key).as_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}

/// Average text width of each D1 column over a sample of about 2,000 rows
/// (`octet_length(col::text)`: close to what D1 stores, since D1 keeps
/// timestamps, JSON and vectors as text; `pg_stats` would count a TOASTed
/// vector as its 18-byte pointer).
async fn column_widths(
    snapshot: &mut Snapshot,
    infos: &[TableInfo],
) -> Result<BTreeMap<String, BTreeMap<String, i64>>> {
    let mut out = BTreeMap::new();
    for i in infos {
        let cols: Vec<&str> = i.spec.columns.iter().map(|c| c.name.as_str()).collect();
        if cols.is_empty() {
            continue;
        }
        let rows = i.row_estimate.unwrap_or(0).max(1) as f64;
        let pct = (2000.0 / rows * 100.0).clamp(0.01, 100.0);
        let avgs = cols
            .iter()
            .map(|c| {
                format!("coalesce(avg(octet_length({}::text)), 0)::float8", crate::batch::quote_ident(c))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sample = if pct >= 100.0 { String::new() } else { format!(" TABLESAMPLE SYSTEM ({pct:.4})") };
        let sql = format!("SELECT {avgs} FROM (SELECT * FROM {}{sample} LIMIT 5000) s", i.spec.sql_name());
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *snapshot.conn())
            .await
            .map_err(Error::db(format!("sampling column widths of {}", i.spec.qualified())))?;
        let widths =
            cols.iter().enumerate().map(|(k, c)| (c.to_string(), row.get::<f64, _>(k).round() as i64));
        out.insert(i.spec.qualified(), widths.collect());
    }
    Ok(out)
}

fn table_summaries(
    state: &LoadState,
    this_run: &BTreeMap<String, u64>,
    done_before: &BTreeMap<String, usize>,
) -> Vec<TableSummary> {
    state
        .tables
        .iter()
        .map(|t| TableSummary {
            table: t.table.clone(),
            d1_table: t.d1_table.clone(),
            rows: t.partitions.iter().map(|p| p.rows).sum(),
            rows_this_run: this_run.get(&t.table).copied().unwrap_or(0),
            bytes: t.partitions.iter().map(|p| p.bytes).sum(),
            partitions: t.partitions.len(),
            partitions_skipped: done_before.get(&t.table).copied().unwrap_or(0),
        })
        .collect()
}

/// `manifest.json` of the files target: every file with its hash and rows,
/// and the order to apply them in (schema, then parents before children).
fn write_files_manifest(dir: &std::path::Path, state: &LoadState, waves: &[Vec<usize>]) -> Result<()> {
    // schema.sql exists unless --no-create-tables.
    let mut order: Vec<String> =
        if dir.join("schema.sql").exists() { vec!["schema.sql".to_string()] } else { Vec::new() };
    let mut tables = Vec::new();
    for &i in waves.iter().flatten() {
        let t = &state.tables[i];
        let files: Vec<_> = t.partitions.iter().flat_map(|p| p.files.clone()).collect();
        order.extend(files.iter().map(|f| f.path.clone()));
        tables.push(serde_json::json!({
            "table": t.table, "d1_table": t.d1_table,
            "rows": t.partitions.iter().map(|p| p.rows).sum::<u64>(), "files": files,
        }));
    }
    let manifest = serde_json::json!({
        "format": "pgflare-d1-files-v1",
        "created_by": concat!("pgflare ", env!("CARGO_PKG_VERSION")),
        "first_snapshot": state.first_snapshot,
        "tables": tables,
        "apply_order": order,
    });
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&path, text).map_err(Error::io(&path))
}
