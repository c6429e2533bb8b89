//! The steps of one sync run once it holds the lease and has accepted the
//! checkpoint ([`super::run`] calls them in order): plan the key ranges (or
//! take a stopped run's), open the targets, upsert the changed rows wave by
//! wave with every range recorded once all targets have it, then delete
//! what was soft-deleted or is gone, children before parents.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::deletes::{Deleter, VectorDeletes};
use super::links::SyncLinks;
use super::sink::{ChangedVectors, CheckpointRecorder, Counts, Recording, VectorCounts};
use super::source_reads::{count_rows, int_bounds, read_keys};
use super::summary::{add_deleted_vectors, TableSync};
use super::sweep::{buckets_for, sweep, KeySource, SweepTable};
use super::SyncOptions;
use crate::batch::sink::{Rejected, SinkFactory, MAX_NAMED_REJECTS};
use crate::cloudflare::{Api, Vectorize};
use crate::digest::pass::key_views;
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::plan::target::OpenTarget;
use crate::plan::vectors::{OpenVectors, VectorPlan};
use crate::plan::{Prepared, Target, VectorTarget};
use crate::progress::Progress;
use crate::sink::d1::render::D1Mappings;
use crate::source::{partition, read_until, Partition, Snapshot, Source, TableJob};
use crate::state::changes::{all_of, changed_after, range_changes};
use crate::state::checkpoint::{Checkpoint, InProgress, Position, TableProgress};
use crate::state::ranges::Scheme;
use crate::state::store::Store;
use crate::typemap::Kind;

/// What every step of one run shares.
pub(super) struct Run<'a> {
    pub(super) src: &'a Source,
    pub(super) opts: &'a SyncOptions,
    pub(super) progress: &'a Progress,
    pub(super) store: &'a Store,
    pub(super) d1: &'a D1Access,
    pub(super) snapshot_id: String,
    pub(super) prepared: Prepared,
    /// The checkpoint's position, and this run's snapshot.
    pub(super) from: Position,
    pub(super) to: Position,
    pub(super) xmax: u64,
    /// Stored vectors a range may fetch to compare (see [`ChangedVectors`]).
    pub(super) check_stored: usize,
}

/// The opened targets of a run.
pub(super) struct RunTargets {
    /// `files`: this run's own folder, OUT/sync/NNNNNN (a stopped run's
    /// rerun writes into the same one).
    pub(super) run_dir: Option<PathBuf>,
    d1: OpenTarget,
    pub(super) vector_target: VectorTarget,
    vector_plan: VectorPlan,
    vectors: Option<OpenVectors>,
    index: Option<Arc<Vectorize>>,
    deleted_ids: Option<PathBuf>,
    counts: Counts,
    links: Option<SyncLinks>,
}

/// What the upserts did, per table.
pub(super) struct Upserts {
    rows: HashMap<String, u64>,
    refused: HashMap<String, Vec<Rejected>>,
    linked: HashMap<String, crate::sink::d1::linker::LinkReport>,
}

impl RunTargets {
    /// Whether a table has foreign keys on a cycle, set after the upserts.
    pub(crate) fn has_links(&self) -> bool {
        self.links.is_some()
    }
}

impl Run<'_> {
    /// The key ranges of this run: a stopped run's (each at its own
    /// horizon), or new ones in the checkpoint. Returns whether resumed.
    pub(super) async fn plan_ranges(
        &self,
        snapshot: &mut Snapshot,
        checkpoint: &mut Checkpoint,
    ) -> Result<bool> {
        let infos = &self.prepared.infos;
        let resumed = checkpoint.in_progress.as_ref().is_some_and(|ip| {
            ip.tables.len() == infos.len()
                && infos.iter().all(|i| ip.tables.contains_key(&i.spec.qualified()))
        });
        if resumed {
            return Ok(true);
        }
        let mut tables = BTreeMap::new();
        for info in infos {
            // Key ranges make a big change set parallel and resumable; one
            // that fits a range's size (--partition-mib) is cheaper as one
            // range: one request per target, one wait, one checkpoint.
            let changed = all_of(&[
                self.prepared.live.touched(&info.spec, changed_after(&self.from, self.xmax).as_deref()),
                self.prepared.live.live(&info.spec),
            ]);
            let n = count_rows(snapshot, &info.spec, changed.as_deref()).await?.max(0) as u64;
            let row_bytes = info.total_bytes.max(0) as u64 / info.row_estimate.unwrap_or(1).max(1);
            let parts = if n.saturating_mul(row_bytes) <= self.opts.split.target_bytes {
                vec![Partition::whole()]
            } else {
                partition::plan(snapshot.conn(), &info.spec, info.total_bytes, self.opts.split).await?
            };
            let horizon = vec![self.from.xmin(); parts.len()];
            tables.insert(info.spec.qualified(), TableProgress { partitions: parts, horizon });
        }
        checkpoint.in_progress = Some(InProgress { taken_at: snapshot.info.taken_at.clone(), tables });
        Ok(false)
    }

    /// Opens D1 (for `files`, this run's folder) and the vectors; sync
    /// deletes vectors by id, so a vector id must be the one-column key.
    pub(super) async fn open_targets(&self, runs_before: u64, api: Option<Arc<Api>>) -> Result<RunTargets> {
        let (opts, prepared) = (self.opts, &self.prepared);
        let d1_mappings = D1Mappings(
            prepared
                .infos
                .iter()
                .zip(&prepared.mappings)
                .map(|(i, m)| (i.spec.qualified(), m.clone()))
                .collect(),
        );
        let run_dir = match &opts.target {
            Target::Files { dir, .. } => Some(dir.join("sync").join(format!("{:06}", runs_before + 1))),
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
        let d1 = write_target.open(d1_mappings, api.clone())?;
        let mut vector_plan = prepared.vectors.clone();
        let vector_target = if vector_plan.mappings.0.is_empty() { VectorTarget::Off } else { vector_target };
        let vectors = crate::plan::vectors::open(
            &vector_target,
            &mut vector_plan,
            &opts.project.vectorize,
            api,
            self.progress,
            false,
        )
        .await?;
        for (table, m) in &vector_plan.mappings.0 {
            let info = prepared.infos.iter().find(|i| i.spec.qualified() == *table);
            if vectors.is_some() && info.is_some_and(|i| i.spec.primary_key != [m.id.clone()]) {
                return Err(Error::Config {
                    setting: format!("{table}: vector_id"),
                    message: format!(
                        "sync deletes vectors by their id, which must then be the one-column primary key; `{}` \
                         is not. Use the key as the vector id, or sync with --vectorize off",
                        m.id
                    ),
                });
            }
        }
        Ok(RunTargets {
            index: vectors.as_ref().and_then(|o| o.index.clone()),
            deleted_ids: run_dir.as_ref().map(|r| r.join("vectorize").join("deleted-ids.txt")),
            run_dir,
            d1,
            vector_target,
            vector_plan,
            vectors,
            counts: Arc::default(),
            links: super::links::prepare(&opts.work_dir, prepared)?,
        })
    }

    /// Every sink of the run (D1, the link spool, the changed vectors)
    /// behind the wrapper that records a range in the checkpoint once all
    /// of them have it.
    fn recording_sinks(&self, t: &RunTargets, checkpoint: &Arc<Mutex<Checkpoint>>) -> Arc<dyn SinkFactory> {
        let runtime = tokio::runtime::Handle::current();
        let inner = self.upsert_sinks(t);
        let recorder = CheckpointRecorder {
            checkpoint: checkpoint.clone(),
            store: self.store.clone(),
            horizon: self.to.xmin(),
            runtime,
            deferred: t.links.as_ref().map(|l| l.deferred.clone()),
        };
        Arc::new(Recording { inner, recorder: Arc::new(recorder) })
    }

    /// The sinks upserted rows go through: D1 (and the link spool), and
    /// the vectors that changed.
    pub(super) fn upsert_sinks(&self, t: &RunTargets) -> Arc<dyn SinkFactory> {
        let runtime = tokio::runtime::Handle::current();
        let d1_sinks: Arc<dyn SinkFactory> = match &t.links {
            Some(l) => Arc::new(crate::sink::tee::Tee(vec![t.d1.sinks(), Arc::new(l.spool.clone())])),
            None => t.d1.sinks(),
        };
        let inner: Arc<dyn SinkFactory> = match &t.vectors {
            Some(o) => Arc::new(crate::sink::tee::Tee(vec![
                d1_sinks,
                Arc::new(ChangedVectors {
                    inner: o.sinks.clone(),
                    mappings: t.vector_plan.mappings.clone(),
                    d1: self.d1.clone(),
                    index: t.index.clone(),
                    deleted_ids: t.deleted_ids.clone(),
                    timeout: self.opts.project.vectorize.wait_timeout,
                    runtime: runtime.clone(),
                    counts: t.counts.clone(),
                    check_stored: self.check_stored,
                }),
            ])),
            None => d1_sinks,
        };
        inner
    }

    /// Upserts the changed rows, parents first (a stop ends after the
    /// ranges being written), then sets the links of what was written.
    pub(super) async fn upsert_waves(
        &self,
        t: &RunTargets,
        ranges: &BTreeMap<String, TableProgress>,
        checkpoint: &Arc<Mutex<Checkpoint>>,
    ) -> Result<Upserts> {
        let sinks = self.recording_sinks(t, checkpoint);
        let (mut rows, mut refused) =
            (HashMap::<String, u64>::new(), HashMap::<String, Vec<Rejected>>::new());
        for wave in &self.prepared.fks.waves {
            let jobs: Vec<TableJob> = wave.iter().filter_map(|&i| self.changes_job(i, ranges)).collect();
            if jobs.is_empty() {
                continue;
            }
            let read =
                read_until(self.src, &self.snapshot_id, jobs, sinks.clone(), self.opts.read, &self.opts.stop);
            for r in read.await? {
                *rows.entry(r.table.qualified()).or_default() += r.rows;
                let named = refused.entry(r.table.qualified()).or_default();
                let room = MAX_NAMED_REJECTS.saturating_sub(named.len());
                named.extend(r.report.vectors.rejected.into_iter().take(room));
            }
            if self.opts.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
        // Links after every upsert (a stopped run links what it finished).
        let linked = match &t.links {
            Some(l) => {
                let target = t.d1.link_target();
                super::links::link_and_record(
                    l,
                    &target,
                    &self.prepared,
                    checkpoint,
                    self.store,
                    self.to.xmin(),
                )
                .await?
            }
            None => HashMap::new(),
        };
        Ok(Upserts { rows, refused, linked })
    }

    /// Table `i`'s changed rows since each range's horizon (and the rows
    /// whose parent was restored from a soft delete: sent again although
    /// they did not change themselves).
    fn changes_job(&self, i: usize, ranges: &BTreeMap<String, TableProgress>) -> Option<TableJob> {
        let info = &self.prepared.infos[i];
        let tp = ranges.get(&info.spec.qualified())?;
        let live = self.prepared.live.live(&info.spec);
        let partitions: Vec<Partition> = tp
            .partitions
            .iter()
            .zip(&tp.horizon)
            .map(|(p, h)| Partition {
                filter: all_of(&[
                    self.prepared
                        .live
                        .touched(&info.spec, range_changes(*h, &self.from, self.xmax).as_deref()),
                    live.clone(),
                ]),
                ..p.clone()
            })
            .collect();
        (!partitions.is_empty()).then(|| TableJob {
            table: Arc::new(info.spec.clone()),
            partitions,
            progress: self.progress.rows(&format!("changes {}", info.spec.name), None),
        })
    }

    /// Each table's line of the summary, from the upserts.
    pub(super) fn table_syncs(&self, t: &RunTargets, mut upserts: Upserts) -> Result<Vec<TableSync>> {
        let vcounts = t.counts.lock().map_err(|_| Error::Internal("vector counts poisoned".into()))?.clone();
        Ok(self
            .prepared
            .infos
            .iter()
            .zip(&self.prepared.mappings)
            .map(|(i, m)| {
                let name = i.spec.qualified();
                TableSync {
                    d1_table: m.table.clone(),
                    rows_upserted: upserts.rows.get(&name).copied().unwrap_or(0),
                    vectors: vcounts.get(&name).copied().or_else(|| {
                        t.vector_plan
                            .mappings
                            .0
                            .contains_key(&name)
                            .then(VectorCounts::default)
                            .filter(|_| t.index.is_some())
                    }),
                    links: upserts.linked.get(&name).cloned(),
                    skipped_vectors: upserts.refused.remove(&name).unwrap_or_default(),
                    table: name,
                    ..TableSync::default()
                }
            })
            .collect())
    }

    /// Deletes, children first: per table the rows below a parent
    /// soft-deleted since the checkpoint, then its own soft deletes, then
    /// (not for files: no D1 to compare with) the rows gone from the source.
    pub(super) async fn delete_all(
        &self,
        snapshot: &mut Snapshot,
        t: &RunTargets,
        tables: &mut [TableSync],
    ) -> Result<()> {
        for wave in self.prepared.fks.waves.iter().rev() {
            for &i in wave {
                self.delete_table(snapshot, t, i, &mut tables[i]).await?;
            }
        }
        Ok(())
    }

    /// The key columns of table `i` (source and D1 view) and what deletes
    /// its rows and their vectors.
    pub(super) fn deleter(
        &self,
        t: &RunTargets,
        i: usize,
    ) -> Result<(crate::batch::TableSpec, crate::config::mapping::D1Table, Deleter)> {
        let prepared = &self.prepared;
        let info = &prepared.infos[i];
        let d1t = &prepared.d1[i].1;
        let (key_src, key_d1) = key_views(&info.spec, d1t)?;
        let deleter = Deleter {
            d1: self.d1.clone(),
            sql_out: t.run_dir.as_ref().map(|r| r.join("deletes.sql")),
            d1_table: d1t.name.clone(),
            key: key_d1.primary_key.clone(),
            unlink: prepared.fks.referrers(i),
            vectors: match (&t.vectors, t.vector_plan.mappings.0.contains_key(&info.spec.qualified())) {
                (Some(_), true) => Some(VectorDeletes {
                    index: t.index.clone(),
                    ids_out: t.deleted_ids.clone(),
                    id_column: 0,
                    timeout: self.opts.project.vectorize.wait_timeout,
                    check_stored: self.check_stored,
                }),
                _ => None,
            },
        };
        Ok((key_src, key_d1, deleter))
    }

    async fn delete_table(
        &self,
        snapshot: &mut Snapshot,
        t: &RunTargets,
        i: usize,
        table: &mut TableSync,
    ) -> Result<()> {
        let (prepared, opts) = (&self.prepared, self.opts);
        let info = &prepared.infos[i];
        let (key_src, key_d1, deleter) = self.deleter(t, i)?;
        // Rows below a parent soft-deleted since the checkpoint go first
        // (their own rows did not change), then the table's own soft
        // deletes: within a self-referencing table, children before their
        // parents, so D1's foreign keys never refuse.
        let changed = changed_after(&self.from, self.xmax);
        let touched = prepared.live.touched(&info.spec, changed.as_deref());
        let steps = [
            (prepared.live.hidden_by_parent(&info.spec), touched),
            (prepared.live.soft_deleted(&info.spec), changed),
        ];
        for (step, (which, since)) in steps.into_iter().enumerate() {
            let Some(which) = which else { continue };
            let filter = all_of(&[since, Some(which)]);
            let keys =
                read_keys(self.src, &self.snapshot_id, &key_src, filter, opts.read, self.progress).await?;
            for batch in &keys {
                let d = deleter.delete(batch).await?;
                match step {
                    0 => table.rows_hidden_by_deleted_parent += d.rows,
                    _ => table.rows_soft_deleted += d.rows,
                }
                add_deleted_vectors(table, d);
            }
        }
        if !opts.hard_deletes || t.run_dir.is_some() {
            return Ok(());
        }
        let bounds = match key_src.columns.first().map(|c| (c.ty.kind, c.name.clone())) {
            Some((Kind::Int2 | Kind::Int4 | Kind::Int8, c)) => int_bounds(snapshot, &info.spec, &c).await?,
            _ => None,
        };
        let sweep_table = SweepTable {
            scheme: Scheme::choose(&key_src, bounds),
            partitions: vec![Partition { filter: prepared.live.live(&info.spec), ..Partition::whole() }],
            source: key_src,
            d1: key_d1,
            deleter,
        };
        let keys = match &opts.target {
            Target::Sqlite { path } => KeySource::File(path.clone()),
            _ => KeySource::Api(self.d1.clone(), opts.work_dir.clone()),
        };
        let n = buckets_for(info.row_estimate);
        let r = sweep(self.src, &self.snapshot_id, &sweep_table, &keys, n, opts.read, self.progress).await?;
        table.rows_hard_deleted += r.deleted.rows;
        add_deleted_vectors(table, r.deleted);
        table.sweep = Some(r);
        Ok(())
    }
}
