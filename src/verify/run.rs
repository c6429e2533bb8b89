//! `pgflare verify`: the configured tables read at one exported snapshot
//! and compared with D1 (and Vectorize, see [`super::vectors`]). Pass 1
//! sums row digests into key buckets on both sides; pass 2 re-reads, at the
//! same snapshot, only the tables with differing buckets and keeps only
//! those buckets' rows, so memory follows the differences, not the table.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::compare::{classify, first_rows, mark_absent, sampled};
use super::parity::{compare_query, summarize, Chooser, Collecting, Metric, ParitySinks, TopK};
use super::report::{Difference, MAX_LISTED};
use super::report::{Status, TableReport, Verdict, VerifyReport, FORMAT};
use super::vectors::{self, difference, in_sample, ExpectSinks, Expected};
use crate::batch::sink::SinkFactory;
use crate::config::project::Project;
use crate::digest::buckets::Buckets;
use crate::digest::pass::{d1_pass_file, D1Shape, Pass, Rows, Side, SourceSinks};
use crate::digest::vector::{vector_digest, Vector};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::{partition, read_all, ReadOptions, Snapshot, Source, SplitOptions, TableJob};

/// Where the D1 side is read from.
#[derive(Clone)]
pub enum D1Target {
    /// A local SQLite file: the `sqlite` load target, wrangler's local
    /// file, or the emulator's database file.
    Sqlite(PathBuf),
    /// A D1 database over the API: exported into `work_dir` first.
    Api { d1: Arc<crate::cloudflare::D1>, location: String, work_dir: PathBuf },
}

impl D1Target {
    pub fn describe(&self) -> String {
        match self {
            D1Target::Sqlite(p) => format!("sqlite:{}", p.display()),
            D1Target::Api { location, .. } => location.clone(),
        }
    }
}

pub struct VerifyOptions {
    pub project: Project,
    pub only_tables: Vec<String>,
    pub d1: D1Target,
    pub read: ReadOptions,
    pub split: SplitOptions,
    /// Key buckets per table.
    pub buckets: usize,
    /// Fraction of buckets compared (1.0 = all).
    pub sample: f64,
    /// The Vectorize index to compare the vector tables with.
    pub vectorize: Option<Arc<crate::cloudflare::Vectorize>>,
    /// Vector elements this close count as equal (0 = float32 bits).
    pub float_tolerance: f64,
    /// Similarity-query parity: this many queries (0 = none) of top `k`,
    /// passing at a mean recall of at least `min_recall`.
    pub queries: usize,
    pub k: usize,
    pub min_recall: f64,
    /// Vectors the load's rules leave out do not fail the verdict.
    pub accept_skipped: bool,
}

pub async fn run(src: &Source, opts: &VerifyOptions, progress: &Progress) -> Result<VerifyReport> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut snapshot = Snapshot::export(src).await?;
    let prepared =
        crate::plan::prepare(&mut snapshot, &opts.project, &opts.only_tables, opts.vectorize.is_some())
            .await?;
    let vmaps = prepared.vectors.mappings.clone();
    let shapes: HashMap<String, D1Shape> = prepared
        .d1
        .iter()
        .map(|(info, table)| (info.spec.qualified(), D1Shape::new(&info.spec, table)))
        .collect();
    let shapes = Arc::new(shapes);
    let mut parts = Vec::new();
    for info in &prepared.infos {
        let mut p = partition::plan(snapshot.conn(), &info.spec, info.total_bytes, opts.split).await?;
        // Soft-deleted rows, and rows below a soft-deleted parent, are not
        // expected in the targets.
        let live = prepared.live.live(&info.spec);
        p.iter_mut().for_each(|p| p.filter = live.clone());
        parts.push(p);
    }
    let jobs = |only: Option<&BTreeSet<String>>, label: &str| -> Vec<TableJob> {
        prepared
            .infos
            .iter()
            .zip(&parts)
            .filter(|(i, _)| only.is_none_or(|o| o.contains(&i.spec.qualified())))
            .map(|(i, p)| TableJob {
                table: Arc::new(i.spec.clone()),
                partitions: p.clone(),
                progress: progress.rows(&format!("{label} {}", i.spec.name), i.row_estimate),
            })
            .collect()
    };
    let n = opts.buckets.max(1);
    // A remote D1 is exported once (or read through queries when the
    // export fails) and read locally like any D1 file.
    let mut d1_notes = Vec::new();
    let d1_file = match &opts.d1 {
        D1Target::Sqlite(p) => D1Target::Sqlite(p.clone()),
        D1Target::Api { d1, work_dir, .. } => {
            let names: Vec<String> = shapes.values().map(|s| s.table.name.clone()).collect();
            let m = super::d1_export::materialize(d1, work_dir, &names).await?;
            for n in &m.notes {
                progress.println(&format!("note: {n}"));
            }
            d1_notes = m.notes;
            D1Target::Sqlite(m.path)
        }
    };

    let sample = sampled(n, opts.sample.clamp(0.0, 1.0));
    let vector_sample = Arc::new((n, sample.clone()));

    // Pass 1: bucket sums on both sides.
    let sums = Arc::new(Mutex::new(HashMap::new()));
    let expected = Arc::new(Mutex::new(HashMap::new()));
    let mut sinks: Arc<dyn SinkFactory> =
        Arc::new(SourceSinks { shapes: shapes.clone(), buckets: n, pass: Pass::Sum, result: sums.clone() });
    if !vmaps.0.is_empty() {
        let expect = Arc::new(ExpectSinks {
            mappings: vmaps.clone(),
            wanted: None,
            sample: vector_sample.clone(),
            result: expected.clone(),
        });
        sinks = Arc::new(crate::sink::tee::Tee(vec![sinks, expect]));
    }
    // The D1 side is read on its own threads while the source streams in.
    let conn = open_d1(&d1_file)?;
    let d1_path = match &d1_file {
        D1Target::Sqlite(p) => p.clone(),
        D1Target::Api { .. } => return Err(Error::Internal("a remote D1 is read from its export".into())),
    };
    let threads = d1_threads();
    let (d1, d1_shapes) = (d1_path.clone(), shapes.clone());
    let d1_side = tokio::task::spawn_blocking(move || -> Result<HashMap<String, Option<Side>>> {
        let mut out = HashMap::new();
        for (name, shape) in d1_shapes.iter() {
            out.insert(name.clone(), d1_pass_file(&d1, shape, n, &Pass::Sum, threads)?);
        }
        Ok(out)
    });
    let read = read_all(src, &snapshot.info.id, jobs(None, "source"), sinks, opts.read).await;
    let d1_sums = d1_side.await.map_err(|e| Error::Internal(format!("the D1 reader died: {e}")))??;
    read?;
    // A table D1 does not have at all: every source row is missing.
    let absent: BTreeSet<String> =
        d1_sums.iter().filter(|(_, s)| s.is_none()).map(|(k, _)| k.clone()).collect();
    let d1_sums: HashMap<String, Side> = d1_sums.into_iter().filter_map(|(k, s)| Some((k, s?))).collect();
    let src_sums = take(&sums)?;
    let mut wanted: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for (name, side) in &src_sums {
        let (a, b) = (
            buckets_of(side, n),
            d1_sums.get(name).map(|s| buckets_of(s, n)).unwrap_or_else(|| buckets_of(&Side::default(), n)),
        );
        let mut diff: BTreeSet<usize> = a.differing(&b).intersection(&sample).copied().collect();
        if absent.contains(name) {
            // Counted from the bucket sums; only enough rows to list are read.
            diff = first_rows(&a, &diff, MAX_LISTED as u64);
        }
        if !diff.is_empty() {
            wanted.insert(name.clone(), diff);
        }
    }

    // Pass 2: the rows of differing buckets, with their values.
    let mut src_rows: HashMap<String, Side> = HashMap::new();
    if !wanted.is_empty() {
        let rows = Arc::new(Mutex::new(HashMap::new()));
        for (name, set) in &wanted {
            let sinks: Arc<dyn SinkFactory> = Arc::new(SourceSinks {
                shapes: Arc::new(
                    shapes.iter().filter(|(k, _)| *k == name).map(|(k, v)| (k.clone(), v.clone())).collect(),
                ),
                buckets: n,
                pass: Pass::Collect(Arc::new(set.clone())),
                result: rows.clone(),
            });
            let only_one: BTreeSet<String> = [name.clone()].into();
            read_all(src, &snapshot.info.id, jobs(Some(&only_one), "drill-down"), sinks, opts.read).await?;
        }
        src_rows = take(&rows)?;
    }
    // Rows written after the sync checkpoint D1 holds: pending, not failures.
    let pending = match super::pending::checkpoint_in(&d1_path)? {
        Some(cp) => {
            let info = &snapshot.info;
            super::pending::pending(src, &info.id, &info.txid_snapshot, &prepared, &cp, opts.read).await?
        }
        None => HashMap::new(),
    };
    // Vectorize: every id of the index, the sampled ones fetched and digested.
    let mut vector_reports = HashMap::new();
    if let (Some(index), false) = (&opts.vectorize, vmaps.0.is_empty()) {
        let mut expected = take_expected(&expected)?;
        for (table, exp) in expected.iter_mut().filter(|(t, _)| vmaps.0.contains_key(*t)) {
            let found = compare_vectors(index, exp, n, &sample).await?;
            let (mut diffs, drill, listed, notes) = found;
            if !drill.is_empty() {
                let wanted = Arc::new(drill.keys().cloned().collect::<std::collections::HashSet<_>>());
                let got = Arc::new(Mutex::new(HashMap::new()));
                let sinks: Arc<dyn SinkFactory> = Arc::new(ExpectSinks {
                    mappings: vmaps.clone(),
                    wanted: Some(wanted),
                    sample: vector_sample.clone(),
                    result: got.clone(),
                });
                let only: BTreeSet<String> = [table.clone()].into();
                read_all(src, &snapshot.info.id, jobs(Some(&only), "vectors"), sinks, opts.read).await?;
                let got = take_expected(&got)?;
                let source = got.get(table).map(|e| &e.vectors);
                for (id, stored) in &drill {
                    if let Some(d) = source
                        .and_then(|s| s.get(id))
                        .and_then(|s| difference(s, stored, opts.float_tolerance))
                    {
                        diffs.push(d);
                    }
                }
            }
            // Vectorize differences name the row by key (`id=…`) or by vector id.
            let p = pending.get(table);
            let before = diffs.len();
            diffs.retain(|d| !p.is_some_and(|p| p.d1_keys.contains(&d.key) || p.vector_ids.contains(&d.key)));
            let pending_sync = (before - diffs.len()) as u64;
            let location = format!("vectorize index {}", index.index());
            let r = vectors::report(
                index.index(),
                &location,
                exp.digests.len() as u64 + exp.skipped.count,
                listed,
                diffs,
                &exp.skipped,
                sample.len() as f64 / n as f64,
            );
            vector_reports.insert(table.clone(), super::report::TargetReport { notes, pending_sync, ..r });
        }
    }
    let mut parity = None;
    if let (Some(index), Some((table, vm)), true) = (&opts.vectorize, vmaps.0.iter().next(), opts.queries > 0)
    {
        let only: BTreeSet<String> = [table.clone()].into();
        let metric = index.config().await?.map(|c| Metric::parse(&c.metric)).unwrap_or(Metric::Cosine);
        let pass = |make: Arc<dyn Fn() -> Collecting + Send + Sync>| {
            let result = Arc::new(Mutex::new(Vec::new()));
            let sinks: Arc<dyn SinkFactory> =
                Arc::new(ParitySinks { mappings: vmaps.clone(), make, result: result.clone() });
            (sinks, result)
        };
        let q = opts.queries;
        let (sinks, chosen) = pass(Arc::new(move || Collecting::Choose(Chooser::new(q))));
        read_all(src, &snapshot.info.id, jobs(Some(&only), "queries"), sinks, opts.read).await?;
        let mut chooser = Chooser::new(q);
        for c in std::mem::take(&mut *chosen.lock().map_err(|_| Error::Internal("parity".into()))?) {
            if let Collecting::Choose(c) = c {
                chooser.merge(c);
            }
        }
        let queries = Arc::new(chooser.chosen());
        let (k, qs) = (opts.k.max(1), queries.clone());
        let (sinks, ranked) = pass(Arc::new(move || Collecting::Rank(TopK::new(metric, k, qs.clone()))));
        read_all(src, &snapshot.info.id, jobs(Some(&only), "exact top-k"), sinks, opts.read).await?;
        let mut top = TopK::new(metric, k, queries.clone());
        for c in std::mem::take(&mut *ranked.lock().map_err(|_| Error::Internal("parity".into()))?) {
            if let Collecting::Rank(t) = c {
                top.merge(t);
            }
        }
        let exact = top.results();
        let id_column = shapes
            .get(table)
            .and_then(|s| s.table.d1_name(&vm.id).map(|c| (s.table.name.clone(), c.to_string())));
        let in_d1 = |id: &str| match &id_column {
            Some((t, c)) => {
                let sql = format!(
                    "SELECT 1 FROM {} WHERE CAST({} AS TEXT) = ?1 LIMIT 1",
                    crate::batch::quote_ident(t),
                    crate::batch::quote_ident(c)
                );
                conn.query_row(&sql, [id], |_| Ok(())).is_ok()
            }
            None => true,
        };
        let mut results = Vec::new();
        for ((id, vector), exact) in queries.iter().zip(&exact) {
            let got: Vec<(String, f64)> =
                index.query(vector, k, None).await?.into_iter().map(|m| (m.id, m.score)).collect();
            results.push(compare_query(id, exact, &got, k, &in_d1));
        }
        parity = Some(summarize(k, opts.min_recall, results));
    }
    let snap = snapshot.info.clone();
    snapshot.release().await?;

    let mut tables = Vec::new();
    for info in &prepared.infos {
        let name = info.spec.qualified();
        let Some(shape) = shapes.get(&name) else { continue };
        let src_total = src_sums.get(&name).map(|s| buckets_of(s, n).total().rows).unwrap_or(0);
        let d1_total = d1_sums.get(&name).map(|s| buckets_of(s, n).total().rows).unwrap_or(0);
        let set = wanted.get(&name).cloned().unwrap_or_default();
        let (s_rows, t_rows) = if set.is_empty() {
            (Default::default(), Default::default())
        } else {
            let pass = Pass::Collect(Arc::new(set.clone()));
            let t = d1_pass_file(&d1_path, shape, n, &pass, threads)?.unwrap_or_default();
            (src_rows.remove(&name).map(|s| s.rows).unwrap_or_default(), t.rows)
        };
        let (mut s_rows, mut t_rows) = (s_rows, t_rows);
        let pending_sync = set_aside(pending.get(&name), &mut s_rows, &mut t_rows);
        let mut report = classify(
            shape,
            &format!("{} table {}", opts.d1.describe(), shape.table.name),
            (src_total, d1_total, sample.len(), set.len()),
            &s_rows,
            &t_rows,
            sample.len() as f64 / n as f64,
        );
        report.pending_sync = pending_sync;
        report.notes.extend(d1_notes.iter().cloned());
        if absent.contains(&name) {
            let src_buckets =
                src_sums.get(&name).map(|s| buckets_of(s, n)).unwrap_or_else(|| Buckets::new(n));
            mark_absent(&mut report, &src_buckets, &sample);
        }
        let mut targets = vec![report];
        targets.extend(vector_reports.remove(&name));
        tables.push(TableReport { table: name, targets });
    }
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
    };
    report.decide(opts.accept_skipped);
    Ok(report)
}

/// Threads reading the D1 file: one per CPU (the source's readers wait
/// on Postgres much of the time), at most 4.
fn d1_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

fn buckets_of(side: &Side, n: usize) -> crate::digest::buckets::Buckets {
    side.buckets.clone().unwrap_or_else(|| crate::digest::buckets::Buckets::new(n))
}

type Compared = (Vec<Difference>, HashMap<String, Vector>, u64, Vec<String>);

/// Lists the index, fetches the sampled ids, and compares digests: returns
/// the missing and extra ids as differences, the ids whose digests differ
/// (with the stored vector) for a closer look, and how many ids the index has.
async fn compare_vectors(
    index: &crate::cloudflare::Vectorize,
    exp: &Expected,
    n: usize,
    sample: &BTreeSet<usize>,
) -> Result<Compared> {
    use super::report::DiffKind;
    let before = index.info().await?;
    let listed = index.list_ids().await?;
    let listed_set: std::collections::HashSet<&String> = listed.iter().collect();
    let mut diffs = Vec::new();
    for id in exp.digests.keys().filter(|id| in_sample(id, n, sample)) {
        if !listed_set.contains(id) {
            diffs.push(Difference::bare(DiffKind::Missing, format!("id={id}")));
        }
    }
    let mut drill = HashMap::new();
    // A skipped row is reported as skipped, whatever the index holds for it.
    let stale = listed.iter().filter(|id| exp.skipped.ids.contains(*id)).count();
    let present: Vec<String> = listed
        .iter()
        .filter(|id| in_sample(id, n, sample) && !exp.skipped.ids.contains(*id))
        .cloned()
        .collect();
    for chunk in present.chunks(1000) {
        for stored in index.get_by_ids(chunk).await? {
            let v = Vector::from_stored(&stored);
            match exp.digests.get(&v.id) {
                None => diffs.push(Difference::bare(DiffKind::Extra, format!("id={}", v.id))),
                Some(d) if *d != vector_digest(&v) => {
                    drill.insert(v.id.clone(), v);
                }
                Some(_) => {}
            }
        }
    }
    // Vectorize applies writes asynchronously: if it applied any while it
    // was read, some differences may be writes in flight, not losses.
    let after = index.info().await?;
    let mut notes = Vec::new();
    if stale > 0 {
        notes.push(format!(
            "the index still holds a vector for {stale} of the skipped rows (written before the row broke \
             a rule; the next `pgflare sync` deletes it, a load leaves it): queries may return it"
        ));
    }
    if before.processed_up_to_mutation != after.processed_up_to_mutation {
        notes.push(format!(
            "the index applied writes while it was read (processedUpToMutation {} -> {}): differences may be \
             writes in flight; run verify again once the load or sync has finished",
            before.processed_up_to_mutation.as_deref().unwrap_or("none"),
            after.processed_up_to_mutation.as_deref().unwrap_or("none")
        ));
    } else if after.vector_count.is_some_and(|c| c != listed.len() as u64) {
        notes.push(format!(
            "the index reports {} vectors but listed {}: it may still be applying writes",
            after.vector_count.unwrap_or(0),
            listed.len()
        ));
    }
    Ok((diffs, drill, listed.len() as u64, notes))
}

fn take_expected(m: &Arc<Mutex<HashMap<String, Expected>>>) -> Result<HashMap<String, Expected>> {
    let mut g = m.lock().map_err(|_| Error::Internal("a comparison worker panicked".into()))?;
    Ok(std::mem::take(&mut *g))
}

fn take(m: &Arc<Mutex<HashMap<String, Side>>>) -> Result<HashMap<String, Side>> {
    let mut g = m.lock().map_err(|_| Error::Internal("a comparison worker panicked".into()))?;
    Ok(std::mem::take(&mut *g))
}

fn open_d1(t: &D1Target) -> Result<rusqlite::Connection> {
    match t {
        D1Target::Api { .. } => Err(Error::Internal("a remote D1 is read from its export".into())),
        D1Target::Sqlite(p) => {
            if !p.is_file() {
                return Err(Error::Config {
                    setting: "--sqlite".into(),
                    message: format!("{} does not exist: name the SQLite file the load wrote", p.display()),
                });
            }
            rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(Error::sqlite(format!("opening {}", p.display())))
        }
    }
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
