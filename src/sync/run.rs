//! One sync run, start to end (see the module overview in [`super`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::accept::RunVectors;
use super::deletes::{Deleter, VectorDeletes};
use super::sink::{ChangedVectors, Counts, Recording, VectorCounts};
use super::source_reads::{count_rows, int_bounds, read_keys};
use super::summary::{add_deleted_vectors, SyncSummary, TableSync};
use super::sweep::{buckets_for, sweep, KeySource, SweepTable};
use crate::batch::sink::SinkFactory;
use crate::batch::sink::{Rejected, MAX_NAMED_REJECTS};
use crate::cloudflare::{Api, Vectorize};
use crate::config::project::Project;
use crate::digest::pass::key_views;
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::plan::{Target, VectorTarget};
use crate::progress::Progress;
use crate::sink::d1::render::D1Mappings;
use crate::source::{
    partition, read_until, Partition, ReadOptions, Snapshot, Source, SplitOptions, TableJob,
};
use crate::state::changes::{all_of, changed_after, range_changes};
use crate::state::checkpoint::{now, snapshot_xmax, InProgress, IndexRef, Position, TableProgress};
use crate::state::ranges::Scheme;
use crate::state::store::{Lease, Store};
use crate::typemap::Kind;

pub struct SyncOptions {
    pub project: Project,
    /// `sqlite` or `api`.
    pub target: Target,
    /// `Off` or `Api`.
    pub vectorize: VectorTarget,
    /// Vectorize is `Off` only because no index was named (`--vectorize
    /// auto`): refused while the checkpoint says vectors follow the source.
    pub vectors_unnamed: bool,
    pub read: ReadOptions,
    pub split: SplitOptions,
    /// Scratch space (D1 keys copied from the API for the sweep), and the
    /// `files` target's state file.
    pub work_dir: PathBuf,
    pub hard_deletes: bool,
    pub lease_ttl: Duration,
    /// Set by SIGTERM/SIGINT: no new range starts; the run records what
    /// finished and ends.
    pub stop: Arc<AtomicBool>,
}

/// How a run ended.
pub enum Outcome {
    Done(Box<SyncSummary>),
    /// Another runner holds the lease or the source lock: who, and since when.
    Busy(String),
}

pub async fn run_once(src: &Source, opts: &SyncOptions, progress: &Progress) -> Result<Outcome> {
    // The source first: a run that cannot reach it (a wrong password, a
    // host that does not answer) must leave the target untouched, no
    // SQLite file created and no lease row written.
    let mut lock = src.connect().await?;
    crate::state::store::refuse_missing_d1_file(&opts.target)?;
    // The source lock guards runners whose targets differ in name only
    // (e.g. one D1 reached by file and by API). Its key is the source's
    // first answer to a statement: a source that logs in and then says
    // nothing stops the run here, before D1 is touched.
    let lock_key = format!("pgflare sync {}", opts.target.describe());
    let key: i64 = sqlx::query_scalar("SELECT hashtextextended($1, 0)")
        .bind(&lock_key)
        .fetch_one(&mut lock)
        .await
        .map_err(Error::db("hashing the sync lock key"))?;
    let (api, d1) = crate::state::store::open_d1(&opts.target, &opts.vectorize, &opts.work_dir, progress)?;
    let store = Store::D1(d1.clone());
    store.prepare().await?;
    let me = Lease::mine(opts.lease_ttl);
    if let Some(holder) = store.acquire(&me).await? {
        return Ok(Outcome::Busy(format!(
            "the sync lease in {} is held by {}",
            store.describe(),
            holder.describe()
        )));
    }
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut lock)
        .await
        .map_err(Error::db("taking the sync advisory lock"))?;
    if !got {
        store.release(&me).await?;
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::text::bigint = (($1 >> 32) & 4294967295) AND objid::text::bigint = ($1 & 4294967295) LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&mut lock)
        .await
        .ok()
        .flatten();
        return Ok(Outcome::Busy(format!(
            "the source's advisory lock for this target is held by backend pid {} (another pgflare sync)",
            pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        )));
    }
    // A renewal keeps the lease while a long run goes on.
    let renew = {
        let (store, mut me) = (store.clone(), me.clone());
        let ttl = opts.lease_ttl;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                me.expires_at = crate::state::store::unix_now() + ttl.as_secs() as i64;
                let _ = store.acquire(&me).await;
            }
        })
    };
    let result = run_locked(src, opts, progress, &store, &d1, api).await;
    renew.abort();
    let released = store.release(&me).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut lock).await;
    let summary = result?;
    released?;
    unlocked.map_err(Error::db("releasing the sync advisory lock"))?;
    Ok(Outcome::Done(Box::new(summary)))
}

async fn run_locked(
    src: &Source,
    opts: &SyncOptions,
    progress: &Progress,
    store: &Store,
    d1: &D1Access,
    api: Option<Arc<Api>>,
) -> Result<SyncSummary> {
    let started = Instant::now();
    let started_at = now();
    let mut checkpoint = store.read().await?.ok_or_else(|| Error::Config {
        setting: store.describe(),
        message: "holds no sync checkpoint: run `pgflare load` into this target first; a finished load \
                  records where sync starts"
            .into(),
    })?;
    let mut snapshot = Snapshot::export(src).await?;
    let vectors_on = !matches!(opts.vectorize, VectorTarget::Off);
    let prepared = crate::plan::prepare(&mut snapshot, &opts.project, &[], vectors_on).await?;
    let sends_vectors = vectors_on && !prepared.vectors.mappings.0.is_empty();
    let run_vectors = RunVectors {
        fingerprint: crate::state::fingerprint::vectorize_fingerprint(
            &prepared,
            &opts.project,
            sends_vectors,
        ),
        index: match sends_vectors {
            true => IndexRef::asked(&opts.vectorize, api.clone()).await?,
            false => None,
        },
        unnamed: opts.vectors_unnamed,
    };
    let fp = crate::state::fingerprint::fingerprint(&prepared, &opts.project);
    super::accept::accept(&mut checkpoint, &fp, run_vectors, &store.describe())?;
    let infos = &prepared.infos;
    let from = checkpoint.position.clone();
    let checkpoint_runs = checkpoint.runs;
    let xmax = snapshot_xmax(&snapshot.info.txid_snapshot)?;
    let to = Position::of(&snapshot.info)?;

    // Ranges: those of a stopped run (each at its own horizon), or new ones.
    let resumed = checkpoint.in_progress.as_ref().is_some_and(|ip| {
        ip.tables.len() == infos.len() && infos.iter().all(|i| ip.tables.contains_key(&i.spec.qualified()))
    });
    if !resumed {
        let mut tables = BTreeMap::new();
        for info in infos {
            // Key ranges make a big change set parallel and resumable; one
            // that fits a range's size (--partition-mib) is cheaper as one
            // range: one request per target, one wait, one checkpoint.
            let changed = all_of(&[
                prepared.live.touched(&info.spec, changed_after(&from, xmax).as_deref()),
                prepared.live.live(&info.spec),
            ]);
            let n = count_rows(&mut snapshot, &info.spec, changed.as_deref()).await?.max(0) as u64;
            let row_bytes = info.total_bytes.max(0) as u64 / info.row_estimate.unwrap_or(1).max(1);
            let parts = if n.saturating_mul(row_bytes) <= opts.split.target_bytes {
                vec![Partition::whole()]
            } else {
                partition::plan(snapshot.conn(), &info.spec, info.total_bytes, opts.split).await?
            };
            let horizon = vec![from.xmin(); parts.len()];
            tables.insert(info.spec.qualified(), TableProgress { partitions: parts, horizon });
        }
        checkpoint.in_progress = Some(InProgress { taken_at: snapshot.info.taken_at.clone(), tables });
    }
    checkpoint.written_by = "sync".into();
    checkpoint.written_at = now();
    store.write(&checkpoint).await?;
    let progress_of = checkpoint
        .in_progress
        .clone()
        .unwrap_or(InProgress { taken_at: String::new(), tables: BTreeMap::new() });

    // Targets.
    let d1_mappings = D1Mappings(
        infos.iter().zip(&prepared.mappings).map(|(i, m)| (i.spec.qualified(), m.clone())).collect(),
    );
    // Files: each run writes its own folder, OUT/sync/NNNNNN (a stopped
    // run's rerun writes into the same one).
    let run_dir = match &opts.target {
        Target::Files { dir, .. } => Some(dir.join("sync").join(format!("{:06}", checkpoint_runs + 1))),
        _ => None,
    };
    let (write_target, vector_target) = match (&opts.target, &run_dir) {
        (Target::Files { file_bytes, .. }, Some(run)) => (
            Target::Files { dir: run.clone(), file_bytes: *file_bytes },
            match opts.vectorize {
                VectorTarget::Off => VectorTarget::Off,
                _ => VectorTarget::Files { dir: run.join("vectorize") },
            },
        ),
        _ => (opts.target.clone(), opts.vectorize.clone()),
    };
    let target = write_target.open(d1_mappings, api.clone())?;
    let mut vector_plan = prepared.vectors.clone();
    let vector_target = if vector_plan.mappings.0.is_empty() { VectorTarget::Off } else { vector_target };
    let deleted_ids = run_dir.as_ref().map(|r| r.join("vectorize").join("deleted-ids.txt"));
    let opened =
        crate::plan::vectors::open(&vector_target, &mut vector_plan, &opts.project.vectorize, api, progress)
            .await?;
    let index: Option<Arc<Vectorize>> = opened.as_ref().and_then(|o| o.index.clone());
    for (table, m) in &vector_plan.mappings.0 {
        let info = infos.iter().find(|i| i.spec.qualified() == *table);
        if opened.is_some() && info.is_some_and(|i| i.spec.primary_key != [m.id.clone()]) {
            return Err(Error::Config {
                setting: format!("{table}: vector_id"),
                message: format!(
                    "sync deletes vectors by their id, which must then be the one-column primary key; `{}` is not. \
                     Use the key as the vector id, or sync with --vectorize off",
                    m.id
                ),
            });
        }
    }
    let counts: Counts = Arc::default();
    let runtime = tokio::runtime::Handle::current();
    let timeout = opts.project.vectorize.wait_timeout;
    let links = super::links::prepare(&opts.work_dir, &prepared)?;
    let d1_sinks: Arc<dyn SinkFactory> = match &links {
        Some(l) => Arc::new(crate::sink::tee::Tee(vec![target.sinks(), Arc::new(l.spool.clone())])),
        None => target.sinks(),
    };
    let inner: Arc<dyn SinkFactory> = match &opened {
        Some(o) => Arc::new(crate::sink::tee::Tee(vec![
            d1_sinks,
            Arc::new(ChangedVectors {
                inner: o.sinks.clone(),
                mappings: vector_plan.mappings.clone(),
                d1: d1.clone(),
                index: index.clone(),
                deleted_ids: deleted_ids.clone(),
                timeout,
                runtime: runtime.clone(),
                counts: counts.clone(),
            }),
        ])),
        None => d1_sinks,
    };
    let shared = Arc::new(Mutex::new(checkpoint));
    let sinks: Arc<dyn SinkFactory> = Arc::new(Recording {
        inner,
        checkpoint: shared.clone(),
        store: store.clone(),
        horizon: to.xmin(),
        runtime,
        deferred: links.as_ref().map(|l| l.deferred.clone()),
    });

    // Upserts, parents first.
    let waves = prepared.fks.waves.clone();
    let mut upserted: HashMap<String, u64> = HashMap::new();
    let mut refused: HashMap<String, Vec<Rejected>> = HashMap::new();
    for wave in &waves {
        let mut jobs = Vec::new();
        for &i in wave {
            let info = &infos[i];
            let name = info.spec.qualified();
            let Some(tp) = progress_of.tables.get(&name) else { continue };
            // A row whose parent was restored from a soft delete is sent
            // again although it did not change itself.
            let live = prepared.live.live(&info.spec);
            let partitions: Vec<Partition> = tp
                .partitions
                .iter()
                .zip(&tp.horizon)
                .map(|(p, h)| Partition {
                    filter: all_of(&[
                        prepared.live.touched(&info.spec, range_changes(*h, &from, xmax).as_deref()),
                        live.clone(),
                    ]),
                    ..p.clone()
                })
                .collect();
            if !partitions.is_empty() {
                jobs.push(TableJob {
                    table: Arc::new(info.spec.clone()),
                    partitions,
                    progress: progress.rows(&format!("changes {}", info.spec.name), None),
                });
            }
        }
        if jobs.is_empty() {
            continue;
        }
        for r in read_until(src, &snapshot.info.id, jobs, sinks.clone(), opts.read, &opts.stop).await? {
            *upserted.entry(r.table.qualified()).or_default() += r.rows;
            let named = refused.entry(r.table.qualified()).or_default();
            let room = MAX_NAMED_REJECTS.saturating_sub(named.len());
            named.extend(r.report.vectors.rejected.into_iter().take(room));
        }
        if opts.stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
    }
    // Links after every upsert (a stopped run links what it finished).
    let linked = match &links {
        Some(l) => {
            super::links::link_and_record(l, &target.link_target(), &prepared, &shared, store, to.xmin())
                .await?
        }
        None => HashMap::new(),
    };
    let mut checkpoint =
        shared.lock().map_err(|_| Error::Internal("sync checkpoint poisoned".into()))?.clone();
    let vcounts = counts.lock().map_err(|_| Error::Internal("vector counts poisoned".into()))?.clone();
    let mut tables: Vec<TableSync> = infos
        .iter()
        .zip(&prepared.mappings)
        .map(|(i, m)| TableSync {
            table: i.spec.qualified(),
            d1_table: m.table.clone(),
            rows_upserted: upserted.get(&i.spec.qualified()).copied().unwrap_or(0),
            vectors: vcounts.get(&i.spec.qualified()).copied().or_else(|| {
                vector_plan
                    .mappings
                    .0
                    .contains_key(&i.spec.qualified())
                    .then(VectorCounts::default)
                    .filter(|_| index.is_some())
            }),
            links: linked.get(&i.spec.qualified()).cloned(),
            skipped_vectors: refused.remove(&i.spec.qualified()).unwrap_or_default(),
            ..TableSync::default()
        })
        .collect();
    let stopped = opts.stop.load(std::sync::atomic::Ordering::Relaxed);

    // Deletes, children first.
    if !stopped {
        for wave in waves.iter().rev() {
            for &i in wave {
                let info = &infos[i];
                let d1t = &prepared.d1[i].1;
                let (key_src, key_d1) = key_views(&info.spec, d1t)?;
                let deleter = Deleter {
                    d1: d1.clone(),
                    sql_out: run_dir.as_ref().map(|r| r.join("deletes.sql")),
                    d1_table: d1t.name.clone(),
                    key: key_d1.primary_key.clone(),
                    unlink: prepared.fks.referrers(i),
                    vectors: match (&opened, vector_plan.mappings.0.contains_key(&info.spec.qualified())) {
                        (Some(_), true) => Some(VectorDeletes {
                            index: index.clone(),
                            ids_out: deleted_ids.clone(),
                            id_column: 0,
                            timeout,
                        }),
                        _ => None,
                    },
                };
                // Rows below a parent soft-deleted since the checkpoint go
                // first (their own rows did not change), then the table's own
                // soft deletes: within a self-referencing table, children
                // before their parents, so D1's foreign keys never refuse.
                let changed = changed_after(&from, xmax);
                let touched = prepared.live.touched(&info.spec, changed.as_deref());
                let steps = [
                    (prepared.live.hidden_by_parent(&info.spec), touched),
                    (prepared.live.soft_deleted(&info.spec), changed),
                ];
                for (step, (which, since)) in steps.into_iter().enumerate() {
                    let Some(which) = which else { continue };
                    let filter = all_of(&[since, Some(which)]);
                    let keys =
                        read_keys(src, &snapshot.info.id, &key_src, filter, opts.read, progress).await?;
                    for batch in &keys {
                        let d = deleter.delete(batch).await?;
                        match step {
                            0 => tables[i].rows_hidden_by_deleted_parent += d.rows,
                            _ => tables[i].rows_soft_deleted += d.rows,
                        }
                        add_deleted_vectors(&mut tables[i], d);
                    }
                }
                // Files have no D1 to compare with: soft deletes only.
                if opts.hard_deletes && run_dir.is_none() {
                    let bounds = match key_src.columns.first().map(|c| (c.ty.kind, c.name.clone())) {
                        Some((Kind::Int2 | Kind::Int4 | Kind::Int8, c)) => {
                            int_bounds(&mut snapshot, &info.spec, &c).await?
                        }
                        _ => None,
                    };
                    let t = SweepTable {
                        scheme: Scheme::choose(&key_src, bounds),
                        partitions: vec![Partition {
                            filter: prepared.live.live(&info.spec),
                            ..Partition::whole()
                        }],
                        source: key_src,
                        d1: key_d1,
                        deleter,
                    };
                    let keys = match &opts.target {
                        Target::Sqlite { path } => KeySource::File(path.clone()),
                        _ => KeySource::Api(d1.clone(), opts.work_dir.clone()),
                    };
                    let n = buckets_for(info.row_estimate);
                    let r = sweep(src, &snapshot.info.id, &t, &keys, n, opts.read, progress).await?;
                    tables[i].rows_hard_deleted += r.deleted.rows;
                    add_deleted_vectors(&mut tables[i], r.deleted);
                    tables[i].sweep = Some(r);
                }
            }
        }
    }
    snapshot.release().await?;
    if let Some(run) = &run_dir {
        let order: Vec<&crate::batch::TableSpec> = waves.iter().flatten().map(|&i| &infos[i].spec).collect();
        super::run_files::write_run_manifest(run, &order)?;
    }

    if !stopped {
        checkpoint.position = to.clone();
        checkpoint.in_progress = None;
        checkpoint.runs += 1;
        checkpoint.written_at = now();
        store.write(&checkpoint).await?;
    }
    let lag = chrono::DateTime::parse_from_rfc3339(to.taken_at())
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    let sum = |f: &dyn Fn(&TableSync) -> u64| tables.iter().map(f).sum::<u64>();
    Ok(SyncSummary {
        format: "pgflare-sync-summary-v1",
        run: checkpoint.runs,
        target: opts.target.describe(),
        vectorize: vector_target.describe(),
        state: store.describe(),
        started_at,
        from_snapshot_taken_at: from.taken_at().to_string(),
        to_snapshot_taken_at: to.taken_at().to_string(),
        resumed,
        complete: !stopped,
        rows_upserted: sum(&|t| t.rows_upserted),
        rows_deleted: sum(&|t| t.rows_soft_deleted + t.rows_hidden_by_deleted_parent + t.rows_hard_deleted),
        vectors_upserted: sum(&|t| t.vectors.map(|v| v.sent).unwrap_or(0)),
        vectors_unchanged: sum(&|t| t.vectors.map(|v| v.unchanged).unwrap_or(0)),
        vectors_deleted: sum(&|t| t.vectors.map(|v| v.deleted).unwrap_or(0)),
        lag_seconds: if stopped { 0.0 } else { lag.max(0.0) },
        seconds: started.elapsed().as_secs_f64(),
        tables,
    })
}
