//! What users read when something is wrong: Postgres's own error (not a
//! framing error or a source-code line number), every unsupported column
//! at once with its fix, a quiet end when stdout is closed, and the source
//! URL of pgflare.toml used by every command that reads the source.

use std::io::Read as _;
use std::process::{Command, Stdio};

use crate::common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_wrong_password_shows_postgres_message_and_code_without_source_line_numbers() {
    let db = TestDb::new("wrongpw");
    let (base, rest) = db.url.split_once('@').expect("url with credentials");
    let user = base.rsplit_once(':').map(|(u, _)| u).expect("user:password");
    let wrong = format!("{user}:not-the-password@{rest}");
    let o = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["inspect", "--database-url", &wrong])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains("28P01"), "the SQLSTATE says what kind of error: {err}");
    // Postgres reports the line of its own C source file: no use to anyone.
    assert!(!err.contains(" at line "), "{err}");
}

#[test]
fn an_impossible_cast_shows_postgres_error_with_table_and_column() {
    let db = TestDb::new("badcast");
    db.exec("CREATE TABLE ev (id int PRIMARY KEY, j jsonb); INSERT INTO ev VALUES (1, '{\"a\": 1}');");
    let out = temp_dir("badcast");
    let dir = out.path().join("archive");
    let o = pgflare(&db, &["archive", "--quiet", "--out", dir.to_str().expect("p"), "--cast", "ev.j=uuid"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(!err.contains("malformed COPY"), "{err}");
    assert!(err.contains("cannot cast type jsonb to uuid"), "{err}");
    assert!(err.contains("42846"), "{err}");
    assert!(err.contains("public.ev") && err.contains("column j"), "{err}");
    assert!(!dir.exists(), "nothing is written when a cast cannot work");
}

#[test]
fn a_cast_that_fails_on_a_value_shows_postgres_error_not_a_framing_error() {
    let db = TestDb::new("valcast");
    db.exec(
        "CREATE TABLE notes (id int PRIMARY KEY, n text); INSERT INTO notes VALUES (1, '12'), (2, 'twelve');",
    );
    let out = temp_dir("valcast");
    let dir = out.path().join("archive");
    let o =
        pgflare(&db, &["archive", "--quiet", "--out", dir.to_str().expect("p"), "--cast", "notes.n=integer"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(!err.contains("malformed COPY"), "{err}");
    assert!(err.contains("invalid input syntax for type integer"), "{err}");
    assert!(err.contains("22P02"), "{err}");
    assert!(err.contains("public.notes"), "{err}");
    assert!(err.contains("n as integer"), "the cast columns are named: {err}");
}

const UNSUPPORTED: &str = "CREATE TABLE spans (id int PRIMARY KEY, took interval, at_tz timetz);
     CREATE TABLE ranges (id int PRIMARY KEY, r int4range, ok text);
     INSERT INTO spans VALUES (1, '5 minutes', '10:00+02');
     INSERT INTO ranges VALUES (1, '[1,3)', 'x');";

#[test]
fn every_unsupported_column_is_reported_in_one_run() {
    let db = TestDb::new("unsup_all");
    db.exec(UNSUPPORTED);
    let out = temp_dir("unsup_all");
    let dir = out.path().join("archive");
    let o = pgflare(&db, &["archive", "--quiet", "--out", dir.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    for (col, fix) in [
        ("public.spans, column took", "--cast spans.took=text"),
        ("public.spans, column at_tz", "--exclude spans.at_tz"),
        ("public.ranges, column r", "--exclude ranges.r"),
    ] {
        assert!(err.contains(col), "{col} missing: {err}");
        assert!(err.contains(fix), "{fix} missing: {err}");
    }
    assert!(!dir.exists(), "nothing is written when columns cannot be read");

    // load reads through pgflare.toml: the fixes are its keys.
    let state = out.path().join("state");
    let o = pgflare(
        &db,
        &["--quiet", "load", "--state-dir", state.to_str().expect("p"), "--target", "files", "--out"]
            .into_iter()
            .chain([out.path().join("files").to_str().expect("p")])
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("column took") && err.contains("column at_tz") && err.contains("column r"), "{err}");
    assert!(err.contains("casts = { took = \"text\" }"), "{err}");
}

#[test]
fn inspect_lists_every_unsupported_column_with_its_fix() {
    let db = TestDb::new("unsup_inspect");
    db.exec(UNSUPPORTED);
    let human = ok(pgflare(&db, &["inspect", "--no-scan"]));
    for line in [
        "took  interval: type `interval` is not supported; fix: --cast spans.took=text or --exclude spans.took",
        "at_tz  time with time zone: type `time with time zone` is not supported; \
         fix: --cast spans.at_tz=text or --exclude spans.at_tz",
        "r  int4range: type `int4range` is not supported; fix: --cast ranges.r=text or --exclude ranges.r",
    ] {
        assert!(human.contains(line), "`{line}` missing:\n{human}");
    }
    // The columns that are supported are still described, and scanned.
    assert!(human.contains("ok      text"), "{human}");
    let json = ok(pgflare(&db, &["--json", "inspect"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let spans = v["tables"].as_array().expect("tables").iter().find(|t| t["name"] == "spans").expect("spans");
    let unsupported = spans["unsupported"].as_array().expect("unsupported list");
    assert_eq!(unsupported.len(), 2, "{spans:#}");
    assert_eq!(unsupported[0]["column"], "took");
    assert_eq!(unsupported[0]["cast"], "--cast spans.took=text");
    assert_eq!(unsupported[0]["exclude"], "--exclude spans.took");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let db = TestDb::new("pipe");
    // Enough output that the pipe closes before inspect has printed it all
    // (over 64 KiB: more than a pipe holds).
    let columns: String = (0..12).map(|c| format!(", column_{c} text")).collect();
    let tables: String =
        (0..150).map(|i| format!("CREATE TABLE t{i:03} (id int PRIMARY KEY{columns});")).collect();
    db.exec(&tables);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["inspect", "--no-scan"])
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Read one line, then close the pipe, as `| head -1` does.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 64];
    let n = stdout.read(&mut first).expect("first bytes");
    assert!(n > 0);
    drop(stdout);
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "nothing to say: {err}");
}

#[test]
fn every_command_reads_the_source_url_of_pgflare_toml() {
    let db = TestDb::new("tomlurl");
    db.exec("CREATE TABLE docs (id int PRIMARY KEY, body text); INSERT INTO docs VALUES (1, 'a'), (2, 'b');");
    let dir = temp_dir("tomlurl");
    let config = format!("[source]\nurl = \"{}\"\n\n[[tables]]\nname = \"docs\"\n", db.url);
    std::fs::write(dir.path().join("pgflare.toml"), config).expect("write");
    // No DATABASE_URL: the file is the only place the source is named.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgflare"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("SUPABASE_DB_URL")
            .output()
            .expect("run")
    };
    ok(run(&["inspect", "--no-scan"]));
    ok(run(&["--quiet", "archive", "--out", "archive"]));
    ok(run(&["--quiet", "archive", "verify", "archive", "--against-source"]));
    ok(run(&["init", "--out-config", "init.toml", "--migrations-dir", "migrations"]));
    ok(run(&["--quiet", "load", "--target", "sqlite", "--sqlite", "d1.sqlite"]));
    ok(run(&["--quiet", "verify", "--sqlite", "d1.sqlite", "--report-dir", "report"]));
    ok(run(&["--quiet", "sync", "--target", "sqlite", "--sqlite", "d1.sqlite", "--once"]));

    // The flag wins over the file, the file over DATABASE_URL.
    let o = run(&["inspect", "--no-scan", "--database-url", "postgres://nobody@127.0.0.1:1/x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["inspect", "--no-scan"])
        .current_dir(dir.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .output()
        .expect("run");
    ok(o);
}
