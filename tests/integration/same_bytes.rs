//! The files pgflare writes stay byte for byte what they were before the
//! performance work of issue 18 (bound sqlite statements, packed upserts,
//! the writer's hot paths), for the same data.
//!
//! `fixtures/same-bytes/sha256sums.txt` was written by `sha256sum` over
//! the outputs of a release build of commit 9a5b22d (the last commit before
//! that work; its outputs were checked by the independent readers of that
//! time: pyarrow, DuckDB, sqlite3 applying the SQL, the NDJSON compared by
//! Python), on the generator's deterministic data, with the commands below.
//! The manifests are left out: they hold snapshot ids and times. A change
//! of format that is meant must come with new sums and a reason. The
//! `sqlite` target, whose file bytes follow SQLite's page allocation, is
//! compared by dump with these SQL files applied (`d1_files.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::common::*;

/// Every file under `dir` but the manifests, by path relative to `dir`.
fn sums(dir: &Path, under: &str, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir.join(under)).expect("read dir").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = format!("{under}/{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            sums(dir, &rel, out);
        } else if e.file_name() != "manifest.json" {
            let bytes = std::fs::read(e.path()).expect("read file");
            let hex: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            out.insert(rel, hex);
        }
    }
}

#[test]
fn archive_and_files_are_byte_identical_to_before_the_performance_work() {
    let db = TestDb::new("samebytes");
    db.seed(800, 16);
    let dir = temp_dir("samebytes");
    let d = |p: &str| dir.path().join(p).to_str().expect("utf-8 path").to_string();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/same-bytes/pgflare.toml");
    // One key range per table, so the files do not depend on size estimates.
    ok(pgflare(&db, &["archive", "--quiet", "--out", &d("arc"), "--partition-mib", "64"]));
    let load = ["load", "--quiet", "--partition-mib", "64", "--target", "files"];
    ok(pgflare(&db, &[&load[..], &["--state-dir", &d("s1"), "--out", &d("all")]].concat()));
    let mapped = ["--config", config.to_str().expect("p"), "--state-dir", &d("s2"), "--out", &d("mapped")];
    ok(pgflare(&db, &[&load[..], &mapped[..]].concat()));

    let mut got = BTreeMap::new();
    for under in ["arc", "all", "mapped"] {
        sums(dir.path(), under, &mut got);
    }
    let pinned = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/same-bytes/sha256sums.txt"),
    )
    .expect("sums");
    let want: BTreeMap<String, String> = pinned
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(hash, path)| (path.to_string(), hash.to_string()))
        .collect();
    assert_eq!(want.len(), 9, "the pinned sums: {pinned}");
    assert_eq!(got, want, "files differ from 9a5b22d's for the same data");
}
