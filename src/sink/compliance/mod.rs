//! One compliance test for every sink (issue 14): each [`Subject`] (a
//! `SinkFactory` plus an independent way to read back what it wrote) runs
//! through the same scenarios in [`check`]: no input, one batch, the same
//! rows in many batches over two partitions, small outputs that roll into
//! several files, and a failure half-way. After each success the report
//! must be true: the rows read back with a reader that is not pgflare's
//! (rusqlite, the parquet crate, serde_json, the emulator's own database)
//! are the rows written, every file claimed is on disk with the claimed
//! size, blake3 and row count, no unclaimed file is left, and `bytes` is
//! what the sink says it means. After a failure nothing is claimed: every
//! run goes through the load's [`Checkpointing`] wrapper, and its state
//! must not record the failed partition. The cases per sink live in
//! [`file_sinks`], [`api_sinks`] and [`collectors`].

mod api_sinks;
mod claims;
mod collectors;
mod file_sinks;
mod readers;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::load::checkpoint::{Checkpointing, LoadRecorder};
use crate::load::state::StateFile;
use crate::sink::test_table::{batch, spec, Row};

/// One row as a reader sees it: id, vector (float32 bits), metadata JSON,
/// namespace. Vector sinks hold only the rows that have a vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Out {
    pub id: String,
    pub values: Option<Vec<u32>>,
    pub meta: Option<Value>,
    pub ns: Option<String>,
}

/// The rows every scenario writes: text that needs escaping in SQL, JSON
/// and Parquet alike, NULL vectors, metadata and namespaces, a subnormal
/// float, all in key order (as the reader hands them to sinks).
pub fn rows() -> Vec<Out> {
    (0..60)
        .map(|i| Out {
            id: format!("r{i:03}"),
            values: (i % 7 != 3).then(|| [i as f32 * 0.25, -1.5, 3.0e-39].map(f32::to_bits).to_vec()),
            meta: (i % 5 != 0).then(
                || serde_json::json!({"title": format!("row {i}: it's \"q\"\n\u{e9}\u{1F600}"), "n": i}),
            ),
            ns: match i % 3 {
                0 => None,
                1 => Some("a".into()),
                _ => Some("b".into()),
            },
        })
        .collect()
}

/// A batch of the test table holding `rows`.
pub fn batch_of(rows: &[Out]) -> RecordBatch {
    let metas: Vec<Option<String>> = rows.iter().map(|r| r.meta.as_ref().map(Value::to_string)).collect();
    let owned: Vec<Row> = rows
        .iter()
        .zip(&metas)
        .map(|(r, m)| {
            let values = r.values.as_ref().map(|v| v.iter().map(|b| f32::from_bits(*b)).collect());
            (r.id.as_str(), values, m.as_deref(), r.ns.as_deref())
        })
        .collect();
    batch(&owned)
}

/// What `SinkReport::bytes` means for a sink.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bytes {
    /// The sizes of the files it lists.
    Files,
    /// The D1 SQL it ran or sent: the statements the `files` target writes
    /// for the same batches, without each file's `PRAGMA` header.
    Sql,
    /// Nothing: the sink counts no bytes (vectors count theirs apart).
    Zero,
}

/// A sink under test.
pub trait Subject {
    fn name(&self) -> String;
    /// A factory writing to a fresh, empty output; `roll` asks for output
    /// cut small, so that a partition rolls over several files.
    fn fresh(&mut self, roll: bool) -> Arc<dyn SinkFactory>;
    /// The table rows the output holds, read independently and sorted by
    /// id; `None` for a sink that does not keep rows.
    fn rows(&self) -> Option<Vec<Out>>;
    /// The vectors the output holds, likewise; `None` for no vectors.
    fn vectors(&self) -> Option<Vec<Out>> {
        None
    }
    /// Folders that report paths of `files` and `vectors.files` are relative
    /// to; `None`: the sink lists no files of that kind.
    fn roots(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (None, None)
    }
    fn bytes(&self) -> Bytes;
    /// Called after a first good batch: breaks the output (and returns
    /// `None`: the next good batch must fail) or returns a batch the sink
    /// must refuse.
    fn sabotage(&mut self) -> Option<RecordBatch>;
    /// Undoes [`Subject::sabotage`] so the partition can be written again.
    fn repair(&mut self) {}
}

/// The test table, shared by every run.
pub fn table() -> Arc<TableSpec> {
    Arc::new(spec())
}

/// Batches per partition, in the order a reader sends them.
pub type Plan = Vec<(usize, Vec<RecordBatch>)>;

/// `rows` split into partition 0 (the first half, 7 rows a batch, with an
/// empty batch in between) and partition 1 (the rest, 5 rows a batch).
pub fn split_plan(rows: &[Out]) -> Plan {
    let (a, b) = rows.split_at(rows.len() / 2);
    let mut first: Vec<RecordBatch> = a.chunks(7).map(batch_of).collect();
    first.insert(1, batch_of(&[]));
    vec![(0, first), (1, b.chunks(5).map(batch_of).collect())]
}

/// A load state with two undone partitions of the test table, as the load
/// keeps it, so [`Checkpointing`] records what finished.
pub fn state(dir: &std::path::Path) -> Arc<StateFile> {
    let mut s = crate::load::state::tests::state();
    let mut p = s.tables[0].partitions[0].clone();
    p.range.index = 1;
    s.tables[0].partitions.push(p);
    Arc::new(StateFile::create(&dir.join("state.json"), s).expect("state"))
}

/// The factory wrapped as the load wraps it.
pub fn checkpointed(inner: Arc<dyn SinkFactory>, state: &Arc<StateFile>) -> Checkpointing {
    let recorder = LoadRecorder {
        state: state.clone(),
        bars: Vec::new(),
        bytes: Arc::new(AtomicU64::new(0)),
        confirm: None,
    };
    Checkpointing { inner, recorder: Arc::new(recorder) }
}

/// Writes `plan` through `factory`; the report of each partition.
pub fn run(factory: &dyn SinkFactory, plan: &Plan) -> crate::error::Result<Vec<SinkReport>> {
    let table = table();
    let mut reports = Vec::new();
    for (partition, batches) in plan {
        let mut sink = factory.open(&table, *partition)?;
        for b in batches {
            sink.write(&TableBatch { table: table.clone(), partition: *partition, batch: b.clone() })?;
        }
        reports.push(sink.finish()?);
    }
    Ok(reports)
}

/// Runs every scenario on `s`; panics naming the sink and the scenario.
pub fn check(s: &mut dyn Subject) {
    let all = rows();
    let scenarios: [(&str, bool, Plan); 4] = [
        ("no input", false, vec![(0, vec![])]),
        ("one batch", false, vec![(0, vec![batch_of(&all)])]),
        ("many batches over 2 partitions", false, split_plan(&all)),
        ("rolled outputs", true, split_plan(&all)),
    ];
    let mut results = Vec::new();
    for (what, roll, plan) in scenarios {
        let ctx = format!("{}, {what}", s.name());
        let factory = s.fresh(roll);
        let state_dir = tempfile::tempdir().expect("tempdir");
        let state = state(state_dir.path());
        let reports = run(&checkpointed(factory, &state), &plan).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let expected = if plan.iter().all(|(_, b)| b.is_empty()) { Vec::new() } else { all.clone() };
        claims::check_run(s, &ctx, &plan, &reports, &state, &expected);
        if roll {
            claims::check_rolled(s, &ctx, &reports);
        }
        results.push((s.rows(), s.vectors()));
    }
    // One batch, many batches and rolled files hold the same rows.
    assert!(results[1..].windows(2).all(|w| w[0] == w[1]), "{}: the split changes what is written", s.name());
    check_failure(s);
    check_wrong_schema(s);
}

/// A batch that is not of the table's schema (two of its four columns) is
/// an error, not a panic or a half-written row: the reader never sends one,
/// so this guards the contract, not user input.
fn check_wrong_schema(s: &mut dyn Subject) {
    let ctx = format!("{}, a batch of another schema", s.name());
    let factory = s.fresh(false);
    let table = table();
    let full = batch_of(&rows());
    let narrow = full.project(&[0, 3]).expect("project");
    let tb = TableBatch { table: table.clone(), partition: 0, batch: narrow };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sink = factory.open(&table, 0)?;
        sink.write(&tb)?;
        sink.finish()
    }));
    match outcome {
        Err(_) => panic!("{ctx}: the sink panicked"),
        Ok(Ok(report)) => panic!("{ctx}: taken: {report:?}"),
        Ok(Err(_)) => {}
    }
}

/// A partition that fails half-way is not recorded, claims no file, and
/// written again (as a resumed load does) ends complete and clean.
fn check_failure(s: &mut dyn Subject) {
    let ctx = format!("{}, a failure half-way", s.name());
    let all = rows();
    let factory = s.fresh(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = state(dir.path());
    let wrapped = checkpointed(factory.clone(), &state);
    let table = table();
    let tb = |b: RecordBatch| TableBatch { table: table.clone(), partition: 0, batch: b };
    let mut sink: Box<dyn BatchSink> = wrapped.open(&table, 0).expect("open");
    sink.write(&tb(batch_of(&all[..30]))).unwrap_or_else(|e| panic!("{ctx}: first batch: {e}"));
    let next = s.sabotage().unwrap_or_else(|| batch_of(&all[30..]));
    let outcome = sink.write(&tb(next)).and_then(|()| sink.finish());
    let err = outcome.expect_err(&format!("{ctx}: the broken write is not an error"));
    assert!(!err.to_string().is_empty(), "{ctx}");
    let snap = state.snapshot().expect("snapshot");
    let p = &snap.tables[0].partitions[0];
    assert!(!p.done && p.rows == 0 && p.files.is_empty() && p.vectors.is_empty(), "{ctx}: claimed {p:?}");
    s.repair();
    let plan = vec![(0, vec![batch_of(&all)])];
    let reports = run(&checkpointed(factory, &state), &plan).unwrap_or_else(|e| panic!("{ctx}, again: {e}"));
    claims::check_run(s, &format!("{ctx}, written again"), &plan, &reports, &state, &all);
}
