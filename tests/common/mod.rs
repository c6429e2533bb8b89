//! Shared helpers of the integration tests: a fresh database per test on
//! the Postgres that `scripts/test.sh` starts (PGFLARE_TEST_DATABASE_URL),
//! running the real binaries (here), the emulator ([`emulator`]), the
//! independent Python readers ([`python`]) and the comparisons of outputs
//! with the source ([`compare`]). Tests use these, not copies of them.

#![allow(dead_code)]

mod compare;
mod emulator;
mod python;
mod session;

pub use compare::*;
pub use emulator::*;
pub use python::*;
pub use session::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Connection, PgConnection};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn admin_url() -> String {
    std::env::var("PGFLARE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "PGFLARE_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts Postgres"
        )
    })
}

/// A database created for one test and dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let name = format!("t_{tag}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let admin = admin_url();
        block_on(async {
            let mut c = PgConnection::connect(&admin).await.expect("connect to the test server");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut c)
                .await
                .expect("create database");
        });
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("unexpected test URL"),
        };
        TestDb { name, url }
    }

    /// Runs SQL (several statements allowed).
    pub fn exec(&self, sql: &str) {
        let url = self.url.clone();
        let sql = sql.to_string();
        block_on(async move {
            let mut c = PgConnection::connect(&url).await.expect("connect");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.expect("sql");
        });
    }

    pub fn exec_file(&self, path: &str) {
        let sql = std::fs::read_to_string(root().join(path)).expect("fixture");
        self.exec(&sql);
    }

    /// One text value.
    pub fn query_one(&self, sql: &str) -> String {
        let url = self.url.clone();
        let sql = sql.to_string();
        block_on(async move {
            let mut c = PgConnection::connect(&url).await.expect("connect");
            let v: String =
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut c).await.expect("query");
            v
        })
    }

    /// The number `sql` (any integer expression or query) gives.
    pub fn count(&self, sql: &str) -> u64 {
        self.query_one(&format!("SELECT ({sql})::text")).parse().expect("a count")
    }

    /// Seeds documents/chunks with the project's deterministic generator.
    pub fn seed(&self, chunks: usize, dims: usize) {
        let out = Command::new(env!("CARGO_BIN_EXE_pgflare-seed"))
            .args([
                "--database-url",
                &self.url,
                "--chunks",
                &chunks.to_string(),
                "--dims",
                &dims.to_string(),
                "--drop",
            ])
            .output()
            .expect("run pgflare-seed");
        assert!(out.status.success(), "pgflare-seed failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (admin_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            block_on(async move {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    // A database with a logical replication slot cannot be
                    // dropped (followers' tests leave theirs).
                    let slots = format!(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"
                    );
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(slots)).execute(&mut c).await;
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            })
        })
        .join();
    }
}

/// A transaction with a transaction id, held open (in a database of its own
/// on the test server) until dropped: while it runs, every snapshot's xmin,
/// which is cluster-wide, stays at or below its id, as when other tests run
/// at the same time.
pub struct OpenTransaction {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _db: TestDb,
}

impl OpenTransaction {
    pub fn begin() -> OpenTransaction {
        let db = TestDb::new("opentx");
        let url = db.url.clone();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let mut c = PgConnection::connect(&url).await.expect("connect");
                sqlx::raw_sql("BEGIN; SELECT txid_current();").execute(&mut c).await.expect("begin");
                let _ = ready.send(());
                let _ = wait.recv();
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
            })
        });
        started.recv().expect("the transaction started");
        OpenTransaction { release: Some(release), thread: Some(thread), _db: db }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The load's state file in `state_dir` (`load-<target>-<hash>.json`), if
/// one is there. The folder holds other files too (the temporary file of an
/// atomic replace, which a kill can leave behind; link spools; locks), so
/// "the first entry" is not it.
pub fn load_state_file(state_dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("load-") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files.into_iter().next()
}

/// Runs `pgflare` with `args`, the database URL in the environment.
pub fn pgflare(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("SUPABASE_DB_URL")
        .output()
        .expect("run pgflare")
}

pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "pgflare failed\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `pgflare init`'s config (and migrations) for the tables of `db`, in
/// `dir`; returns the config's path.
pub fn init_config(db: &TestDb, dir: &Path) -> String {
    let config = dir.join("pgflare.toml");
    let migrations = dir.join("migrations");
    let (c, m) = (config.to_str().expect("path"), migrations.to_str().expect("path"));
    ok(pgflare(db, &["init", "--out-config", c, "--migrations-dir", m]));
    c.to_string()
}

/// Runs `c`, killing it once it has run for `limit`; returns its output and
/// how long it ran. Its output is read while it runs, so a chatty command
/// cannot fill a pipe and stall.
pub fn run_for(mut c: Command, limit: std::time::Duration) -> (Output, std::time::Duration) {
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn std::io::Read + Send>));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn std::io::Read + Send>));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let output = Output { status, stdout: out.join().expect("stdout"), stderr: err.join().expect("stderr") };
    (output, started.elapsed())
}

pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("pgflare-{tag}-")).tempdir().expect("temp dir")
}

/// Every Parquet file under `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in walk(dir) {
        if e.extension().is_some_and(|x| x == "parquet") {
            out.push(e);
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// wrangler (PGFLARE_WRANGLER) run in `project`, without telemetry or
/// prompts; [`Emulator::wrangler`] points its remote commands at an emulator.
pub fn wrangler_command(project: &Path) -> Command {
    let bin = std::env::var("PGFLARE_WRANGLER")
        .expect("PGFLARE_WRANGLER is not set: run the tests with scripts/test.sh, which installs wrangler");
    let mut c = Command::new(bin);
    c.current_dir(project).env("WRANGLER_SEND_METRICS", "false").env("CI", "true");
    c
}

/// The note a bucket split leaves in a report's `notes` (JSON strings),
/// and how many of its parts differ, read from the note's own words
/// ("... split into P parts, K of which differ ...").
pub fn split_note(notes: &serde_json::Value) -> (String, u64) {
    let note = notes
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n.as_str())
        .find(|n| n.contains("split into"))
        .unwrap_or_else(|| panic!("no split in the notes: {notes:#}"));
    let differ = note
        .split(" parts, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count of differing parts in: {note}"));
    (note.to_string(), differ)
}
