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
use self::report::{table_summaries, write_files_manifest};
use self::state::{LoadState, PartitionState, StateFile, StateLock, TableState};
use crate::batch::sink::{SinkFactory, VectorReport};
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::plan::{prepare, target, vectors, Prepared, TablePlan};
use crate::plan::{Target, VectorTarget};
use crate::progress::Progress;
use crate::sink::d1::render::D1Mappings;
use crate::source::{partition, read_all, ReadOptions, Snapshot, SnapshotInfo, Source};
use crate::source::{SplitOptions, TableJob};
use crate::state::checkpoint::FollowPosition;

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
    /// `--slot`: read from a new replication slot's snapshot, so that
    /// `sync --follow` starts where the load ends ([`slot_start`]).
    pub slot: Option<String>,
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
    let vector_target =
        if prepared.vectors.mappings.0.is_empty() { VectorTarget::Off } else { opts.vectorize.clone() };
    let mut opened = open_state(&mut snapshot, opts, &prepared, &vector_target).await?;
    if let (Some(slot), false, false) = (&opts.slot, opened.resumed, opts.dry_run) {
        // A fresh load: read from the slot's snapshot instead.
        snapshot.release().await?;
        let (snap, position) = slot_start(src, slot, &prepared).await?;
        snapshot = snap;
        opened = open_state(&mut snapshot, opts, &prepared, &vector_target).await?;
        opened.state.follow = Some(position);
    }
    let OpenedState { state, state_path, resumed } = opened;
    let targets = (&opts.target, &vector_target);
    let per_request = opts.project.vectorize.vectors_per_request;
    let table_plans =
        report::table_plans(&mut snapshot, opts.dry_run, targets, per_request, &prepared, &state).await?;
    let done_before: BTreeMap<String, usize> = state
        .tables
        .iter()
        .map(|t| (t.table.clone(), t.partitions.iter().filter(|p| p.done).count()))
        .collect();
    let mut summary = LoadSummary {
        target: opts.target.describe(),
        vectorize: vector_target.describe(),
        state_file: state_path.display().to_string(),
        dry_run: opts.dry_run,
        resumed,
        complete: state.complete,
        snapshot: snapshot.info.clone(),
        first_snapshot: state.first_snapshot.clone(),
        seconds: 0.0,
        rows_this_run: 0,
        tables: Vec::new(),
        estimated_d1_bytes: table_plans.iter().map(|p| p.estimated_d1_bytes).sum(),
        plan: if opts.dry_run { table_plans } else { Vec::new() },
        d1_limit_bytes: crate::cloudflare::limits::D1_MAX_DATABASE_BYTES,
        sync_checkpoint: None,
    };
    if opts.dry_run || state.complete {
        snapshot.release().await?;
        summary.tables = table_summaries(&state, &BTreeMap::new(), &done_before);
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let state = Arc::new(StateFile::create(&state_path, LoadState { complete: false, ..state })?);
    let targets = open_targets(opts, &prepared, &vector_target, resumed, progress).await?;
    let spool = links::spool(&state_path, &prepared, resumed)?;
    let sinks = checkpointing_sinks(opts, &prepared, &targets, spool.clone(), &state, progress)?;
    let this_run = load_waves(src, &mut snapshot, opts, &prepared, &state, &sinks).await?;
    snapshot.release().await?;
    sinks.recorder.bars.iter().for_each(|(_, b)| b.finish());
    if let Some(c) = &sinks.recorder.confirm {
        c.status.finish_and_clear();
    }
    if let Some(spool) = &spool {
        links::link_all(&state, &targets.d1.link_target(), &spool.dir, &prepared, progress).await?;
    }
    let done = state.snapshot()?;
    let index = targets.vectors.as_ref().and_then(|v| v.index.as_deref());
    summary.sync_checkpoint =
        hand_over::hand_over(&targets.d1, &prepared, opts, &done, resumed, index).await?;
    if let target::OpenTarget::Files(c) = &targets.d1 {
        let vectors_dir = targets.vectors.as_ref().and_then(|v| v.files_dir.as_deref());
        write_files_manifest(&c.dir, &done, &prepared.fks.waves, vectors_dir)?;
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

/// The load state: the previous run's (unless `--restart`), refused when
/// it was made for other settings, or a new one with every key range.
struct OpenedState {
    state: LoadState,
    state_path: PathBuf,
    resumed: bool,
}

/// Makes the replication slot `slot` (and its publication) and returns
/// a snapshot of the data as of the slot's consistent point, with the
/// position `sync --follow` starts from. A slot of that name is dropped
/// first (a previous load's); one in use is refused.
async fn slot_start(src: &Source, slot: &str, prepared: &Prepared) -> Result<(Snapshot, FollowPosition)> {
    use crate::source::wal::slot as wal;
    wal::check_slot_name(slot)?;
    let mut conn = src.connect().await?;
    let tables: Vec<&crate::batch::TableSpec> = prepared.infos.iter().map(|i| &i.spec).collect();
    wal::check_ready(src, &mut conn, &tables).await?;
    wal::drop_slot(&mut conn, slot).await?;
    // The publication first: the slot decodes with the catalog as of
    // each change.
    wal::ensure_publication(&mut conn, slot, &tables).await?;
    let cfg = wal::replication_config(src, slot, slot)?;
    let (created, session) = wal::create_slot(cfg, src.timeouts().connect, true).await?;
    let id =
        created.snapshot.clone().ok_or_else(|| Error::Internal("the slot exported no snapshot".into()))?;
    // The coordinator adopts the slot's snapshot and exports its own, so
    // the slot's session (which must stay idle while its snapshot is
    // imported) can close.
    let snapshot = Snapshot::export_from(src, Some(&id)).await?;
    drop(session);
    let position = FollowPosition {
        slot: slot.to_string(),
        lsn: created.consistent_point.to_string(),
        committed_at: None,
    };
    Ok((snapshot, position))
}

async fn open_state(
    snapshot: &mut Snapshot,
    opts: &LoadOptions,
    prepared: &Prepared,
    vector_target: &VectorTarget,
) -> Result<OpenedState> {
    let vectors_to = vector_target.describe();
    // Only an index has metadata indexes and a metric (NDJSON files do not).
    let index = matches!(vector_target, VectorTarget::Api { .. }).then_some(&opts.project.vectorize);
    let fingerprint = crate::state::fingerprint::load_fingerprint(
        &opts.target,
        vectors_to.as_deref(),
        &prepared.infos,
        &prepared.mappings,
        &prepared.vectors,
        index,
    );
    let state_path = opts.target.state_path(&opts.state_dir, vectors_to.as_deref());
    let previous = if opts.restart { None } else { StateFile::read(&state_path)? };
    let state = match previous {
        Some(p) if !fingerprint.matches(&p.fingerprint) => {
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
        // A state written before the stable form now holds it.
        Some(p) => LoadState { runs: p.runs + 1, fingerprint: fingerprint.current, ..p },
        None => {
            let state =
                new_state(snapshot, opts, vectors_to.as_deref(), prepared, &fingerprint.current).await?;
            return Ok(OpenedState { state, state_path, resumed: false });
        }
    };
    Ok(OpenedState { state, state_path, resumed: true })
}

/// The D1 target and the vector target, opened: one API client for both
/// (they share the token's request budget); a new load clears what an
/// earlier one left in them, and the schema is applied.
struct Targets {
    d1: target::OpenTarget,
    vectors: Option<vectors::OpenVectors>,
}

async fn open_targets(
    opts: &LoadOptions,
    prepared: &Prepared,
    vector_target: &VectorTarget,
    resumed: bool,
    progress: &Progress,
) -> Result<Targets> {
    let d1_mappings = D1Mappings(
        prepared.infos.iter().zip(&prepared.mappings).map(|(i, m)| (i.spec.qualified(), m.clone())).collect(),
    );
    let api_settings = match (&opts.target, vector_target) {
        (Target::Api { settings, .. }, _) | (_, VectorTarget::Api { settings, .. }) => Some(settings.clone()),
        _ => None,
    };
    let api = match api_settings {
        Some(s) => Some(Arc::new(crate::cloudflare::Api::new(s)?.with_progress(progress.clone()))),
        None => None,
    };
    let d1 = opts.target.open(d1_mappings, api.clone())?;
    let mut vector_plan = prepared.vectors.clone();
    let vectors =
        vectors::open(vector_target, &mut vector_plan, &opts.project.vectorize, api, progress, true).await?;
    if !resumed {
        d1.clear_previous_output()?;
        if let Some(dir) = vectors.as_ref().and_then(|v| v.files_dir.as_ref()) {
            target::clear_parts(dir, ".ndjson")?;
        }
    }
    if vectors.is_some() {
        hand_over::forget_sync_records(&d1, opts).await?;
    }
    if opts.create_tables {
        let ddl = crate::sink::d1::migration::migration_sql(&prepared.d1)?;
        d1.apply_schema(&ddl).await?;
    }
    Ok(Targets { d1, vectors })
}

/// Every sink of the run (D1, the link spool, Vectorize) behind the one
/// wrapper that records a range only once all of them finished it.
fn checkpointing_sinks(
    opts: &LoadOptions,
    prepared: &Prepared,
    targets: &Targets,
    spool: Option<crate::sink::d1::link_spool::LinkSpool>,
    state: &Arc<StateFile>,
    progress: &Progress,
) -> Result<Arc<checkpoint::Checkpointing>> {
    let snap = state.snapshot()?;
    let bars: Vec<(String, indicatif::ProgressBar)> = prepared
        .infos
        .iter()
        .zip(&snap.tables)
        .map(|(i, t)| {
            let bar = progress.rows(&i.spec.qualified(), i.row_estimate);
            bar.set_position(t.partitions.iter().map(|p| p.rows).sum());
            (i.spec.qualified(), bar)
        })
        .collect();
    let mut sinks_of: Vec<Arc<dyn SinkFactory>> = vec![targets.d1.sinks()];
    sinks_of.extend(spool.map(|s| Arc::new(s) as Arc<dyn SinkFactory>));
    sinks_of.extend(targets.vectors.as_ref().map(|v| v.sinks.clone()));
    let inner: Arc<dyn SinkFactory> = match sinks_of.len() {
        1 => targets.d1.sinks(),
        _ => Arc::new(crate::sink::tee::Tee(sinks_of)),
    };
    let tails = targets.vectors.as_ref().and_then(|v| v.tails.clone());
    let confirm = targets.vectors.as_ref().and_then(|v| v.index.clone()).map(|index| checkpoint::Confirm {
        index,
        tails,
        timeout: opts.project.vectorize.wait_timeout,
        runtime: tokio::runtime::Handle::current(),
        waiting: Arc::default(),
        status: progress.spinner("vectorize"),
    });
    let recorder = checkpoint::LoadRecorder {
        state: state.clone(),
        bars,
        bytes: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        confirm,
    };
    Ok(Arc::new(checkpoint::Checkpointing { inner, recorder: Arc::new(recorder) }))
}

/// Reads the ranges not done yet, wave by wave (parents before children);
/// returns the rows this run wrote per table.
async fn load_waves(
    src: &Source,
    snapshot: &mut Snapshot,
    opts: &LoadOptions,
    prepared: &Prepared,
    state: &StateFile,
    sinks: &Arc<checkpoint::Checkpointing>,
) -> Result<BTreeMap<String, u64>> {
    let snap = state.snapshot()?;
    let mut this_run: BTreeMap<String, u64> = BTreeMap::new();
    for wave in &prepared.fks.waves {
        let jobs: Vec<TableJob> = wave
            .iter()
            .map(|&i| TableJob {
                table: Arc::new(prepared.infos[i].spec.clone()),
                partitions: snap.tables[i]
                    .partitions
                    .iter()
                    .filter(|p| !p.done)
                    .map(|p| p.range.clone())
                    .collect(),
                progress: sinks.recorder.bars[i].1.clone(),
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
        let applied = match &sinks.recorder.confirm {
            Some(c) => c.drain().await,
            None => Ok(()),
        };
        let read = match read {
            Ok(r) => r,
            Err(e) => return Err(live::explain_refusal(snapshot, prepared, wave, e).await),
        };
        applied?;
        for r in read {
            *this_run.entry(r.table.qualified()).or_default() += r.rows;
        }
    }
    Ok(this_run)
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
        follow: None,
    })
}
