//! Vectors a load left out must not vanish from `pgflare verify`: a load
//! with `--on-invalid-vector skip` where half the rows break a Vectorize
//! rule (wrong dimension, metadata nested too deep) is not CONSISTENT:
//! every such row is counted and listed as `skipped` with its reason
//! (exit 1), `--accept-skipped` makes the verdict
//! `consistent_except_skipped` (exit 0, still naming them), and a vector
//! deleted from the index behind pgflare's back is `missing`, also when a
//! transaction of another database ran across the load (it does not make
//! the load's rows "pending sync").

use std::path::Path;

use crate::common::*;

/// Ten rows: five fine, two with a fourth dimension, three whose JSON
/// metadata nests two objects deep (LangChain's `loc.lines`), one NULL.
fn half_invalid(db: &TestDb) {
    db.exec(
        r#"CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE items (id text PRIMARY KEY, embedding vector, meta jsonb);
         INSERT INTO items VALUES
           ('ok1', '[1,0,0]', '{"source": "a.pdf"}'),
           ('ok2', '[0,1,0]', '{"source": "b.pdf", "page": 2}'),
           ('ok3', '[0,0,1]', NULL),
           ('ok4', '[1,1,0]', '{"source": "c.pdf", "tags": ["x", "y"]}'),
           ('ok5', '[1,0,1]', '{}'),
           ('dims1', '[1,2,3,4]', '{"source": "d.pdf"}'),
           ('dims2', '[4,3,2,1]', NULL),
           ('deep1', '[0,1,1]', '{"source": "e.pdf", "loc": {"pageNumber": 3, "lines": {"from": 1, "to": 40}}}'),
           ('deep2', '[1,1,1]', '{"loc": {"lines": {"from": 5, "to": 9}}}'),
           ('deep3', '[2,1,1]', '{"pdf": {"info": {"Title": "T"}}}'),
           ('novec', NULL, '{"source": "f.pdf"}');"#,
    );
}

fn config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("pgflare.toml");
    std::fs::write(
        &config,
        "[vectorize]\ndimensions = 3\n\n[[tables]]\nname = \"items\"\nvector = \"embedding\"\n\
         vector_metadata = [\"meta\"]\n",
    )
    .expect("config");
    config
}

#[test]
fn verify_counts_vectors_the_load_skipped_and_does_not_say_consistent() {
    let db = TestDb::new("verifyskip");
    // Another database's transaction runs from before the rows are written
    // until after the load (as when tests run in parallel): the load's
    // snapshot then has an xmin below these rows' transaction ids.
    let other = OpenTransaction::begin();
    half_invalid(&db);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("verifyskip");
    let config = config(dir.path());
    let c = config.to_str().expect("p");
    let state = dir.path().join("state");
    let load = emu
        .command(&db)
        .args(["--json", "load", "--config", c, "--target", "api", "--d1-database-id", "db1"])
        .args(["--vectorize-index", "vi", "--create-index", "--on-invalid-vector", "skip"])
        .args(["--state-dir", state.to_str().expect("p")])
        .output()
        .expect("load");
    let s: serde_json::Value = ok_json(load);
    drop(other);
    let v = &s["tables"][0]["vectors"];
    assert_eq!((v["written"].as_u64(), v["skipped"].as_u64()), (Some(5), Some(5)), "{s:#}");

    let report = dir.path().join("report");
    let verify = |extra: &[&str]| {
        let o = emu
            .command(&db)
            .args(["--json", "verify", "--config", c, "--sqlite"])
            .arg(emu.d1_file("db1"))
            .args(["--vectorize-index", "vi", "--queries", "0", "--report-dir"])
            .arg(&report)
            .args(extra)
            .output()
            .expect("verify");
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        (o.status.code(), r, text(&o))
    };
    let vectorize = |r: &serde_json::Value| -> serde_json::Value {
        r["tables"][0]["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["kind"] == "vectorize")
            .cloned()
            .unwrap_or_else(|| panic!("no Vectorize target: {r:#}"))
    };

    // Skipped vectors are differences by default: exit 1, each one named
    // with the column (and JSON path) and the rule it breaks.
    let (code, r, out) = verify(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(r["verdict"]["status"], "differences", "{r:#}");
    assert!(r["verdict"]["summary"].as_str().expect("summary").contains("5 skipped"), "{r:#}");
    let t = vectorize(&r);
    assert_eq!(t["counts"], serde_json::json!({"skipped": 5}), "{t:#}");
    assert_eq!((t["source_rows"].as_u64(), t["target_rows"].as_u64()), (Some(10), Some(5)), "{t:#}");
    let reason = |key: &str| -> String {
        let d = t["differences"]
            .as_array()
            .expect("differences")
            .iter()
            .find(|d| d["key"] == key)
            .unwrap_or_else(|| panic!("{key} not listed: {t:#}"));
        assert_eq!(d["kind"], "skipped", "{d:#}");
        d["reason"].as_str().expect("a reason").to_string()
    };
    assert_eq!(reason("id=dims1"), "column embedding: has 4 dimensions; the index has 3");
    let deep = reason("id=deep1");
    assert!(deep.starts_with("column meta, path meta.loc:"), "{deep}");
    assert!(deep.contains("one level"), "{deep}");
    assert!(reason("id=deep3").starts_with("column meta, path meta.pdf:"));
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    assert!(md.contains("| skipped | 5 |"), "{md}");
    assert!(md.contains("column meta, path meta.loc:"), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("data-kind=\"skipped\""), "{html}");
    assert_schema("verify-report", &[&report.join("report.json")]);

    // Accepted on purpose: exit 0, but the verdict still says so.
    let (code, r, out) = verify(&["--accept-skipped"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["verdict"]["status"], "consistent_except_skipped", "{r:#}");
    assert!(r["verdict"]["summary"].as_str().expect("summary").contains("5 skipped"), "{r:#}");
    assert_eq!(vectorize(&r)["counts"], serde_json::json!({"skipped": 5}));
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("data-status=\"consistent_except_skipped\""), "{html}");

    // A vector deleted behind pgflare's back is missing, whatever the flag
    // (the load's sync checkpoint is in D1: the load saw these rows, so they
    // are not pending sync).
    let d1 = rusqlite::Connection::open(emu.d1_file("db1")).expect("D1 file");
    let checkpoints: i64 = d1
        .query_row("SELECT count(*) FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .expect("checkpoint count");
    assert_eq!(checkpoints, 1, "the load wrote its sync checkpoint");
    drop(d1);
    block_on(async {
        let v = emu.vectorize("vi");
        let t = v.delete_by_ids("behind pgflare's back", &["ok2".to_string()]).await.expect("delete");
        let quiet = |_: &str| {};
        v.wait_applied(t.expect("a write"), std::time::Duration::from_secs(30), &quiet)
            .await
            .expect("applied");
    });
    let (code, r, out) = verify(&["--accept-skipped"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(r["verdict"]["status"], "differences", "{r:#}");
    let t = vectorize(&r);
    assert_eq!(t["counts"], serde_json::json!({"skipped": 5, "missing": 1}), "{t:#}");
    assert_eq!(t["pending_sync"].as_u64().unwrap_or(0), 0, "{t:#}");
    assert!(
        t["differences"]
            .as_array()
            .expect("d")
            .iter()
            .any(|d| d["kind"] == "missing" && d["key"] == "id=ok2"),
        "{t:#}"
    );
}
