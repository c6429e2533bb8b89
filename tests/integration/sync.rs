//! `pgflare sync` end to end, against the real Postgres and the emulator's
//! D1 and Vectorize: inserts, the three kinds of update, soft and hard
//! deletes and NULLed embeddings reach both targets (verify passes) with
//! vectors re-sent only when they changed; a late commit with an old
//! timestamp is picked up; SIGTERM stops cleanly, SIGKILL loses nothing;
//! a second runner is refused with its own exit code; the state lives in
//! D1, not in the working folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

pub(crate) struct Setup {
    pub(crate) db: TestDb,
    pub(crate) emu: Emulator,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
}

/// Seeds, adds a soft-delete column, writes the config with `init`, and
/// loads D1 and Vectorize through the emulator.
fn setup(tag: &str, chunks: usize, dims: usize, emu_flags: &[&str], vectorize: &str) -> Setup {
    setup_with(tag, chunks, dims, emu_flags, vectorize, "")
}

/// [`setup`], running `extra_sql` on the source after seeding (more
/// tables, which `init` then maps too).
pub(crate) fn setup_with(
    tag: &str,
    chunks: usize,
    dims: usize,
    emu_flags: &[&str],
    vectorize: &str,
    extra_sql: &str,
) -> Setup {
    let s = setup_unloaded(tag, chunks, dims, emu_flags, vectorize, extra_sql);
    s.load(&[]);
    s
}

/// [`setup_with`] without the load: D1 and Vectorize are empty.
pub(crate) fn setup_unloaded(
    tag: &str,
    chunks: usize,
    dims: usize,
    emu_flags: &[&str],
    vectorize: &str,
    extra_sql: &str,
) -> Setup {
    let db = TestDb::new(tag);
    db.seed(chunks, dims);
    db.exec("ALTER TABLE chunks ADD COLUMN deleted_at timestamptz");
    if !extra_sql.is_empty() {
        db.exec(extra_sql);
    }
    let emu = Emulator::start(emu_flags);
    let dir = temp_dir(tag);
    let config = dir.path().join("pgflare.toml");
    init_config(&db, dir.path());
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replacen("name = \"chunks\"", "name = \"chunks\"\nsoft_delete = \"deleted_at\"", 1);
    let text = text.replace("\n[vectorize]\n", &format!("\n[vectorize]\n{vectorize}\n"));
    assert!(text.contains("soft_delete"), "{text}");
    std::fs::write(&config, text).expect("write config");
    Setup { db, emu, dir, config }
}

impl Setup {
    /// Loads D1 and Vectorize through the emulator (`extra`: more flags).
    pub(crate) fn load(&self, extra: &[&str]) -> serde_json::Value {
        let state = self.dir.path().join("load-state");
        let o = self
            .emu
            .command(&self.db)
            .args(["--json", "load", "--config", self.config.to_str().expect("p"), "--target", "api"])
            .args(["--d1-database-id", "db1", "--vectorize-index", "vi", "--create-index"])
            .args(["--partition-mib", "1", "--state-dir", state.to_str().expect("p")])
            .args(extra)
            .output()
            .expect("load");
        let s: serde_json::Value = ok_json(o);
        assert!(s["sync_checkpoint"].as_str().unwrap_or("").contains("pgflare_sync_state"), "{s:#}");
        s
    }
}

impl Setup {
    fn sync_command(&self, work: &Path, extra: &[&str]) -> Command {
        let mut c = self.emu.command(&self.db);
        c.args(["--json", "sync", "--config", self.config.to_str().expect("p"), "--target", "api"])
            .args(["--d1-database-id", "db1", "--vectorize-index", "vi", "--partition-mib", "1"])
            .args(["--work-dir", work.to_str().expect("p")])
            .args(extra)
            .current_dir(work);
        c
    }

    /// One `sync --once` from a fresh working folder (the state is in D1).
    pub(crate) fn sync(&self, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let work = tempfile::tempdir_in(self.dir.path()).expect("work dir");
        let o = self.sync_command(work.path(), &["--once"]).args(extra).output().expect("sync");
        outcome(o)
    }

    pub(crate) fn verify(&self) -> (Option<i32>, serde_json::Value, String) {
        let report = self.dir.path().join("report");
        let o = self
            .emu
            .command(&self.db)
            .args(["--json", "verify", "--config", self.config.to_str().expect("p")])
            .args(["--sqlite", self.emu.d1_file("db1").to_str().expect("p"), "--vectorize-index", "vi"])
            .args(["--report-dir", report.to_str().expect("p"), "--queries", "3"])
            .output()
            .expect("verify");
        outcome(o)
    }

    pub(crate) fn d1(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.emu.d1_file("db1")).expect("open D1 file")
    }

    /// The ids of `n` chunks with a vector, in a fixed order.
    fn ids(&self, n: usize) -> Vec<String> {
        let list = self.db.query_one(&format!(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM chunks \
             WHERE embedding IS NOT NULL ORDER BY id LIMIT {n}) s"
        ));
        list.split(',').map(str::to_string).collect()
    }
}

fn chunks(s: &serde_json::Value) -> &serde_json::Value {
    table(s, "public.chunks")
}

pub(crate) fn assert_consistent(s: &Setup) {
    let (code, r, out) = s.verify();
    assert_eq!(
        code,
        Some(0),
        "verify after sync: {}\n{out}",
        serde_json::to_string_pretty(&r["verdict"]).unwrap_or_default()
    );
}

#[test]
fn sync_carries_every_kind_of_change_and_resends_only_changed_vectors() {
    // A transaction of another database runs across the seed and the load
    // (as when tests run in parallel): the counts below stay exact.
    let other = OpenTransaction::begin();
    let s = setup("synckinds", 300, 8, &["--vectorize-delay-ms", "200"], "");
    drop(other);
    let ids = s.ids(8);
    let (text_only, embedding_only, metadata_only, hard, soft, nulled) =
        (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4], &ids[5]);
    s.db.exec(&format!(
        "INSERT INTO chunks (id, document_id, chunk_index, content, token_count, tags, metadata, embedding, created_at, updated_at) \
         SELECT gen_random_uuid(), document_id, chunk_index + 10000 + n, 'new chunk ' || n, 3, '{{a}}', '{{\"k\": 1}}', embedding, now(), now() \
         FROM chunks, generate_series(1, 3) n WHERE id = '{text_only}';
         UPDATE chunks SET content = content || ' (edited)' WHERE id = '{text_only}';
         UPDATE chunks SET embedding = (SELECT embedding FROM chunks WHERE id = '{metadata_only}'), updated_at = now() WHERE id = '{embedding_only}';
         UPDATE chunks SET token_count = token_count + 1, updated_at = now() WHERE id = '{metadata_only}';
         DELETE FROM chunks WHERE id = '{hard}';
         UPDATE chunks SET deleted_at = now() WHERE id = '{soft}';
         UPDATE chunks SET embedding = NULL, updated_at = now() WHERE id = '{nulled}';"
    ));
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    let c = chunks(&r);
    // Rows: 3 inserted + 4 updated, nothing the load's snapshot saw.
    assert_eq!(c["rows_upserted"].as_u64(), Some(7), "{r:#}");
    assert_eq!(
        (c["rows_soft_deleted"].as_u64(), c["rows_hard_deleted"].as_u64()),
        (Some(1), Some(1)),
        "{r:#}"
    );
    // Vectors: the 3 new, the new embedding and the new metadata; the
    // text-only edit (content is not metadata; init puts updated_at in
    // the metadata, so this edit leaves it) is unchanged; soft, hard and
    // NULLed are deleted.
    let v = &c["vectors"];
    assert_eq!(v["sent"].as_u64(), Some(5), "{r:#}");
    assert_eq!(v["unchanged"].as_u64(), Some(1), "{r:#}");
    assert_eq!(v["deleted"].as_u64(), Some(3), "{r:#}");
    assert_eq!(r["complete"], true);
    assert!(r["lag_seconds"].as_f64().expect("lag") >= 0.0);
    let d1 = s.d1();
    let content: String = d1
        .query_row("SELECT content FROM chunks WHERE id = ?1", [text_only], |r| r.get(0))
        .expect("edited row");
    assert!(content.ends_with(" (edited)"), "{content}");
    for gone in [hard, soft] {
        let n: i64 =
            d1.query_row("SELECT count(*) FROM chunks WHERE id = ?1", [gone], |r| r.get(0)).expect("n");
        assert_eq!(n, 0, "{gone} is gone from D1");
    }
    assert_consistent(&s);

    // The checkpoint is in D1, versioned, and at the new snapshot; it and
    // the summary match their published schemas.
    let cp: String = d1
        .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .expect("checkpoint row");
    let files = [("sync-checkpoint", cp.clone()), ("sync-summary", r.to_string())];
    for (schema, doc) in files {
        assert_doc_schema(schema, &doc, s.dir.path());
    }
    let cp: serde_json::Value = serde_json::from_str(&cp).expect("checkpoint json");
    assert_eq!(cp["format"], "pgflare-sync-state-v1");
    assert_eq!(cp["position"]["kind"], "snapshot");
    assert_eq!(cp["runs"], 1);
    assert!(cp.get("in_progress").is_none(), "{cp:#}");

    // Nothing changed: nothing is sent, a second fresh folder continues.
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(chunks(&r)["vectors"]["sent"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["rows_deleted"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["run"].as_u64(), Some(2), "{r:#}");
    // The hard-delete sweep compares with the key buckets saved by the last
    // run: no bucket differs, none is read from D1.
    assert_eq!(chunks(&r)["sweep"]["buckets_differing"].as_u64(), Some(0), "{r:#}");

    // One more delete: exactly its bucket is read back and the row goes.
    let victim = &s.ids(8)[6];
    s.db.exec(&format!("DELETE FROM chunks WHERE id = '{victim}'"));
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    let sw = &chunks(&r)["sweep"];
    assert_eq!(
        (sw["buckets_differing"].as_u64(), sw["deleted"]["rows"].as_u64()),
        (Some(1), Some(1)),
        "{r:#}"
    );
    assert!(sw["buckets"].as_u64().expect("n") > 100, "uuid keys spread over prefix buckets: {r:#}");
    assert_consistent(&s);
}

#[test]
fn a_late_commit_with_an_old_timestamp_is_picked_up_by_the_next_run() {
    let s = setup("synclate", 200, 4, &[], "");
    let id = s.ids(1).remove(0);
    // A transaction that starts before a run, stamps an hour-old
    // updated_at (inside a savepoint: the row carries a subtransaction id,
    // which no snapshot lists as in progress), and commits after the run.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let mut late =
        rt.block_on(<sqlx::PgConnection as sqlx::Connection>::connect(&s.db.url)).expect("connect");
    rt.block_on(
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "BEGIN; SAVEPOINT s; UPDATE chunks SET content = 'late commit', updated_at = now() - interval '1 hour' \
             WHERE id = '{id}'; RELEASE SAVEPOINT s"
        )))
        .execute(&mut late),
    )
    .expect("open the long transaction");
    // A later transaction commits first: the run's snapshot then has the
    // subtransaction's id below its xmax.
    s.db.exec("SELECT pg_current_xact_id()");
    let (code, _, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    rt.block_on(sqlx::raw_sql("COMMIT").execute(&mut late)).expect("commit");
    // Freezing does not hide it either (the raw xmin stays readable).
    s.db.exec("VACUUM (FREEZE) chunks");
    // Before the next run, verify counts the row as pending sync, not as a
    // difference (D1 still has the old content, Vectorize the old metadata).
    let (code, r, out) = s.verify();
    assert_eq!(code, Some(0), "pending rows are not failures: {out}");
    let targets = r["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "public.chunks")
        .expect("chunks")["targets"]
        .as_array()
        .expect("targets")
        .clone();
    let pending: Vec<u64> = targets.iter().map(|t| t["pending_sync"].as_u64().unwrap_or(0)).collect();
    assert_eq!(pending, vec![1, 1], "D1 and Vectorize each have the late row pending: {r:#}");
    let (code, _, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    let content: String =
        s.d1().query_row("SELECT content FROM chunks WHERE id = ?1", [&id], |r| r.get(0)).expect("row");
    assert_eq!(content, "late commit");
    assert_consistent(&s);
}

/// Waits until `f` holds, for at most `secs`.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// The checkpoint, if D1 has one.
fn checkpoint(s: &Setup) -> Option<serde_json::Value> {
    let d1 = s.d1();
    let t: String = d1
        .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .ok()?;
    serde_json::from_str(&t).ok()
}

/// Whether a stopped run's range finished (its horizon moved past the position).
fn a_range_finished(s: &Setup) -> bool {
    let Some(cp) = checkpoint(s) else { return false };
    let pos = cp["position"]["xmin"].as_u64().unwrap_or(u64::MAX);
    cp["in_progress"]["tables"].as_object().is_some_and(|t| {
        t.values().any(|p| p["horizon"].as_array().is_some_and(|h| h.iter().any(|x| x.as_u64() > Some(pos))))
    })
}

#[test]
fn sigterm_stops_cleanly_sigkill_loses_nothing_and_a_second_runner_is_refused() {
    // Slow writes: 150 ms per request, 50 vectors per request, mutations
    // applied after 300 ms; many small ranges.
    let s = setup(
        "synckill",
        1500,
        32,
        &["--latency-ms", "150", "--vectorize-delay-ms", "300"],
        "vectors_per_request = 50",
    );
    let change_all = |round: u32| {
        s.db.exec(&format!(
            "UPDATE chunks SET content = content || ' r{round}', token_count = token_count + 1, updated_at = now()"
        ))
    };
    change_all(1);
    let work = tempfile::tempdir_in(s.dir.path()).expect("work");
    let first = s.sync_command(work.path(), &["--once"]).spawn().expect("sync");
    assert!(wait_for(120, || a_range_finished(&s)), "a range was recorded");

    // A second runner meanwhile: refused with exit code 3, naming the holder.
    let (code, _, out) = s.sync(&[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("held by pgflare sync on host") && out.contains("pid"), "{out}");

    // SIGTERM: the ranges in flight finish, are recorded, exit 0.
    let pid = first.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let o = first.wait_with_output().expect("wait");
    let (code, r, out) = outcome(o);
    assert_eq!(code, Some(0), "{out}");
    if r["complete"] == false {
        assert!(
            checkpoint(&s).expect("checkpoint")["in_progress"].is_object(),
            "the stopped run is recorded"
        );
    }

    // SIGKILL in the middle of the next run (with more changes).
    change_all(2);
    let mut second = s.sync_command(work.path(), &["--once"]).spawn().expect("sync");
    assert!(wait_for(120, || a_range_finished(&s)), "a range was recorded");
    second.kill().expect("SIGKILL");
    let _ = second.wait();

    // The rerun takes over the dead runner's lease (same host, its pid
    // gone) and continues its ranges.
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["resumed"], true, "{r:#}");
    assert_eq!(r["complete"], true, "{r:#}");
    assert_consistent(&s);
}

#[test]
fn the_sqlite_target_syncs_on_a_schedule_and_stops_on_sigterm() {
    let db = TestDb::new("syncsqlite");
    db.seed(250, 4);
    let dir = temp_dir("syncsqlite");
    let sqlite = dir.path().join("d1.sqlite");
    let (d1, state) = (sqlite.to_str().expect("p"), dir.path().join("state"));
    ok(pgflare(
        &db,
        &["load", "--target", "sqlite", "--sqlite", d1, "--state-dir", state.to_str().expect("p")],
    ));
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(&sqlite).expect("open").query_row(sql, [], |r| r.get(0)).expect("count")
    };
    let n = count("SELECT count(*) FROM chunks");
    // One insert, one hard delete of a document (its chunks cascade in the source).
    db.exec(
        "INSERT INTO documents SELECT gen_random_uuid(), 'https://example.com/new', 'new', 'en', '{}', '{}', now(), now();
         DELETE FROM documents WHERE id = (SELECT document_id FROM chunks GROUP BY document_id ORDER BY count(*) DESC, document_id LIMIT 1);",
    );
    let gone: i64 = n - db.query_one("SELECT count(*)::text FROM chunks").parse::<i64>().expect("n");
    assert!(gone > 0);
    let summary = dir.path().join("last-sync.json");
    let child = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["sync", "--target", "sqlite", "--sqlite", d1, "--every", "1s", "--jitter", "0"])
        .args(["--summary", summary.to_str().expect("p"), "--work-dir", dir.path().to_str().expect("p")])
        .env("DATABASE_URL", &db.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sync --every");
    // Two runs at least, then SIGTERM: exit 0.
    let second_run = || {
        std::fs::read_to_string(&summary)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|s| s["run"].as_u64() >= Some(2))
    };
    assert!(wait_for(60, second_run), "a second scheduled run");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("sync run 1") && out.contains("sync run 2"), "{out}");
    assert_eq!(count("SELECT count(*) FROM chunks"), n - gone);
    assert_eq!(count("SELECT count(*) FROM documents WHERE source_url = 'https://example.com/new'"), 1);
    let o = pgflare(
        &db,
        &["--json", "verify", "--sqlite", d1, "--report-dir", dir.path().join("r").to_str().expect("p")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn the_files_target_writes_each_run_as_files_that_apply_in_order() {
    let db = TestDb::new("syncfiles");
    // A transaction of another database runs from before the seed until
    // after the load, as when tests run in parallel: the load's snapshot
    // has an xmin below the seed's rows, yet it saw them.
    let other = OpenTransaction::begin();
    db.seed(200, 4);
    db.exec("ALTER TABLE chunks ADD COLUMN deleted_at timestamptz");
    let dir = temp_dir("syncfiles");
    let (config, out, state) =
        (dir.path().join("pgflare.toml"), dir.path().join("out"), dir.path().join("state"));
    init_config(&db, dir.path());
    let toml = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        toml.replacen("name = \"chunks\"", "name = \"chunks\"\nsoft_delete = \"deleted_at\"", 1),
    )
    .expect("write");
    let (c, o, st) = (config.to_str().expect("p"), out.to_str().expect("p"), state.to_str().expect("p"));
    ok(pgflare(&db, &["load", "--config", c, "--target", "files", "--out", o, "--state-dir", st]));
    drop(other);
    let ids = db.query_one(
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 2) s",
    );
    let (edited, soft) = ids.split_once(',').expect("two ids");
    db.exec(&format!(
        "UPDATE chunks SET content = 'edited', token_count = 99, updated_at = now() WHERE id = '{edited}';
         UPDATE chunks SET deleted_at = now() WHERE id = '{soft}';"
    ));
    let s: serde_json::Value = ok_json(pgflare(
        &db,
        &["--json", "sync", "--config", c, "--target", "files", "--out", o, "--work-dir", st, "--once"],
    ));
    assert_eq!(chunks(&s)["rows_soft_deleted"].as_u64(), Some(1), "{s:#}");
    let run = out.join("sync").join("000001");
    let deleted_ids = std::fs::read_to_string(run.join("vectorize/deleted-ids.txt")).expect("deleted ids");
    // Exactly the soft delete: the load's snapshot saw every seeded row, so
    // a transaction of another database running across the load (held open
    // above) does not make the run send them again (nor list their NULL
    // embeddings for deletion).
    assert_eq!(deleted_ids.lines().collect::<Vec<_>>(), vec![soft], "{s:#}");
    assert_eq!(chunks(&s)["rows_upserted"].as_u64(), Some(1), "only the edited row: {s:#}");
    let ndjson: String = std::fs::read_dir(run.join("vectorize/chunks"))
        .expect("ndjson folder")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    assert!(ndjson.contains(edited), "the edited row's vector (its metadata changed) is in the run's NDJSON");
    // An independent reader applies the load's files, then the run's, in
    // the manifests' order: the result equals the source.
    let sqlite = dir.path().join("d1.sqlite");
    for folder in [&out, &run] {
        apply_d1_sql(&sqlite, folder);
    }
    let v = pgflare(
        &db,
        &[
            "--json",
            "verify",
            "--config",
            c,
            "--no-vectorize",
            "--sqlite",
            sqlite.to_str().expect("p"),
            "--report-dir",
            dir.path().join("r").to_str().expect("p"),
        ],
    );
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    // The state is a local file: a second run writes the next folder.
    ok(pgflare(&db, &["sync", "--config", c, "--target", "files", "--out", o, "--work-dir", st, "--once"]));
    assert!(out.join("sync").join("000002").join("manifest.json").is_file());
}
