//! Whether what a sink reported is true: the rows and vectors it counts
//! are the ones read back, every file it lists is on disk as described
//! and no other is, `bytes` is what [`Bytes`] says it means, and the load
//! state recorded exactly the finished partitions' reports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{readers, run, Bytes, Out, Plan, Subject};
use crate::batch::sink::{FileReport, SinkReport};
use crate::load::state::StateFile;
use crate::sink::d1::files::D1FilesConfig;
use crate::sink::test_table::mapping;
use crate::sink::vectorize::files::VectorizeFilesConfig;

/// The header of every D1 SQL file (sink/d1/files.rs); the SQL sinks send
/// the statements without it.
const SQL_HEADER: &str = "PRAGMA defer_foreign_keys = on;\n";

/// Checks one successful run of `plan` (its reports in plan order).
pub fn check_run(
    s: &dyn Subject,
    ctx: &str,
    plan: &Plan,
    reports: &[SinkReport],
    state: &StateFile,
    expected: &[Out],
) {
    let mut total = SinkReport::default();
    reports.iter().for_each(|r| total.merge(r.clone()));
    match s.rows() {
        Some(got) => {
            assert_eq!(got, expected, "{ctx}: the rows read back");
            assert_eq!(total.rows, expected.len() as u64, "{ctx}: report.rows");
        }
        None => assert_eq!(total.rows, 0, "{ctx}: a sink that keeps no rows claims none"),
    }
    let with_vectors: Vec<Out> = expected.iter().filter(|r| r.values.is_some()).cloned().collect();
    match s.vectors() {
        Some(got) => {
            assert_eq!(got, with_vectors, "{ctx}: the vectors read back");
            let v = &total.vectors;
            let want = (with_vectors.len() as u64, (expected.len() - with_vectors.len()) as u64, 0);
            assert_eq!((v.written, v.null, v.skipped), want, "{ctx}: vectors written, null, skipped");
        }
        None => assert!(total.vectors.is_empty(), "{ctx}: a sink without vectors claims {:?}", total.vectors),
    }

    let (root, vector_root) = s.roots();
    let partitions: Vec<usize> = plan.iter().map(|(p, _)| *p).collect();
    let files: Vec<(usize, &[FileReport])> =
        partitions.iter().zip(reports).map(|(p, r)| (*p, r.files.as_slice())).collect();
    let vector_files: Vec<(usize, &[FileReport])> =
        partitions.iter().zip(reports).map(|(p, r)| (*p, r.vectors.files.as_slice())).collect();
    files_true(&format!("{ctx}, files"), root.as_deref(), &files);
    files_true(&format!("{ctx}, vector files"), vector_root.as_deref(), &vector_files);
    if root.is_some() {
        let sum: u64 = total.files.iter().map(|f| f.rows).sum();
        assert_eq!(sum, total.rows, "{ctx}: the files' rows add up to report.rows");
    }
    if vector_root.is_some() {
        let sum: u64 = total.vectors.files.iter().map(|f| f.rows).sum();
        assert_eq!(sum, total.vectors.written, "{ctx}: the vector files' lines add up to vectors.written");
    }

    let (sql, ndjson) = reference_bytes(plan);
    let want = match s.bytes() {
        Bytes::Files => total.files.iter().map(|f| f.bytes).sum(),
        Bytes::Sql => sql,
        Bytes::Zero => 0,
    };
    assert_eq!(total.bytes, want, "{ctx}: report.bytes ({:?})", s.bytes());
    let vector_bytes = if s.vectors().is_some() { ndjson } else { 0 };
    assert_eq!(total.vectors.bytes, vector_bytes, "{ctx}: vectors.bytes are the NDJSON lines");

    let snap = state.snapshot().expect("state");
    for (p, r) in partitions.iter().zip(reports) {
        let got = &snap.tables[0].partitions[*p];
        assert!(got.done, "{ctx}: partition {p} finished but is not recorded");
        assert_eq!((got.rows, got.bytes, &got.files), (r.rows, r.bytes, &r.files), "{ctx}: state of {p}");
        let mut v = r.vectors.clone();
        v.pending_write = None;
        v.pending_tails.clear();
        assert_eq!(got.vectors, v, "{ctx}: recorded vectors of {p}");
    }
}

/// With small outputs, each partition that has rows rolled into several files.
pub fn check_rolled(s: &dyn Subject, ctx: &str, reports: &[SinkReport]) {
    let (root, vector_root) = s.roots();
    for r in reports {
        if root.is_some() {
            assert!(r.files.len() >= 2, "{ctx}: one partition, {} file(s): {:?}", r.files.len(), r.files);
        }
        if vector_root.is_some() {
            assert!(r.vectors.files.len() >= 2, "{ctx}: {} vector file(s)", r.vectors.files.len());
        }
    }
}

/// Every listed file is its partition's and is on disk with its size,
/// blake3 and rows; no other file is under `root`.
fn files_true(ctx: &str, root: Option<&Path>, files: &[(usize, &[FileReport])]) {
    let Some(root) = root else {
        assert!(files.iter().all(|(_, f)| f.is_empty()), "{ctx}: files claimed by a sink without files");
        return;
    };
    let mut claimed = BTreeSet::new();
    for (p, list) in files {
        for f in *list {
            let name = f.path.rsplit('/').next().unwrap_or_default();
            assert!(name.starts_with(&format!("part-{p:05}-")), "{ctx}: {} listed for partition {p}", f.path);
            let path = root.join(&f.path);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{ctx}: {} is claimed: {e}", f.path));
            assert_eq!(bytes.len() as u64, f.bytes, "{ctx}: size of {}", f.path);
            assert_eq!(blake3::hash(&bytes).to_hex().to_string(), f.blake3, "{ctx}: blake3 of {}", f.path);
            assert_eq!(readers::file_rows(&path), f.rows, "{ctx}: rows of {}", f.path);
            assert!(claimed.insert(path), "{ctx}: {} listed twice", f.path);
        }
    }
    let on_disk: BTreeSet<PathBuf> = readers::files_under(root).into_iter().collect();
    assert_eq!(on_disk, claimed, "{ctx}: the files on disk are the files claimed");
}

/// The bytes of D1 SQL (headers left out) and of NDJSON that the `files`
/// targets write for `plan`: what the SQLite and API sinks run and send.
fn reference_bytes(plan: &Plan) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d1 = D1FilesConfig::new(dir.path().join("d1"));
    let mut vectors = VectorizeFilesConfig::new(dir.path().join("v"), Default::default());
    vectors.mappings.0.insert("public.t".into(), mapping(Some(3)));
    let files: Vec<FileReport> =
        run(&d1, plan).expect("reference SQL").into_iter().flat_map(|r| r.files).collect();
    let sql: u64 = files.iter().map(|f| f.bytes - SQL_HEADER.len() as u64).sum();
    let ndjson = run(&vectors, plan).expect("reference NDJSON").iter().map(|r| r.vectors.bytes).sum();
    (sql, ndjson)
}
