//! `pgflare sync --follow` end to end, against the real Postgres (logical
//! replication through a slot) and the emulator's D1 and Vectorize: a
//! writer changes rows at a steady rate (inserts, text-only, vector-only
//! and metadata-only updates, soft and hard deletes, a long transaction
//! with an old `updated_at`) while the follower is SIGKILLed and
//! restarted; at the end `verify` is clean. TRUNCATE, ADD COLUMN and a
//! table without a replica identity stop it with their messages and write
//! nothing wrong.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::sync::{assert_consistent, setup_with, Setup};

/// Slot names are the cluster's: one per test process.
fn slot(tag: &str) -> String {
    format!("pgflare_{tag}_{}", std::process::id())
}

/// `PGFLARE_TEST_FOLLOW_UNLIMITED=1`: the emulator and the follower
/// without Cloudflare's request budget, to measure the follower's own lag
/// (BENCHMARKS.md); by default both keep Cloudflare's limit.
fn unlimited() -> bool {
    std::env::var("PGFLARE_TEST_FOLLOW_UNLIMITED").is_ok_and(|v| v == "1")
}

fn emulator_flags() -> &'static [&'static str] {
    if unlimited() {
        &["--rate-limit", "1000000/1"]
    } else {
        &[]
    }
}

fn follower(s: &Setup, work: &std::path::Path, slot: &str) -> Child {
    let mut c: Command = s.emu.command(&s.db);
    c.args(["--json", "sync", "--config", s.config.to_str().expect("p"), "--target", "api"])
        .args(["--d1-database-id", "db1", "--vectorize-index", "vi"])
        .args(["--work-dir", work.to_str().expect("p"), "--follow", "--slot", slot, "--status-every", "1s"])
        .current_dir(work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if unlimited() {
        c.args(["--rate-limit", "1000000/1"]);
    }
    c.spawn().expect("start the follower")
}

/// The D1 checkpoint's follow position, if any.
fn follow_lsn(s: &Setup) -> Option<u64> {
    let d1 = s.d1();
    let t: String = d1
        .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&t).ok()?;
    lsn(v["follow"]["lsn"].as_str()?)
}

fn lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until the follower's checkpoint reaches `end`; on failure shows
/// what the follower said.
fn caught_up(s: &Setup, mut child: Child, end: u64) -> Child {
    if !wait_for(120, || follow_lsn(s).is_some_and(|l| l >= end)) {
        let _ = child.kill();
        let o = child.wait_with_output().expect("wait");
        panic!(
            "the follower did not catch up to {end:X} (at {:?}): {}",
            follow_lsn(s).map(|l| format!("{l:X}")),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    child
}

/// Stops the follower with SIGTERM and returns its last JSON line (the
/// summary) and its stderr.
fn stop(mut child: Child) -> (serde_json::Value, String) {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let mut lines = Vec::new();
    if let Some(o) = child.stdout.take() {
        lines.extend(BufReader::new(o).lines().map_while(Result::ok));
    }
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "the follower failed: {err}");
    // Every line (statuses, then the summary) is in the documented form.
    let dir = tempfile::tempdir().expect("dir");
    let files: Vec<std::path::PathBuf> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let f = dir.path().join(format!("line{i}.json"));
            std::fs::write(&f, l).expect("write");
            f
        })
        .collect();
    if !files.is_empty() {
        assert_schema("follow-summary", &files.iter().map(|f| f.as_path()).collect::<Vec<_>>());
    }
    let out = lines.last().cloned().unwrap_or_default();
    (serde_json::from_str(&out).unwrap_or(serde_json::Value::Null), err)
}

/// One second of the writer's work: about `rate` rows in small
/// transactions of every kind.
fn write_second(url: &str, round: u32, rate: u32) {
    let n = (rate / 10).max(1); // ten kinds of statement per second
    let sql = format!(
        "BEGIN; INSERT INTO chunks (id, document_id, chunk_index, content, token_count, tags, metadata, embedding, created_at, updated_at) \
           SELECT gen_random_uuid(), d.id, 100000 + {round} * 1000 + g, 'new ' || g, 3, ARRAY['n'], '{{\"r\": {round}}}', \
                  (SELECT embedding FROM chunks WHERE embedding IS NOT NULL LIMIT 1), now(), now() \
           FROM (SELECT id FROM documents ORDER BY id LIMIT 1) d, generate_series(1, {n}) g; COMMIT;
         UPDATE chunks SET content = content || ' t{round}', updated_at = now() \
           WHERE id IN (SELECT id FROM chunks WHERE deleted_at IS NULL ORDER BY md5(id::text || '{round}a') LIMIT {n});
         UPDATE chunks SET embedding = (SELECT embedding FROM chunks c2 WHERE c2.id <> chunks.id AND c2.embedding IS NOT NULL LIMIT 1) \
           WHERE id IN (SELECT id FROM chunks WHERE deleted_at IS NULL ORDER BY md5(id::text || '{round}b') LIMIT {n});
         UPDATE chunks SET metadata = jsonb_build_object('round', {round}) \
           WHERE id IN (SELECT id FROM chunks WHERE deleted_at IS NULL ORDER BY md5(id::text || '{round}c') LIMIT {n});
         UPDATE chunks SET deleted_at = now() \
           WHERE id IN (SELECT id FROM chunks WHERE deleted_at IS NULL ORDER BY md5(id::text || '{round}d') LIMIT {n});
         DELETE FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY md5(id::text || '{round}e') LIMIT {n});
         UPDATE chunks SET id = gen_random_uuid() \
           WHERE id IN (SELECT id FROM chunks WHERE content NOT LIKE 'toasted%' ORDER BY md5(id::text || '{round}f') LIMIT 1);
         UPDATE chunks SET metadata = jsonb_build_object('toast', {round}) WHERE content LIKE 'toasted%';"
    );
    let url = url.to_string();
    block_on(async move {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.expect("write");
    });
}

#[test]
fn a_follower_keeps_up_with_a_steady_writer_through_sigkills_and_verify_is_clean() {
    let s = setup_with("follow", 3000, 16, emulator_flags(), "", "");
    // Values Postgres keeps out of line (TOAST): an update that leaves
    // them alone does not send them, and they must not become NULL.
    s.db.exec(
        "UPDATE chunks SET content = 'toasted ' || (SELECT string_agg(md5(g::text || random()::text), '') \
           FROM generate_series(1, 400) g) WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT 3)",
    );
    let work = tempfile::tempdir_in(s.dir.path()).expect("work");
    let mut child = follower(&s, work.path(), &slot("w"));
    assert!(wait_for(120, || follow_lsn(&s).is_some()), "the follower made its slot and handed over");

    // A long transaction with an old updated_at, open across kills.
    let long = {
        let url = s.db.url.clone();
        let id = s.db.query_one("SELECT id::text FROM chunks ORDER BY id LIMIT 1");
        std::thread::spawn(move || {
            block_on(async move {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
                let sql = format!(
                    "BEGIN; UPDATE chunks SET content = 'long transaction', updated_at = '2001-01-01' WHERE id = '{id}'"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.expect("begin");
                tokio::time::sleep(Duration::from_secs(25)).await;
                sqlx::raw_sql("COMMIT").execute(&mut c).await.expect("commit");
            })
        })
    };
    // A minute of writes: five kills in the first 35 s, then 25 s of
    // steady following, whose lag the last follower's summary reports.
    let seconds = 60u32;
    let kills = [4u32, 11, 19, 27, 33];
    for round in 0..seconds {
        let t = Instant::now();
        write_second(&s.db.url, round, 200);
        if kills.contains(&round) {
            if let Ok(Some(_)) = child.try_wait() {
                let o = child.wait_with_output().expect("wait");
                panic!("the follower ended by itself: {}", String::from_utf8_lossy(&o.stderr));
            }
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            child = follower(&s, work.path(), &slot("w"));
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    long.join().expect("the long transaction");
    let end = lsn(&s.db.query_one("SELECT pg_current_wal_lsn()::text")).expect("lsn");
    let child = caught_up(&s, child, end);
    let (summary, err) = stop(child);
    eprintln!("follower summary after the last restart: {summary:#}\n{err}");
    assert_eq!(summary["format"], "pgflare-follow-summary-v1", "{summary:#}");
    // The checkpoint with its follow position is in the documented form.
    let cp: String = s
        .d1()
        .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .expect("checkpoint");
    assert_doc_schema("sync-checkpoint", &cp, s.dir.path());
    let p95 = summary["lag"]["p95_seconds"].as_f64().expect("p95");
    eprintln!("LAG p95 {p95:.2} s over {} transactions", summary["lag"]["transactions"]);
    assert_consistent(&s);
    let content: String = s
        .d1()
        .query_row("SELECT content FROM chunks WHERE content = 'long transaction'", [], |r| r.get(0))
        .unwrap_or_default();
    let deleted =
        s.db.count("SELECT count(*) FROM chunks WHERE content = 'long transaction' AND deleted_at IS NULL");
    assert_eq!(content.is_empty(), deleted == 0, "the long transaction's row is where the source has it");
}

#[test]
fn truncate_add_column_and_a_table_without_replica_identity_stop_with_their_messages() {
    let s = setup_with("followstop", 200, 8, &[], "", "");
    let stop_slot = slot("s");
    let work = tempfile::tempdir_in(s.dir.path()).expect("work");

    // No replica identity: refused before a slot or publication exists.
    s.db.exec("ALTER TABLE chunks REPLICA IDENTITY NOTHING");
    let o = follower(&s, work.path(), &stop_slot).wait_with_output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("REPLICA IDENTITY NOTHING") && err.contains("public.chunks"),
        "{err}"
    );
    assert_eq!(
        s.db.count(&format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{stop_slot}'")),
        0
    );
    assert_eq!(s.db.count(&format!("SELECT count(*) FROM pg_publication WHERE pubname = '{stop_slot}'")), 0);
    s.db.exec("ALTER TABLE chunks REPLICA IDENTITY DEFAULT");

    // ADD COLUMN: what came before is applied, what came after is not.
    let child = follower(&s, work.path(), &stop_slot);
    assert!(wait_for(120, || follow_lsn(&s).is_some()), "handed over");
    s.db.exec("UPDATE chunks SET content = 'before the alter' WHERE id = (SELECT id FROM chunks ORDER BY id LIMIT 1)");
    s.db.exec("ALTER TABLE chunks ADD COLUMN lang text; UPDATE chunks SET content = 'after the alter' WHERE id = (SELECT id FROM chunks ORDER BY id OFFSET 1 LIMIT 1)");
    let o = child.wait_with_output().expect("the follower stops");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("public.chunks") && err.contains("column lang was added"), "{err}");
    let d1 = s.d1();
    let n = |text: &str| -> i64 {
        d1.query_row("SELECT count(*) FROM chunks WHERE content = ?1", [text], |r| r.get(0)).expect("count")
    };
    assert_eq!(n("before the alter"), 1);
    assert_eq!(n("after the alter"), 0);
    // Started again (pgflare.toml lists the columns D1 receives, and lang
    // is not among them: it stays out), it goes on from there.
    let child = follower(&s, work.path(), &stop_slot);
    assert!(wait_for(60, || n("after the alter") == 1), "the change after the ALTER arrives");
    let (summary, _) = stop(child);
    assert_eq!(summary["rows_upserted"], 1, "{summary:#}");
    drop(d1);

    // TRUNCATE (a database of its own): D1 keeps its rows.
    let s = setup_with("followtrunc", 200, 8, &[], "", "");
    let stop_slot = slot("t");
    let work = tempfile::tempdir_in(s.dir.path()).expect("work");
    let child = follower(&s, work.path(), &stop_slot);
    assert!(wait_for(120, || follow_lsn(&s).is_some()), "handed over");
    let d1 = s.d1();
    let before: i64 = d1.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0)).expect("count");
    s.db.exec("TRUNCATE chunks");
    let o = child.wait_with_output().expect("the follower stops");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("TRUNCATE of public.chunks") && err.contains("pgflare load"), "{err}");
    let after: i64 = d1.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0)).expect("count");
    assert_eq!(before, after, "nothing was deleted by the TRUNCATE");

    // --drop-slot removes both.
    let o = s
        .emu
        .command(&s.db)
        .args([
            "sync",
            "--config",
            s.config.to_str().expect("p"),
            "--target",
            "api",
            "--d1-database-id",
            "db1",
        ])
        .args(["--drop-slot", "--slot", &stop_slot])
        .output()
        .expect("drop");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout)
        .contains(&format!("dropped replication slot {stop_slot} and publication")));
    assert_eq!(
        s.db.count(&format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{stop_slot}'")),
        0
    );
}

#[test]
fn a_pooler_url_is_refused_before_connecting() {
    let dir = temp_dir("followpool");
    let o = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["sync", "--follow", "--target", "sqlite", "--sqlite", "x.sqlite"])
        .args([
            "--database-url",
            "postgres://postgres.abc:secret@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("pooler") && err.contains("direct connection"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn a_load_from_the_slots_snapshot_hands_over_to_the_follower_without_a_polling_run() {
    let s = crate::sync::setup_unloaded("followslot", 1500, 16, &[], "", "");
    let slot = slot("l");
    // Writes go on while the load reads from the slot's snapshot, and
    // while the follower starts.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (url, writing) = (s.db.url.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut round = 100;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                write_second(&url, round, 100);
                round += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let loaded = s.load(&["--slot", &slot]);
    assert!(loaded["complete"] == true, "{loaded:#}");
    let work = tempfile::tempdir_in(s.dir.path()).expect("work");
    let child = follower(&s, work.path(), &slot);
    std::thread::sleep(Duration::from_secs(8));
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    let end = lsn(&s.db.query_one("SELECT pg_current_wal_lsn()::text")).expect("lsn");
    let child = caught_up(&s, child, end);
    let (summary, err) = stop(child);
    assert!(summary["handover"].is_null(), "no polling run was needed: {summary:#}\n{err}");
    assert!(summary["transactions"].as_u64() > Some(0), "{summary:#}");
    assert_consistent(&s);
}

#[test]
fn literals_read_back_exactly_in_postgres_under_either_string_setting() {
    use proptest::strategy::{Strategy, ValueTree};
    let db = TestDb::new("literal");
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let texts = proptest::collection::vec("\\PC{0,40}|[\\\\'\"eE{}$ ]{0,12}", 300)
        .new_tree(&mut runner)
        .expect("strings")
        .current();
    for setting in ["on", "off"] {
        let mut sql = String::from("SELECT ARRAY[");
        for (i, t) in texts.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            pgflare::source::wal::rows::push_literal(&mut sql, t, "text");
        }
        sql.push_str("]::text[]");
        let url = db.url.clone();
        let got: Vec<String> = block_on(async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            let set = format!("SET standard_conforming_strings = {setting}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&mut c).await.expect("set");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.expect("literals")
        });
        assert_eq!(got, texts, "standard_conforming_strings = {setting}");
    }
}
