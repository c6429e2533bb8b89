//! State written by pgflare 0.1 keeps working after an upgrade. 0.1 hashed
//! Rust's `Debug` text of the mapping into the load state's and the sync
//! checkpoint's fingerprints; pgflare now hashes a stable encoding (`v2-`).
//! The 0.1 values below are written out by hand, from the text 0.1 hashed
//! for a one-table source with no pgflare.toml (every column under its own
//! name), so they do not come from the code under test: a resumed load and
//! a sync must accept them, and the next write replaces them with the
//! stable form. Another value is still refused.

use std::path::Path;

use crate::common::*;

/// blake3 of `text`, first 32 hex digits (0.1's form).
fn v01(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..32].to_string()
}

fn checkpoint_fingerprint(d1: &Path) -> String {
    let c = rusqlite::Connection::open(d1).expect("open d1");
    let t: String = c
        .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .expect("checkpoint");
    let v: serde_json::Value = serde_json::from_str(&t).expect("checkpoint json");
    v["fingerprint"].as_str().expect("fingerprint").to_string()
}

fn set_checkpoint_fingerprint(d1: &Path, fp: &str) {
    let c = rusqlite::Connection::open(d1).expect("open d1");
    let t: String = c
        .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .expect("checkpoint");
    let mut v: serde_json::Value = serde_json::from_str(&t).expect("checkpoint json");
    v["fingerprint"] = serde_json::Value::String(fp.into());
    c.execute("UPDATE pgflare_sync_state SET value = ?1 WHERE name = 'checkpoint'", [v.to_string()])
        .expect("update checkpoint");
}

/// The one load state file in `state`, as JSON, and its path.
fn load_state(state: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let path = std::fs::read_dir(state)
        .expect("state dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a load state file");
    let v = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("state json");
    (path, v)
}

#[test]
fn a_load_state_and_a_checkpoint_written_by_pgflare_0_1_are_accepted_and_rewritten() {
    let db = TestDb::new("upgrade01");
    db.exec(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'a'), (2, 'b');",
    );
    let dir = temp_dir("upgrade01");
    let d1 = dir.path().join("d1.sqlite");
    let state = dir.path().join("state");
    let load = ["load", "--target", "sqlite", "--sqlite", d1.to_str().expect("p")];
    let state_arg = ["--state-dir", state.to_str().expect("p")];
    ok(pgflare(&db, &[&load[..], &state_arg[..]].concat()));

    // The load state: 0.1 hashed the target, then per table
    // `\n{table}>{d1 table}:{columns:?}:{key:?}`.
    let (path, mut s) = load_state(&state);
    assert!(s["fingerprint"].as_str().is_some_and(|f| f.starts_with("v2-")), "{s}");
    let target = format!("sqlite:{}", std::path::absolute(&d1).expect("abs").display());
    let legacy_state =
        v01(&format!("{target}\npublic.notes>notes:[(\"id\", \"id\"), (\"body\", \"body\")]:[\"id\"]"));
    s["fingerprint"] = legacy_state.into();
    std::fs::write(&path, s.to_string()).expect("write state");
    let o = pgflare(&db, &[&load[..], &state_arg[..]].concat());
    assert_eq!(o.status.code(), Some(0), "a 0.1 load state resumes: {}", text(&o));
    assert!(text(&o).contains("already complete"), "{}", text(&o));

    // The checkpoint: 0.1 hashed `{table}>{d1 table}:{columns:?}:{key:?}:{soft delete:?}\n`.
    let stable = checkpoint_fingerprint(&d1);
    assert!(stable.starts_with("v2-"), "{stable}");
    let legacy = v01("public.notes>notes:[(\"id\", \"id\"), (\"body\", \"body\")]:[\"id\"]:None\n");
    set_checkpoint_fingerprint(&d1, &legacy);
    db.exec("INSERT INTO notes VALUES (3, 'c')");
    let sync = ["sync", "--once", "--target", "sqlite", "--sqlite", d1.to_str().expect("p")];
    let work = ["--work-dir", dir.path().to_str().expect("p")];
    let o = pgflare(&db, &[&sync[..], &work[..]].concat());
    assert_eq!(o.status.code(), Some(0), "a 0.1 checkpoint is followed: {}", text(&o));
    let n: i64 = rusqlite::Connection::open(&d1)
        .expect("open")
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 3, "the insert reached D1");
    assert_eq!(checkpoint_fingerprint(&d1), stable, "the next write holds the stable form");

    // Any other value is still another configuration.
    set_checkpoint_fingerprint(&d1, &v01("public.notes>notes:[(\"id\", \"id\")]:[\"id\"]:None\n"));
    let o = pgflare(&db, &[&sync[..], &work[..]].concat());
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("other tables"), "{}", text(&o));
}
