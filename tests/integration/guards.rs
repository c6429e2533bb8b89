//! Guards around the writes: nothing is written before the source is
//! reachable, and one state folder has one `load` writing it at a time.

use std::process::Command;

use crate::common::*;

fn wrong_password(db: &TestDb) -> String {
    let (base, rest) = db.url.split_once('@').expect("url with credentials");
    let user = base.rsplit_once(':').map(|(u, _)| u).expect("user:password");
    format!("{user}:not-the-password@{rest}")
}

/// Every file under `dir` with its bytes, to see that nothing changed.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_source_that_refuses_the_password_leaves_every_target_untouched() {
    let db = TestDb::new("nowrite");
    db.seed(20, 4);
    let dir = temp_dir("nowrite");
    let run = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgflare"))
            .current_dir(dir.path())
            .env("DATABASE_URL", url)
            .env_remove("SUPABASE_DB_URL")
            .arg("--quiet")
            .args(args)
            .output()
            .expect("run")
    };
    // A loaded D1 file, whose sync state must not change either.
    ok(run(&db.url, &["load", "--target", "sqlite", "--sqlite", "loaded.sqlite"]));
    ok(run(&db.url, &["archive", "--out", "archived"]));
    let before = tree(dir.path());
    let bad = wrong_password(&db);
    let commands: [&[&str]; 9] = [
        &["load", "--target", "sqlite", "--sqlite", "new.sqlite"],
        &["load", "--target", "files", "--out", "files", "--state-dir", "state"],
        &["archive", "--out", "archive"],
        &["init", "--out-config", "new.toml", "--migrations-dir", "migrations"],
        &["verify", "--sqlite", "loaded.sqlite", "--report-dir", "report"],
        &["sync", "--target", "sqlite", "--sqlite", "loaded.sqlite", "--once"],
        &["sync", "--target", "sqlite", "--sqlite", "new.sqlite", "--once"],
        &["sync", "--target", "files", "--out", "files", "--work-dir", "state", "--once"],
        &["archive", "verify", "archived", "--against-source"],
    ];
    for args in commands {
        let o = run(&bad, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("password authentication failed"),
            "{}",
            text(&o)
        );
        assert_eq!(tree(dir.path()), before, "{args:?} wrote something: {}", text(&o));
    }
}

#[test]
fn a_sync_without_a_loaded_d1_file_creates_none() {
    let db = TestDb::new("nofile");
    db.seed(10, 4);
    let dir = temp_dir("nofile");
    let file = dir.path().join("d1.sqlite");
    let o = pgflare(&db, &["sync", "--target", "sqlite", "--sqlite", file.to_str().expect("p"), "--once"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pgflare load --target sqlite"), "{}", text(&o));
    assert!(!file.exists(), "an empty D1 file with a lease row was left behind");
}

#[test]
fn a_second_load_on_the_same_state_is_refused_naming_the_first() {
    let db = TestDb::new("loadlock");
    db.seed(400, 4);
    // Slow answers keep the first load running while the second starts.
    let emu = Emulator::start(&["--latency-ms", "300"]);
    let dir = temp_dir("loadlock");
    let state = dir.path().join("state");
    let args = [
        "--quiet",
        "load",
        "--target",
        "api",
        "--d1-database-id",
        "db1",
        "--partition-mib",
        "1",
        "--state-dir",
        state.to_str().expect("p"),
    ];
    let first = emu.command(&db).args(args).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    // The first load holds the state once its lock file names it.
    let lock = state.join("load.lock");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&format!("\"pid\": {}", first.id()))) {
        assert!(started.elapsed().as_secs() < 30, "the first load never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = emu.command(&db).args(args).output().expect("second load");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    assert!(err.contains(&format!("pid {}", first.id())), "the holder is named: {err}");
    assert!(err.contains("since"), "{err}");
    let first = first.wait_with_output().expect("first load");
    assert!(first.status.success(), "the first load is not disturbed: {}", text(&first));
    // Once it is done, the state is free again.
    let again = emu.command(&db).args(args).output().expect("third load");
    assert!(again.status.success(), "{}", text(&again));
}
