//! `pgflare load`: the initial bulk load of the configured tables into D1.
//! One exported snapshot, parallel workers over key ranges, tables in
//! foreign-key order, every range rendered as idempotent upserts and sent
//! to the chosen target ([`target`]), each finished range recorded in a
//! state file ([`state`]) so that a killed load, run again, loads only
//! what is missing. `--dry-run` stops after planning ([`plan`]).

pub mod checkpoint;
mod hand_over;
pub mod links;
mod live;
pub mod report;
pub mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

pub use self::report::TableSummary;
use self::report::{column_widths, table_summaries, write_files_manifest};
use self::state::{LoadState, PartitionState, StateFile, StateLock, TableState};
use crate::batch::sink::VectorReport;
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::plan::{self, prepare, target, vectors, Prepared, TablePlan};
use crate::plan::{Target, VectorTarget};
use crate::progress::Progress;
use crate::sink::d1::render::D1Mappings;
use crate::source::{partition, read_all, ReadOptions, Snapshot, SnapshotInfo, Source};
use crate::source::{SplitOptions, TableJob};

pub struct LoadOptions {
    pub project: Project,
    /// Only these tables of the project (`--table`); empty = all.
    pub only_tables: Vec<String>,
    pub target: Target,
    /// Where vectors go (tables with a `vector` column).
    pub vectorize: VectorTarget,
    pub read: ReadOptions,
    pub split: SplitOptions,
    pub state_dir: PathBuf,
    pub restart: bool,
    pub dry_run: bool,
    pub create_tables: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    pub target: String,
    /// Where vectors went, when they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectorize: Option<String>,
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
    /// Where the checkpoint a later `pgflare sync` starts from was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_checkpoint: Option<String>,
}

pub async fn run(src: &Source, opts: &LoadOptions, progress: &Progress) -> Result<LoadSummary> {
    let started = Instant::now();
    let mut snapshot = Snapshot::export(src).await?;
    // The source answered: from here on this load writes, and it is the
    // only one writing this state folder (a dry run only reads it).
    let _lock = match opts.dry_run {
        true => None,
        false => Some(StateLock::acquire(&opts.state_dir, &opts.target.describe())?),
    };
    let vectors_on = !matches!(opts.vectorize, VectorTarget::Off);
    let prepared = prepare(&mut snapshot, &opts.project, &opts.only_tables, vectors_on).await?;
    let (infos, mappings) = (&prepared.infos, &prepared.mappings);
    let waves = prepared.fks.waves.clone();
    let vector_target =
        if prepared.vectors.mappings.0.is_empty() { VectorTarget::Off } else { opts.vectorize.clone() };
    let vectors_to = vector_target.describe();
    // Only an index has metadata indexes and a metric (NDJSON files do not).
    let index = matches!(vector_target, VectorTarget::Api { .. }).then_some(&opts.project.vectorize);
    let fingerprint = crate::state::fingerprint::load_fingerprint(
        &opts.target,
        vectors_to.as_deref(),
        infos,
        mappings,
        &prepared.vectors,
        index,
    );
    let state_path = opts.target.state_path(&opts.state_dir, vectors_to.as_deref());
    let previous = if opts.restart { None } else { StateFile::read(&state_path)? };
    if let Some(p) = &previous {
        if !fingerprint.matches(&p.fingerprint) {
            return Err(Error::Config {
                setting: "pgflare load".into(),
                message: format!(
                    "{} holds {} load with other tables, column mappings or Vectorize settings \
                     (vector mapping, metadata indexes, metric); run with the settings it was started with, \
                     or pass --restart to load everything again",
                    state_path.display(),
                    if p.complete { "a finished" } else { "an unfinished" }
                ),
            });
        }
    }
    let resumed = previous.is_some();
    let mut state = match previous {
        Some(mut s) => {
            s.runs += 1;
            // A state written before the stable form now holds it.
            s.fingerprint.clone_from(&fingerprint.current);
            s
        }
        None => {
            new_state(&mut snapshot, opts, vectors_to.as_deref(), &prepared, &fingerprint.current).await?
        }
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
            let vector_rows = match prepared.vectors.mappings.get(&infos[i].spec) {
                Some(_) => (infos[i].row_estimate.unwrap_or(0) as f64 * (1.0 - done_share)) as u64,
                None => 0,
            };
            let (vector_files, vector_requests) = match vector_rows {
                0 => (0, 0),
                n => plan::estimate_vectors(
                    &vector_target,
                    n,
                    todo,
                    opts.project.vectorize.vectors_per_request,
                ),
            };
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
                estimated_vector_files: vector_files,
                estimated_vector_requests: vector_requests,
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
        vectorize: vectors_to.clone(),
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
        sync_checkpoint: None,
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
    let api_settings = match (&opts.target, &vector_target) {
        (Target::Api { settings, .. }, _) | (_, VectorTarget::Api { settings, .. }) => Some(settings.clone()),
        _ => None,
    };
    // One client: D1 and Vectorize share the token's request budget.
    let api = match api_settings {
        Some(s) => Some(Arc::new(crate::cloudflare::Api::new(s)?.with_progress(notices))),
        None => None,
    };
    let target = opts.target.open(d1_mappings, api.clone())?;
    let mut vector_plan = prepared.vectors.clone();
    let opened_vectors =
        vectors::open(&vector_target, &mut vector_plan, &opts.project.vectorize, api, progress).await?;
    if !resumed {
        target.clear_previous_output()?;
        if let Some(dir) = opened_vectors.as_ref().and_then(|v| v.files_dir.as_ref()) {
            target::clear_parts(dir, ".ndjson")?;
        }
    }
    if opened_vectors.is_some() {
        hand_over::forget_sync_records(&target, opts).await?;
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
    let spool = links::spool(&state_path, &prepared, resumed)?;
    let mut sinks_of: Vec<Arc<dyn crate::batch::sink::SinkFactory>> = vec![target.sinks()];
    sinks_of.extend(spool.clone().map(|s| Arc::new(s) as Arc<dyn crate::batch::sink::SinkFactory>));
    sinks_of.extend(opened_vectors.as_ref().map(|v| v.sinks.clone()));
    let inner: Arc<dyn crate::batch::sink::SinkFactory> = match sinks_of.len() {
        1 => target.sinks(),
        _ => Arc::new(crate::sink::tee::Tee(sinks_of)),
    };
    let confirm = opened_vectors.as_ref().and_then(|v| v.index.clone()).map(|index| checkpoint::Confirm {
        index,
        timeout: opts.project.vectorize.wait_timeout,
        runtime: tokio::runtime::Handle::current(),
        waiting: Arc::default(),
        status: progress.spinner("vectorize"),
    });
    let sinks = Arc::new(checkpoint::Checkpointing {
        inner,
        state: state.clone(),
        bars: bars.clone(),
        bytes: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        confirm: confirm.clone(),
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
        let read = read_all(src, &snapshot.info.id, jobs, sinks.clone(), opts.read).await;
        // Ranges whose writes Vectorize accepted are recorded once applied,
        // even when another range failed (the rerun then redoes less); the
        // read's own error is the one to report.
        let applied = match &confirm {
            Some(c) => c.drain().await,
            None => Ok(()),
        };
        let read = match read {
            Ok(r) => r,
            Err(e) => return Err(live::explain_refusal(&mut snapshot, &prepared, wave, e).await),
        };
        applied?;
        for r in read {
            *this_run.entry(r.table.qualified()).or_default() += r.rows;
        }
    }
    snapshot.release().await?;
    bars.iter().for_each(|(_, b)| b.finish());
    if let Some(c) = &confirm {
        c.status.finish_and_clear();
    }
    if let Some(spool) = &spool {
        links::link_all(&state, &target.link_target(), &spool.dir, &prepared, progress).await?;
    }
    let done = state.snapshot()?;
    let index = opened_vectors.as_ref().and_then(|v| v.index.as_deref());
    summary.sync_checkpoint =
        hand_over::hand_over(&target, &prepared, opts, &done.first_snapshot, resumed, index).await?;
    if let target::OpenTarget::Files(c) = &target {
        let vectors_dir = opened_vectors.as_ref().and_then(|v| v.files_dir.as_deref());
        write_files_manifest(&c.dir, &done, &waves, vectors_dir)?;
    }
    // Complete only once the hand-over and the manifest are written: a run
    // killed (or failing) before them is then resumed with nothing left to
    // load and writes them; marked earlier, every rerun would return early
    // and sync would find no checkpoint (found by scripts/chaos.sh).
    state.mark_complete()?;
    summary.complete = true;
    summary.tables = table_summaries(&done, &this_run, &done_before);
    summary.rows_this_run = this_run.values().sum();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

async fn new_state(
    snapshot: &mut Snapshot,
    opts: &LoadOptions,
    vectors_to: Option<&str>,
    prepared: &Prepared,
    fingerprint: &str,
) -> Result<LoadState> {
    live::check_parents(snapshot, prepared).await?;
    if vectors_to.is_some() {
        vectors::check_room(snapshot.conn(), prepared).await?;
    }
    let mut tables = Vec::new();
    for (info, m) in prepared.infos.iter().zip(&prepared.mappings) {
        let mut parts = partition::plan(snapshot.conn(), &info.spec, info.total_bytes, opts.split).await?;
        let filter = prepared.live.live(&info.spec);
        parts.iter_mut().for_each(|p| p.filter = filter.clone());
        let left_out = live::left_out(snapshot, &prepared.live, &info.spec).await?;
        tables.push(TableState {
            table: info.spec.qualified(),
            d1_table: m.table.clone(),
            partitions: parts
                .into_iter()
                .map(|range| PartitionState {
                    range,
                    done: false,
                    rows: 0,
                    bytes: 0,
                    files: Vec::new(),
                    vectors: VectorReport::default(),
                    linked: false,
                    links: Default::default(),
                })
                .collect(),
            rows_soft_deleted: left_out.soft_deleted,
            rows_hidden_by_deleted_parent: left_out.hidden_by_parent,
        });
    }
    let target = match vectors_to {
        Some(v) => format!("{} + {v}", opts.target.describe()),
        None => opts.target.describe(),
    };
    Ok(LoadState {
        format: state::FORMAT.into(),
        target,
        fingerprint: fingerprint.to_string(),
        first_snapshot: snapshot.info.clone(),
        runs: 1,
        complete: false,
        tables,
    })
}
