//! `pgflare restore`: an archive back into D1 and Vectorize. What is
//! restored is proven by `pgflare verify` against the source the archive
//! was made from (row digests of both sides, every row and every vector),
//! and by reading the D1 file directly; a damaged archive is refused
//! before anything is written.

use crate::common::*;

fn archive(db: &TestDb, out: &std::path::Path) {
    ok(pgflare(db, &["archive", "--quiet", "--out", out.to_str().expect("p")]));
}

#[test]
fn an_archive_restored_into_d1_verifies_against_its_source() {
    let db = TestDb::new("restore");
    db.seed(300, 8);
    let dir = temp_dir("restore");
    let out = dir.path().join("archive");
    archive(&db, &out);
    let d1 = dir.path().join("d1.sqlite");
    let d1_arg = d1.to_str().expect("p");
    let args = ["--json", "restore", out.to_str().expect("p"), "--target", "sqlite", "--sqlite", d1_arg];
    let s = ok_json(pgflare(&db, &args));
    let rows = |t: &str| db.query_one(&format!("SELECT count(*)::text FROM {t}")).parse::<u64>().expect("n");
    assert_eq!(s["rows"].as_u64(), Some(rows("chunks") + rows("documents")), "{s:#}");

    // An independent reader: every row is in the D1 file.
    for t in ["chunks", "documents"] {
        let n = sqlite_count(&d1, &format!("SELECT count(*) FROM {t}"));
        assert_eq!(n as u64, rows(t), "{t} in D1");
    }
    // verify compares every row's digest with the source's (no changes
    // since the archive, so it must be consistent).
    let report = dir.path().join("report");
    let o =
        pgflare(&db, &["--json", "verify", "--sqlite", d1_arg, "--report-dir", report.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A second restore over it changes nothing (upserts) and still verifies.
    ok(pgflare(&db, &args));
    let o = pgflare(&db, &["verify", "--sqlite", d1_arg, "--report-dir", report.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_damaged_archive_is_refused_before_anything_is_written() {
    let db = TestDb::new("restorebad");
    db.seed(50, 4);
    let dir = temp_dir("restorebad");
    let out = dir.path().join("archive");
    archive(&db, &out);
    let d1 = dir.path().join("d1.sqlite");
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", out.to_str().expect("p"), "--target", "sqlite"];
        args.extend_from_slice(&["--sqlite", d1.to_str().expect("p")]);
        args.extend_from_slice(extra);
        pgflare(&db, &args)
    };

    // One byte changed in one Parquet file.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("manifest"))
            .expect("json");
    let chunks = manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "chunks")
        .expect("chunks");
    let file = out.join(chunks["files"][0]["path"].as_str().expect("a file"));
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).expect("write");
    let o = restore(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("blake3") && err.contains("public.chunks") && err.contains("archive verify"),
        "{err}"
    );
    assert!(!d1.exists(), "nothing is written before the archive is known to be good");

    // No manifest: an archive that did not finish.
    std::fs::remove_file(out.join("manifest.json")).expect("rm manifest");
    let o = restore(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("manifest"), "{}", text(&o));
    assert!(!d1.exists());
}

#[test]
fn an_archive_restored_through_the_api_into_d1_and_vectorize_verifies_over_the_api() {
    let db = TestDb::new("restoreapi");
    db.seed(200, 8);
    let dir = temp_dir("restoreapi");
    let out = dir.path().join("archive");
    archive(&db, &out);
    // The mapping load would use: D1 columns, the vector and its metadata.
    let config = init_config(&db, dir.path());
    // The emulator behaves as the real service: transfers stay active for
    // a few polls, bodies are strict, Vectorize applies writes later.
    let emu = Emulator::start(&["--transfer-polls", "2"]);
    let o = emu
        .command(&db)
        .args(["--json", "restore", out.to_str().expect("p"), "--config", &config, "--target", "api"])
        .args(["--d1-database-id", DB, "--vectorize-index", "vi", "--create-index"])
        .output()
        .expect("restore");
    let s = ok_json(o);
    let vectors: u64 =
        s["tables"].as_array().expect("tables").iter().filter_map(|t| t["vectors"]["written"].as_u64()).sum();
    let with_vectors = db.query_one("SELECT count(*)::text FROM chunks WHERE embedding IS NOT NULL");
    assert_eq!(vectors.to_string(), with_vectors, "{s:#}");
    // An independent reader of the emulator's D1 file, then verify over the
    // API: every row and every vector (values bit for bit, metadata).
    let source =
        |t: &str| db.query_one(&format!("SELECT count(*)::text FROM {t}")).parse::<i64>().expect("n");
    for t in ["chunks", "documents"] {
        assert_eq!(sqlite_count(&emu.d1_file(DB), &format!("SELECT count(*) FROM {t}")), source(t), "{t}");
    }
    let report = dir.path().join("report");
    let o = emu
        .command(&db)
        .args(["--json", "verify", "--config", &config, "--d1-database-id", DB, "--vectorize-index", "vi"])
        .args(["--report-dir", report.to_str().expect("p")])
        .output()
        .expect("verify");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Self-referencing trees, a two-table cycle and chains whose children sort
/// before their parents (the schemas of fk_cycles.rs): the D1 tables get
/// the foreign keys back from the manifest, rows are written parents
/// first, and the keys on a cycle are set after every table is in, so
/// SQLite (which enforces them) refuses nothing, and verify is consistent.
#[test]
fn foreign_keys_come_back_from_the_manifest_and_cycles_are_linked_after() {
    let db = TestDb::new("restorefk");
    crate::fk_cycles::create(&db);
    let dir = temp_dir("restorefk");
    let out = dir.path().join("archive");
    archive(&db, &out);
    let d1 = dir.path().join("d1.sqlite");
    let d1_arg = d1.to_str().expect("p");
    ok(pgflare(&db, &["restore", out.to_str().expect("p"), "--target", "sqlite", "--sqlite", d1_arg]));
    // The constraints are in D1, and every row satisfies them.
    let c = rusqlite::Connection::open(&d1).expect("open");
    let fks: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master m, pragma_foreign_key_list(m.name) WHERE m.type = 'table'",
            [],
            |r| r.get(0),
        )
        .expect("fk list");
    assert!(fks >= 7, "foreign keys in D1: {fks}");
    let violations: i64 =
        c.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).expect("check");
    assert_eq!(violations, 0);
    let report = dir.path().join("report");
    let o = pgflare(&db, &["verify", "--sqlite", d1_arg, "--report-dir", report.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
