//! One sync run, start to end (see the module overview in [`super`]):
//! the lease and the source lock ([`run_once`]), then the run's steps
//! ([`super::steps`]) and its summary.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::accept::RunVectors;
use super::steps::Run;
use super::summary::{SyncSummary, TableSync};
use crate::cloudflare::Api;
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::plan::{Prepared, Target, VectorTarget};
use crate::progress::Progress;
use crate::source::{ReadOptions, Snapshot, Source, SplitOptions};
use crate::state::checkpoint::{now, snapshot_xmax, Checkpoint, IndexRef, Position};
use crate::state::store::{Lease, Store};

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
    let held = match hold(src, opts, progress).await? {
        Holding::Held(h) => h,
        Holding::Busy(who) => return Ok(Outcome::Busy(who)),
    };
    let result = run_locked(src, opts, progress, &held.store, &held.d1, held.api.clone()).await;
    let released = held.release().await;
    let summary = result?;
    released?;
    Ok(Outcome::Done(Box::new(summary)))
}

/// The runner's lease in the target and the source's advisory lock, held
/// (and the lease renewed) until [`Held::release`].
pub(super) struct Held {
    pub(super) store: Store,
    pub(super) d1: D1Access,
    pub(super) api: Option<Arc<Api>>,
    me: Lease,
    lock: crate::source::SourceConn,
    key: i64,
    renew: tokio::task::JoinHandle<()>,
}

pub(super) enum Holding {
    Held(Box<Held>),
    /// Who holds it instead.
    Busy(String),
}

/// Takes the lease and the lock (see [`run_once`]'s steps 1).
pub(super) async fn hold(src: &Source, opts: &SyncOptions, progress: &Progress) -> Result<Holding> {
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
        return Ok(Holding::Busy(format!(
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
        return Ok(Holding::Busy(format!(
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
    Ok(Holding::Held(Box::new(Held { store, d1, api, me, lock, key, renew })))
}

impl Held {
    /// Gives the lease and the lock back.
    pub(super) async fn release(mut self) -> Result<()> {
        self.renew.abort();
        let released = self.store.release(&self.me).await;
        let unlocked =
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.key).execute(&mut self.lock).await;
        released?;
        unlocked.map_err(Error::db("releasing the sync advisory lock"))?;
        Ok(())
    }
}

pub(super) async fn run_locked(
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
    accept_run(opts, store, &prepared, &mut checkpoint, api.clone()).await?;
    let run = Run {
        src,
        opts,
        progress,
        store,
        d1,
        snapshot_id: snapshot.info.id.clone(),
        from: checkpoint.position.clone(),
        to: Position::of(&snapshot.info)?,
        xmax: snapshot_xmax(&snapshot.info.txid_snapshot)?,
        check_stored: crate::state::held::CHECK_STORED,
        prepared,
    };
    let resumed = run.plan_ranges(&mut snapshot, &mut checkpoint).await?;
    checkpoint.written_by = "sync".into();
    checkpoint.written_at = now();
    store.write(&checkpoint).await?;
    let targets = run.open_targets(checkpoint.runs, api).await?;
    let ranges = checkpoint.in_progress.clone().map(|ip| ip.tables).unwrap_or_default();
    let shared = Arc::new(Mutex::new(checkpoint));
    let upserts = run.upsert_waves(&targets, &ranges, &shared).await?;
    let mut tables = run.table_syncs(&targets, upserts)?;
    let stopped = opts.stop.load(std::sync::atomic::Ordering::Relaxed);
    if !stopped {
        run.delete_all(&mut snapshot, &targets, &mut tables).await?;
    }
    snapshot.release().await?;
    if let Some(dir) = &targets.run_dir {
        let order: Vec<&crate::batch::TableSpec> =
            run.prepared.fks.waves.iter().flatten().map(|&i| &run.prepared.infos[i].spec).collect();
        super::run_files::write_run_manifest(dir, &order)?;
    }
    let mut checkpoint =
        shared.lock().map_err(|_| Error::Internal("sync checkpoint poisoned".into()))?.clone();
    if !stopped {
        checkpoint.position = run.to.clone();
        checkpoint.in_progress = None;
        checkpoint.runs += 1;
        checkpoint.written_at = now();
        store.write(&checkpoint).await?;
    }
    let lag = chrono::DateTime::parse_from_rfc3339(run.to.taken_at())
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    let sum = |f: &dyn Fn(&TableSync) -> u64| tables.iter().map(f).sum::<u64>();
    Ok(SyncSummary {
        format: "pgflare-sync-summary-v1",
        run: checkpoint.runs,
        target: opts.target.describe(),
        vectorize: targets.vector_target.describe(),
        state: store.describe(),
        started_at,
        from_snapshot_taken_at: run.from.taken_at().to_string(),
        to_snapshot_taken_at: run.to.taken_at().to_string(),
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

/// Refuses the checkpoint when this run differs from it in what changes
/// since it would not cover ([`super::accept`]), and records the run's
/// vectors in it.
pub(super) async fn accept_run(
    opts: &SyncOptions,
    store: &Store,
    prepared: &Prepared,
    checkpoint: &mut Checkpoint,
    api: Option<Arc<Api>>,
) -> Result<()> {
    let vectors_on = !matches!(opts.vectorize, VectorTarget::Off);
    let sends_vectors = vectors_on && !prepared.vectors.mappings.0.is_empty();
    let run_vectors = RunVectors {
        fingerprint: crate::state::fingerprint::vectorize_fingerprint(prepared, &opts.project, sends_vectors),
        index: match sends_vectors {
            true => IndexRef::asked(&opts.vectorize, api).await?,
            false => None,
        },
        unnamed: opts.vectors_unnamed,
    };
    let fp = crate::state::fingerprint::fingerprint(prepared, &opts.project);
    super::accept::accept(checkpoint, &fp, run_vectors, &store.describe())
}
