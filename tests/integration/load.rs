//! `pgflare load` end to end: seeded Postgres (hard rows included) into the
//! `files` and `sqlite` targets, checked row by row against the source by
//! independent readers (Python's sqlite3 and psycopg), resumption from a
//! partly finished state, and the dry-run plan.

use std::path::Path;

use crate::common::*;

fn load(db: &TestDb, state: &Path, args: &[&str]) -> serde_json::Value {
    let mut all =
        vec!["--json", "load", "--state-dir", state.to_str().expect("path"), "--partition-mib", "1"];
    all.extend_from_slice(args);
    ok_json(pgflare(db, &all))
}

#[test]
fn load_to_sqlite_equals_the_source_and_a_rerun_loads_nothing() {
    let db = TestDb::new("loadsqlite");
    db.seed(600, 16);
    let dir = temp_dir("loadsqlite");
    let (state, sqlite) = (dir.path().join("state"), dir.path().join("d1.sqlite"));
    let s = load(&db, &state, &["--target", "sqlite", "--sqlite", sqlite.to_str().expect("p")]);
    assert_eq!(s["complete"], true);
    let source_rows: u64 = db
        .query_one("SELECT ((SELECT count(*) FROM chunks) + (SELECT count(*) FROM documents))::text")
        .parse()
        .expect("n");
    assert_eq!(s["rows_this_run"].as_u64(), Some(source_rows));
    let (same, report) = compare_d1(&db, &sqlite, &["documents", "chunks"]);
    assert!(same, "{report:#}");
    assert_eq!(
        report["chunks"]["d1_rows"].as_u64(),
        Some(db.query_one("SELECT count(*)::text FROM chunks").parse().expect("n"))
    );

    // The checker itself must see a difference when there is one.
    let tampered = dir.path().join("tampered.sqlite");
    std::fs::copy(&sqlite, &tampered).expect("copy");
    let c = rusqlite::Connection::open(&tampered).expect("open");
    c.execute(
        "UPDATE chunks SET content = content || '!' WHERE id = '00000000-0000-4000-8000-000000000003'",
        [],
    )
    .expect("tamper");
    drop(c);
    let (same, report) = compare_d1(&db, &tampered, &["chunks"]);
    assert!(!same);
    assert_eq!(report["chunks"]["differences"][0]["key"], "00000000-0000-4000-8000-000000000003");
    assert_eq!(report["chunks"]["differences"][0]["column"], "content");

    // Finished: a second run writes nothing.
    let again = load(&db, &state, &["--target", "sqlite", "--sqlite", sqlite.to_str().expect("p")]);
    assert_eq!(again["rows_this_run"], 0, "{again:#}");
    assert_eq!(again["resumed"], true);
}

#[test]
fn a_load_resumes_with_only_the_ranges_not_confirmed() {
    let db = TestDb::new("loadresume");
    db.seed(1500, 16);
    let dir = temp_dir("loadresume");
    let (state, sqlite) = (dir.path().join("state"), dir.path().join("d1.sqlite"));
    let args = ["--target", "sqlite", "--sqlite", sqlite.to_str().expect("p")];
    load(&db, &state, &args);
    // Pretend the run died before confirming the last chunks range: its
    // rows are gone from the target and its range is not done.
    let file = load_state_file(&state).expect("a state file");
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    let chunks = st["tables"]
        .as_array_mut()
        .expect("tables")
        .iter_mut()
        .find(|t| t["table"] == "public.chunks")
        .expect("chunks");
    let parts = chunks["partitions"].as_array_mut().expect("partitions");
    assert!(parts.len() >= 2, "want several ranges, got {}", parts.len());
    let last = parts.last_mut().expect("last");
    let lower = last["range"]["lower"].as_str().expect("lower bound").to_string();
    let lost_rows = last["rows"].as_u64().expect("rows");
    last["done"] = serde_json::Value::Bool(false);
    st["complete"] = serde_json::Value::Bool(false);
    std::fs::write(&file, serde_json::to_vec(&st).expect("json")).expect("write");
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    // The bound is a Postgres literal such as '…'::uuid: compare as text.
    let lower_text = lower.split("::").next().expect("literal").trim_matches('\'').to_string();
    let deleted = c.execute("DELETE FROM chunks WHERE id >= ?1", [&lower_text]).expect("delete");
    assert_eq!(deleted as u64, lost_rows);
    drop(c);

    let s = load(&db, &state, &args);
    assert_eq!(s["resumed"], true);
    assert_eq!(s["rows_this_run"].as_u64(), Some(lost_rows), "{s:#}");
    let skipped: u64 =
        s["tables"].as_array().expect("t").iter().map(|t| t["partitions_skipped"].as_u64().expect("n")).sum();
    let total: u64 =
        s["tables"].as_array().expect("t").iter().map(|t| t["partitions"].as_u64().expect("n")).sum();
    assert_eq!(skipped, total - 1);
    let (same, report) = compare_d1(&db, &sqlite, &["documents", "chunks"]);
    assert!(same, "{report:#}");
}

#[test]
fn load_to_files_applies_in_manifest_order_and_is_deterministic() {
    let db = TestDb::new("loadfiles");
    db.seed(800, 16);
    let dir = temp_dir("loadfiles");
    let state = dir.path().join("state");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    load(&db, &state, &["--target", "files", "--out", a.to_str().expect("p"), "--file-size-mib", "1"]);
    // A stale file from some earlier load must not survive a fresh one.
    std::fs::create_dir_all(b.join("chunks")).expect("mkdir");
    std::fs::write(b.join("chunks/part-00099-000.sql"), "DELETE FROM chunks;\n").expect("stale file");
    load(&db, &state, &["--target", "files", "--out", b.to_str().expect("p"), "--file-size-mib", "1"]);
    assert!(!b.join("chunks/part-00099-000.sql").exists(), "stale SQL file removed");
    let manifest = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("manifest.json")).expect("manifest")).expect("json")
    };
    let (ma, mb) = (manifest(&a), manifest(&b));
    assert_schema("d1-files-manifest", &[&a.join("manifest.json")]);
    assert_eq!(ma["tables"], mb["tables"], "same data, same files, same hashes");
    let order: Vec<&str> =
        ma["apply_order"].as_array().expect("order").iter().map(|v| v.as_str().expect("s")).collect();
    assert_eq!(order[0], "schema.sql");
    let first_chunk = order.iter().position(|p| p.starts_with("chunks/")).expect("chunks files");
    let last_doc = order.iter().rposition(|p| p.starts_with("documents/")).expect("documents files");
    assert!(last_doc < first_chunk, "parents before children: {order:?}");

    let sqlite = dir.path().join("applied.sqlite");
    let v: serde_json::Value = serde_json::from_str(&apply_d1_sql(&sqlite, &a)).expect("json");
    assert!(v["max_statement_bytes"].as_u64().expect("max") <= 100_000);
    assert_eq!(v["transaction_statements"], 0);
    let (same, report) = compare_d1(&db, &sqlite, &["documents", "chunks"]);
    assert!(same, "{report:#}");
}

#[test]
fn dry_run_plans_without_writing() {
    let db = TestDb::new("loaddry");
    db.seed(300, 8);
    let dir = temp_dir("loaddry");
    let (state, sqlite) = (dir.path().join("state"), dir.path().join("d1.sqlite"));
    let s = load(&db, &state, &["--target", "sqlite", "--sqlite", sqlite.to_str().expect("p"), "--dry-run"]);
    let plan = s["plan"].as_array().expect("plan");
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0]["table"], "public.documents");
    assert_eq!(plan[1]["table"], "public.chunks");
    assert!(plan[1]["wave"].as_u64() > plan[0]["wave"].as_u64());
    assert!(s["estimated_d1_bytes"].as_u64().expect("n") > 0);
    assert!(!sqlite.exists(), "a dry run creates no target");
    assert!(!state.exists(), "a dry run keeps no state");

    let out = dir.path().join("files");
    let s = load(&db, &state, &["--target", "files", "--out", out.to_str().expect("p"), "--dry-run"]);
    assert!(s["plan"][1]["estimated_files"].as_u64().expect("n") >= 1, "{s:#}");
    assert!(!out.exists(), "a dry run creates no folder");
}

#[test]
fn a_configured_mapping_renames_and_leaves_out_columns_and_pins_the_resume() {
    let db = TestDb::new("loadmap");
    db.seed(300, 8);
    let dir = temp_dir("loadmap");
    let (state, sqlite) = (dir.path().join("state"), dir.path().join("d1.sqlite"));
    let config = dir.path().join("pgflare.toml");
    let toml = r#"
[source]
schema = "public"

[[tables]]
name = "documents"

[[tables]]
name = "chunks"
d1_table = "passages"
d1_columns = ["id", "document_id", "chunk_index", "content", "tags"]
d1_names = { content = "body" }
vector = "embedding"
vector_metadata = ["document_id"]
"#;
    std::fs::write(&config, toml).expect("write config");
    let sq = sqlite.to_str().expect("p");
    let cfg = config.to_str().expect("p");
    load(&db, &state, &["--config", cfg, "--target", "sqlite", "--sqlite", sq]);
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    let cols: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('passages') ORDER BY cid")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(cols, ["id", "document_id", "chunk_index", "body", "tags"]);
    drop(c);
    let (same, report) = compare_d1(
        &db,
        &sqlite,
        &["documents", "chunks:passages:content=body:-embedding,metadata,token_count,created_at,updated_at"],
    );
    assert!(same, "{report:#}");

    // Another mapping for the same target is refused until --restart.
    std::fs::write(&config, toml.replace("content = \"body\"", "content = \"text\"")).expect("write");
    let mut args = vec!["--json", "load", "--state-dir", state.to_str().expect("p"), "--config", cfg];
    args.extend_from_slice(&["--target", "sqlite", "--sqlite", sq]);
    // Mark the load unfinished so the state is consulted.
    let file = load_state_file(&state).expect("state file");
    let t =
        std::fs::read_to_string(&file).expect("read").replace("\"complete\": true", "\"complete\": false");
    std::fs::write(&file, t).expect("write");
    let o = pgflare(&db, &args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--restart"), "{}", text(&o));
}

#[test]
fn a_table_without_a_key_is_refused_with_what_to_do() {
    let db = TestDb::new("loadnokey");
    db.exec("CREATE TABLE events (at timestamptz, note text); INSERT INTO events VALUES (now(), 'x');");
    let dir = temp_dir("loadnokey");
    let sqlite = dir.path().join("d1.sqlite");
    let state = dir.path().join("state");
    let o = pgflare(
        &db,
        &[
            "load",
            "--state-dir",
            state.to_str().expect("p"),
            "--target",
            "sqlite",
            "--sqlite",
            sqlite.to_str().expect("p"),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("public.events") && err.contains("primary_key"), "{err}");
    assert!(!sqlite.exists(), "nothing was written");
}

/// Found by scripts/chaos.sh: a load killed after its last range but before
/// it wrote the sync checkpoint into D1 left a target that `sync` refused
/// forever ("holds no sync checkpoint"): the state file already said
/// "complete", so every rerun returned early. Here the hand-over fails
/// (a trigger in the D1 file refuses the checkpoint row, as a kill or a
/// network failure at that moment would); once it is gone, the rerun must
/// write the checkpoint.
#[test]
fn a_load_whose_sync_checkpoint_was_not_written_writes_it_when_run_again() {
    let db = TestDb::new("loadhandover");
    db.seed(50, 4);
    let dir = temp_dir("loadhandover");
    let (state, sqlite) = (dir.path().join("state"), dir.path().join("d1.sqlite"));
    let d1 = || rusqlite::Connection::open(&sqlite).expect("open");
    d1().execute_batch(
        "CREATE TABLE pgflare_sync_state (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);
         CREATE TRIGGER no_checkpoint BEFORE INSERT ON pgflare_sync_state WHEN NEW.name = 'checkpoint'
         BEGIN SELECT RAISE(ABORT, 'injected: the checkpoint cannot be written'); END;",
    )
    .expect("inject");
    let args = ["--target", "sqlite", "--sqlite", sqlite.to_str().expect("p")];
    let mut all = vec!["--json", "load", "--state-dir", state.to_str().expect("p"), "--partition-mib", "1"];
    all.extend_from_slice(&args);
    let o = pgflare(&db, &all);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("injected"), "{}", text(&o));
    d1().execute_batch("DROP TRIGGER no_checkpoint").expect("drop trigger");
    let again = load(&db, &state, &args);
    assert_eq!(again["rows_this_run"], 0, "every range was done: {again:#}");
    assert!(again["sync_checkpoint"].as_str().unwrap_or("").contains("pgflare_sync_state"), "{again:#}");
    let n: i64 = d1()
        .query_row("SELECT count(*) FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1, "the rerun wrote the checkpoint the first run could not");
}
