//! Other sessions a test needs beside pgflare: one that holds locks (in an
//! open transaction) so that pgflare waits where the test wants to stop it,
//! and `pgflare verify` of a local D1 file against the source.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{block_on, ok_json, pgflare, TestDb};

/// A session that, once `ready` (a query of one boolean) answers true,
/// runs `lock` in an open transaction and keeps its locks until dropped.
pub struct SessionLock {
    release: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SessionLock {
    /// `lock` at once (e.g. `SELECT ... FOR UPDATE` of a row).
    pub fn new(db: &TestDb, lock: &str) -> SessionLock {
        SessionLock::when(db, "SELECT true", lock)
    }

    /// `lock` as soon as `ready` holds (polled every 2 ms, for 60 s at most).
    pub fn when(db: &TestDb, ready: &str, lock: &str) -> SessionLock {
        let (url, ready, lock) = (db.url.clone(), ready.to_string(), lock.to_string());
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                use sqlx::Connection as _;
                let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
                let deadline = Instant::now() + Duration::from_secs(60);
                while !sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(ready.clone()))
                    .fetch_one(&mut c)
                    .await
                    .expect("poll")
                {
                    assert!(Instant::now() < deadline, "never ready: {ready}");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {lock}")))
                    .execute(&mut c)
                    .await
                    .expect("lock");
                let _ = locked.send(());
                let _ = tokio::task::spawn_blocking(move || wait.recv()).await;
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
            })
        });
        is_locked.recv_timeout(Duration::from_secs(90)).expect("the lock was taken");
        SessionLock { release, thread: Some(thread) }
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let _ = self.release.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `pgflare verify` of the D1 file `d1` (D1 only) with `config`, its
/// report in `report`: the report, after checking the run succeeded.
pub fn verify_d1_file(db: &TestDb, config: &str, d1: &str, report: &Path) -> Value {
    let report = report.to_str().expect("report path");
    let args =
        ["--json", "verify", "--config", config, "--sqlite", d1, "--no-vectorize", "--report-dir", report];
    ok_json(pgflare(db, &args))
}
