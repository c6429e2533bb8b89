//! `pgflare verify`: the configured tables read at one exported snapshot
//! and compared with D1 (and Vectorize, see [`super::run_vectors`]). Pass 1
//! sums row digests into key buckets on both sides; pass 2 re-reads, at the
//! same snapshot, only the tables with differing buckets and keeps only
//! those buckets' rows, so memory follows the differences, not the table.
//! [`run`] reads as those steps; [`Verification`] holds what they share.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::compare::{classify, first_rows, mark_absent, sampled};
use super::pending::Pending;
use super::report::{Status, TableReport, TargetReport, Verdict, VerifyReport, FORMAT, MAX_LISTED};
use super::value_check::{recorded_ids, ValuePlan};
use super::vectors::{expect_sinks, Expected, Gather};
use crate::batch::collect::take;
use crate::batch::sink::SinkFactory;
use crate::cloudflare::{Api, Vectorize};
use crate::config::project::Project;
use crate::digest::buckets::{differing_parts, refinement, rows_in, Buckets, Refinement};
use crate::digest::pass::{d1_pass_file, source_sinks, D1Shape, Pass, Rows, Side};
use crate::error::{Error, Result};
use crate::plan::{Prepared, Target};
use crate::progress::Progress;
use crate::source::{partition, read_all, Partition, ReadOptions, Snapshot, Source, SplitOptions, TableJob};

pub struct VerifyOptions {
    pub project: Project,
    pub only_tables: Vec<String>,
    /// Where D1 is: a local SQLite file (the `sqlite` load target,
    /// wrangler's local file, the emulator's file) or a database over the
    /// API, exported into `work_dir` first (`files` is refused).
    pub d1: Target,
    /// The client for D1 over the API and for Vectorize: they share the
    /// user's request budget.
    pub api: Option<Arc<Api>>,
    pub work_dir: PathBuf,
    pub read: ReadOptions,
    pub split: SplitOptions,
    /// Key buckets per table.
    pub buckets: usize,
    /// Fraction of buckets compared (1.0 = all).
    pub sample: f64,
    /// The Vectorize index to compare the vector tables with.
    pub vectorize: Option<Arc<Vectorize>>,
    /// Vector elements this close count as equal (0 = float32 bits).
    pub float_tolerance: f64,
    /// Which vectors' values are fetched: all, or those sync wrote since
    /// the last load and a sample of the rest ([`super::value_check`]).
    pub vector_values: super::value_check::ValueMode,
    /// Similarity-query parity: this many queries (0 = none) of top `k`,
    /// passing at a mean recall of at least `min_recall`.
    pub queries: usize,
    pub k: usize,
    pub min_recall: f64,
    /// Vectors the load's rules leave out do not fail the verdict.
    pub accept_skipped: bool,
    /// The service's query embeddings for the `[[queries]]` shapes
    /// (NDJSON); without it, `queries` vectors per shape are sampled.
    pub query_file: Option<PathBuf>,
    /// The last verify's report.json: the rows changed since its snapshot
    /// have their vectors' values compared ([`super::since`]).
    pub last_report: Option<PathBuf>,
}

pub async fn run(src: &Source, opts: &VerifyOptions, progress: &Progress) -> Result<VerifyReport> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut snapshot = Snapshot::export(src).await?;
    let v = Verification::prepare(src, opts, progress, &mut snapshot).await?;
    v.check_query_shapes()?;
    let d1 = v.local_d1().await?;
    let mut since = v.changed_since_last_verify(&snapshot.info.txid_snapshot).await?;
    let sums = v.bucket_sums(&d1.path, std::mem::take(&mut since.ids)).await?;
    let wanted = v.differing_buckets(&sums);
    let wanted = v.refine(&d1.path, &sums, wanted).await?;
    let src_rows = v.drill_down(&wanted).await?;
    let pending = match super::pending::checkpoint_in(&d1.path)? {
        Some(cp) => {
            let info = &snapshot.info;
            super::pending::pending(src, &info.id, &info.txid_snapshot, &v.prepared, &cp, opts.read).await?
        }
        None => HashMap::new(),
    };
    let vector_reports = v.vector_reports(&sums.expected, &pending, &since).await?;
    let parity = v.parity(&d1.path).await?;
    let query_shapes = v.query_shapes(&d1.path).await?;
    let snap = snapshot.info.clone();
    snapshot.release().await?;
    let tables = v.table_reports(&d1, &sums, &wanted, src_rows, &pending, vector_reports)?;
    let mut report = VerifyReport {
        format: FORMAT.into(),
        created_by: concat!("pgflare ", env!("CARGO_PKG_VERSION")).into(),
        started_at,
        seconds: started.elapsed().as_secs_f64(),
        source: src.display().to_string(),
        snapshot: format!("{} at {}", snap.txid_snapshot, snap.taken_at),
        verdict: Verdict { status: Status::Consistent, summary: String::new() },
        tables,
        queries: parity,
        query_shapes,
    };
    report.decide(opts.accept_skipped);
    Ok(report)
}

/// What every step of one verification shares.
pub(super) struct Verification<'a> {
    pub(super) src: &'a Source,
    pub(super) opts: &'a VerifyOptions,
    pub(super) progress: &'a Progress,
    pub(super) snapshot_id: String,
    pub(super) prepared: Prepared,
    pub(super) shapes: Arc<HashMap<String, D1Shape>>,
    /// Key ranges per table (live rows only), in `prepared.infos` order.
    pub(super) parts: Vec<Vec<Partition>>,
    /// Key buckets per table, and those compared.
    pub(super) n: usize,
    pub(super) sample: BTreeSet<usize>,
    pub(super) vector_sample: Arc<(usize, BTreeSet<usize>)>,
}

/// D1 as a local file: the `sqlite` file itself, or a remote database's
/// export, with what the export said.
pub(super) struct LocalD1 {
    pub(super) path: PathBuf,
    notes: Vec<String>,
}

/// The buckets of one table whose rows are kept and compared: buckets of
/// `n`, pass 1's own or the finer parts of a [`Refinement`].
pub(super) struct Drill {
    n: usize,
    buckets: BTreeSet<usize>,
    /// Pass 1's differing buckets (the report's count).
    differing: usize,
    /// What the refinement did, for the report.
    note: Option<String>,
}

/// Pass 1's outcome: bucket sums per table on both sides, the tables D1
/// does not have, and the vectors the source expects in Vectorize.
pub(super) struct Sums {
    source: HashMap<String, Side>,
    d1: HashMap<String, Side>,
    absent: BTreeSet<String>,
    pub(super) expected: Arc<Mutex<HashMap<String, Expected>>>,
}

impl<'a> Verification<'a> {
    async fn prepare(
        src: &'a Source,
        opts: &'a VerifyOptions,
        progress: &'a Progress,
        snapshot: &mut Snapshot,
    ) -> Result<Verification<'a>> {
        let prepared =
            crate::plan::prepare(snapshot, &opts.project, &opts.only_tables, opts.vectorize.is_some())
                .await?;
        let shapes: HashMap<String, D1Shape> = prepared
            .d1
            .iter()
            .map(|(info, table)| (info.spec.qualified(), D1Shape::new(&info.spec, table)))
            .collect();
        let mut parts = Vec::new();
        for info in &prepared.infos {
            let mut p = partition::plan(snapshot.conn(), &info.spec, info.total_bytes, opts.split).await?;
            // Soft-deleted rows, and rows below a soft-deleted parent, are not
            // expected in the targets.
            let live = prepared.live.live(&info.spec);
            p.iter_mut().for_each(|p| p.filter = live.clone());
            parts.push(p);
        }
        let n = opts.buckets.max(1);
        let sample = sampled(n, opts.sample.clamp(0.0, 1.0));
        Ok(Verification {
            src,
            opts,
            progress,
            snapshot_id: snapshot.info.id.clone(),
            prepared,
            shapes: Arc::new(shapes),
            parts,
            n,
            vector_sample: Arc::new((n, sample.clone())),
            sample,
        })
    }

    /// Reads the source tables (`only` those, when given) into `sinks`.
    pub(super) async fn read(
        &self,
        only: Option<&str>,
        label: &str,
        sinks: Arc<dyn SinkFactory>,
    ) -> Result<()> {
        let jobs: Vec<TableJob> = self
            .prepared
            .infos
            .iter()
            .zip(&self.parts)
            .filter(|(i, _)| only.is_none_or(|o| o == i.spec.qualified()))
            .map(|(i, p)| TableJob {
                table: Arc::new(i.spec.clone()),
                partitions: p.clone(),
                progress: self.progress.rows(&format!("{label} {}", i.spec.name), i.row_estimate),
            })
            .collect();
        read_all(self.src, &self.snapshot_id, jobs, sinks, self.opts.read).await.map(|_| ())
    }

    /// A remote D1 is exported once (or read through queries when the
    /// export fails) and read locally like any D1 file.
    async fn local_d1(&self) -> Result<LocalD1> {
        match &self.opts.d1 {
            Target::Sqlite { path } => Ok(LocalD1 { path: path.clone(), notes: Vec::new() }),
            Target::Api { database_id, .. } => {
                let api = self
                    .opts
                    .api
                    .clone()
                    .ok_or_else(|| Error::Internal("D1 over the API without a client".into()))?;
                let d1 = crate::cloudflare::D1::new(api, database_id);
                let mut names: Vec<String> = self.shapes.values().map(|s| s.table.name.clone()).collect();
                // pgflare's sync state too: verify reads the checkpoint from it.
                names.push(crate::state::store::STATE_TABLE.into());
                let m = crate::plan::d1_export::materialize(&d1, &self.opts.work_dir, &names).await?;
                for n in &m.notes {
                    self.progress.println(&format!("note: {n}"));
                }
                Ok(LocalD1 { path: m.path, notes: m.notes })
            }
            Target::Files { .. } => Err(Error::Config {
                setting: "pgflare verify".into(),
                message: "verify reads D1 from a SQLite file (--sqlite) or over the API, not from SQL files"
                    .into(),
            }),
        }
    }

    /// Pass 1: bucket sums on both sides (and the vectors the source
    /// expects); the D1 side is read on its own threads while the source
    /// streams in.
    async fn bucket_sums(&self, d1_path: &Path, changed: HashSet<String>) -> Result<Sums> {
        open_d1(d1_path)?;
        let n = self.n;
        let sums = Arc::new(Mutex::new(HashMap::new()));
        let expected = Arc::new(Mutex::new(HashMap::new()));
        let mut sinks: Arc<dyn SinkFactory> =
            Arc::new(source_sinks(self.shapes.clone(), n, Pass::Sum, sums.clone()));
        let vmaps = &self.prepared.vectors.mappings;
        if !vmaps.0.is_empty() {
            let plan = ValuePlan {
                recorded: recorded_ids(d1_path)?,
                changed,
                mode: self.opts.vector_values,
                seed: self.snapshot_id.clone(),
            };
            let gather = Gather::Expect(Arc::new(plan));
            let expect =
                Arc::new(expect_sinks(vmaps.clone(), gather, self.vector_sample.clone(), expected.clone()));
            sinks = Arc::new(crate::sink::tee::Tee(vec![sinks, expect]));
        }
        let threads = d1_threads();
        let (d1, d1_shapes) = (d1_path.to_path_buf(), self.shapes.clone());
        let d1_side = tokio::task::spawn_blocking(move || -> Result<HashMap<String, Option<Side>>> {
            let mut out = HashMap::new();
            for (name, shape) in d1_shapes.iter() {
                out.insert(name.clone(), d1_pass_file(&d1, shape, n, &Pass::Sum, threads)?);
            }
            Ok(out)
        });
        let read = self.read(None, "source", sinks).await;
        let d1_sums = d1_side.await.map_err(|e| Error::Internal(format!("the D1 reader died: {e}")))??;
        read?;
        // A table D1 does not have at all: every source row is missing.
        let absent = d1_sums.iter().filter(|(_, s)| s.is_none()).map(|(k, _)| k.clone()).collect();
        let d1 = d1_sums.into_iter().filter_map(|(k, s)| Some((k, s?))).collect();
        Ok(Sums { source: take(&sums)?, d1, absent, expected })
    }

    /// The sampled buckets whose sums differ, per table (for a table D1
    /// lacks, only enough to list rows).
    fn differing_buckets(&self, sums: &Sums) -> HashMap<String, BTreeSet<usize>> {
        let n = self.n;
        let mut wanted = HashMap::new();
        for (name, side) in &sums.source {
            let (a, b) = (
                buckets_of(side, n),
                sums.d1
                    .get(name)
                    .map(|s| buckets_of(s, n))
                    .unwrap_or_else(|| buckets_of(&Side::default(), n)),
            );
            let mut diff: BTreeSet<usize> = a.differing(&b).intersection(&self.sample).copied().collect();
            if sums.absent.contains(name) {
                // Counted from the bucket sums; only enough rows to list are read.
                diff = first_rows(&a, &diff, MAX_LISTED as u64);
            }
            if !diff.is_empty() {
                wanted.insert(name.clone(), diff);
            }
        }
        wanted
    }

    /// Pass 1½, for tables whose differing buckets hold many rows: both
    /// sides summed again into finer parts of those buckets, so that pass 2
    /// keeps only the rows of differing parts (memory follows the rows that
    /// differ, not the buckets they fell into).
    async fn refine(
        &self,
        d1_path: &Path,
        sums: &Sums,
        wanted: HashMap<String, BTreeSet<usize>>,
    ) -> Result<HashMap<String, Drill>> {
        let mut out = HashMap::new();
        for (name, set) in wanted {
            let sides: Vec<Buckets> = [sums.source.get(&name), sums.d1.get(&name)]
                .into_iter()
                .flatten()
                .map(|s| buckets_of(s, self.n))
                .collect();
            let rows = rows_in(&set, &sides.iter().collect::<Vec<_>>());
            let differing = set.len();
            // A table D1 lacks reads only enough rows to list already.
            let split = refinement(rows, &set, self.n).filter(|_| !sums.absent.contains(&name));
            let drill = match split {
                None => Drill { n: self.n, buckets: set, differing, note: None },
                Some(r) => {
                    let buckets = self.differing_parts(d1_path, &name, Arc::new(r.clone())).await?;
                    let note = r.describe(rows, buckets.len());
                    Drill { n: r.n, buckets, differing, note: Some(note) }
                }
            };
            out.insert(name, drill);
        }
        Ok(out)
    }

    /// The parts of `r` whose sums differ between the source and D1.
    async fn differing_parts(
        &self,
        d1_path: &Path,
        name: &str,
        r: Arc<Refinement>,
    ) -> Result<BTreeSet<usize>> {
        let shape = self
            .shapes
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no D1 shape for {name}")))?;
        let pass = Pass::Refine(r.clone());
        let (path, d1_pass, n) = (d1_path.to_path_buf(), pass.clone(), r.n);
        let d1_shape = shape.clone();
        let d1_side =
            tokio::task::spawn_blocking(move || d1_pass_file(&path, &d1_shape, n, &d1_pass, d1_threads()));
        let parts = Arc::new(Mutex::new(HashMap::new()));
        let shapes = Arc::new(HashMap::from([(name.to_string(), shape)]));
        let read =
            self.read(Some(name), "refine", Arc::new(source_sinks(shapes, n, pass, parts.clone()))).await;
        let d1 = d1_side.await.map_err(|e| Error::Internal(format!("the D1 reader died: {e}")))??;
        read?;
        let src = take(&parts)?.remove(name).unwrap_or_default();
        Ok(differing_parts(&src.parts, &d1.unwrap_or_default().parts))
    }

    /// Pass 2: the source rows of differing buckets, with their values.
    async fn drill_down(&self, wanted: &HashMap<String, Drill>) -> Result<HashMap<String, Side>> {
        let rows = Arc::new(Mutex::new(HashMap::new()));
        for (name, drill) in wanted {
            let shapes: HashMap<String, D1Shape> =
                self.shapes.iter().filter(|(k, _)| *k == name).map(|(k, v)| (k.clone(), v.clone())).collect();
            let pass = Pass::Collect(Arc::new(drill.buckets.clone()));
            let sinks: Arc<dyn SinkFactory> =
                Arc::new(source_sinks(Arc::new(shapes), drill.n, pass, rows.clone()));
            self.read(Some(name), "drill-down", sinks).await?;
        }
        take(&rows)
    }

    /// Each table's report: its D1 side (the differing buckets' rows read
    /// from the D1 file now), then its Vectorize side.
    fn table_reports(
        &self,
        d1: &LocalD1,
        sums: &Sums,
        wanted: &HashMap<String, Drill>,
        mut src_rows: HashMap<String, Side>,
        pending: &HashMap<String, Pending>,
        mut vector_reports: HashMap<String, TargetReport>,
    ) -> Result<Vec<TableReport>> {
        let (n, sample) = (self.n, &self.sample);
        let mut tables = Vec::new();
        for info in &self.prepared.infos {
            let name = info.spec.qualified();
            let Some(shape) = self.shapes.get(&name) else { continue };
            let src_total = sums.source.get(&name).map(|s| buckets_of(s, n).total().rows).unwrap_or(0);
            let d1_total = sums.d1.get(&name).map(|s| buckets_of(s, n).total().rows).unwrap_or(0);
            let drill = wanted.get(&name);
            let (mut s_rows, mut t_rows) = match drill {
                Some(drill) if !drill.buckets.is_empty() => {
                    let pass = Pass::Collect(Arc::new(drill.buckets.clone()));
                    let t = d1_pass_file(&d1.path, shape, drill.n, &pass, d1_threads())?.unwrap_or_default();
                    (src_rows.remove(&name).map(|s| s.rows).unwrap_or_default(), t.rows)
                }
                _ => Default::default(),
            };
            let pending_sync = set_aside(pending.get(&name), &mut s_rows, &mut t_rows);
            let mut report = classify(
                shape,
                &format!("{} table {}", self.opts.d1.describe(), shape.table.name),
                (src_total, d1_total, sample.len(), drill.map_or(0, |d| d.differing)),
                &s_rows,
                &t_rows,
                sample.len() as f64 / n as f64,
            );
            report.pending_sync = pending_sync;
            report.notes.extend(drill.and_then(|d| d.note.clone()));
            report.notes.extend(d1.notes.iter().cloned());
            if sums.absent.contains(&name) {
                let src_buckets =
                    sums.source.get(&name).map(|s| buckets_of(s, n)).unwrap_or_else(|| Buckets::new(n));
                mark_absent(&mut report, &src_buckets, sample);
            }
            let mut targets = vec![report];
            targets.extend(vector_reports.remove(&name));
            tables.push(TableReport { table: name, targets });
        }
        Ok(tables)
    }
}

/// Threads reading the D1 file: one per CPU (the source's readers wait
/// on Postgres much of the time), at most 4.
fn d1_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

fn buckets_of(side: &Side, n: usize) -> Buckets {
    side.buckets.clone().unwrap_or_else(|| Buckets::new(n))
}

/// The D1 file, read-only; refused with the fix when it is not there.
pub(super) fn open_d1(p: &Path) -> Result<rusqlite::Connection> {
    if !p.is_file() {
        return Err(Error::Config {
            setting: "--sqlite".into(),
            message: format!("{} does not exist: name the SQLite file the load wrote", p.display()),
        });
    }
    rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(format!("opening {}", p.display())))
}

/// Takes the rows written after the sync checkpoint out of the comparison;
/// returns how many of them differ (missing or changed in D1).
fn set_aside(pending: Option<&super::pending::Pending>, source: &mut Rows, target: &mut Rows) -> u64 {
    let Some(p) = pending else { return 0 };
    let ids: Vec<Vec<u8>> =
        source.iter().filter(|(_, r)| p.d1_keys.contains(&r.key)).map(|(id, _)| id.clone()).collect();
    let mut differing = 0;
    for id in ids {
        let s = source.remove(&id);
        let t = target.remove(&id);
        if s.map(|s| s.digest) != t.map(|t| t.digest) {
            differing += 1;
        }
    }
    differing
}
