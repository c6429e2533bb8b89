//! The emulator test harness: starts `pgflare emulate` as a child process
//! (killed on drop), reads its first stdout line for the base URL, and
//! gives JSON helpers over reqwest plus an independent Python sqlite3 reader.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{json, Value};

use crate::common;

pub const TOKEN: &str = "test-token-123";
pub const ACCOUNT: &str = "acct1";
pub const DB: &str = "db1";

/// A running emulator, killed on drop.
pub struct Emu {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// Kept open: the emulator's stdout must not hit a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(extra: &[&str]) -> Emu {
    let dir = common::temp_dir("emulate");
    let (child, base, stdout) = spawn(dir.path(), extra);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    Emu { child, base, dir, http, _stdout: stdout }
}

/// Starts `pgflare emulate` on `dir`; returns it, its base URL and its stdout.
fn spawn(dir: &Path, extra: &[&str]) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["emulate", "--listen", "127.0.0.1:0", "--token", TOKEN, "--account-id", ACCOUNT])
        .args(["--d1-database", DB, "--seed", "7", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env_remove("CLOUDFLARE_API_TOKEN")
        .env_remove("CLOUDFLARE_ACCOUNT_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pgflare emulate");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("read the first line");
    let base = if extra.contains(&"--json") {
        let v: Value = serde_json::from_str(&line).expect("one JSON line");
        assert_eq!(v["account_id"], ACCOUNT);
        v["base_url"].as_str().expect("base_url").to_string()
    } else {
        line.trim()
            .strip_prefix("pgflare emulate: listening on ")
            .expect("first line names the URL")
            .to_string()
    };
    assert!(!line.contains(TOKEN), "the token must never be printed");
    (child, base, stdout)
}

impl Emu {
    /// Kills the emulator (no clean shutdown) and starts a new one on the
    /// same data dir with `extra` flags.
    pub fn restart(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, base, stdout) = spawn(self.dir.path(), extra);
        (self.child, self.base, self._stdout) = (child, base, stdout);
    }

    pub fn db_url(&self, db: &str, action: &str) -> String {
        format!("{}/accounts/{ACCOUNT}/d1/database/{db}/{action}", self.base)
    }

    pub fn sqlite_path(&self, db: &str) -> PathBuf {
        self.dir.path().join("d1").join(format!("{db}.sqlite"))
    }

    /// POSTs JSON with the token; returns (status, body).
    pub async fn post(&self, url: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(url).bearer_auth(TOKEN).json(&body).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON envelope"))
    }

    pub async fn query(&self, body: Value) -> (u16, Value) {
        self.post(&self.db_url(DB, "query"), body).await
    }

    /// Runs SQL that must succeed; returns `result`.
    pub async fn ok(&self, sql: &str) -> Value {
        let (status, v) = self.query(json!({ "sql": sql })).await;
        assert_eq!(status, 200, "{sql}: {v}");
        v["result"].clone()
    }

    /// Runs SQL that must fail with D1's SQL error; returns the message.
    pub async fn refused(&self, body: Value) -> String {
        let (status, v) = self.query(body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["success"], false);
        assert_eq!(v["errors"][0]["code"], 7500, "{v}");
        v["errors"][0]["message"].as_str().expect("message").to_string()
    }
}

/// Runs Python code with sqlite3 available; returns stdout.
pub fn python(code: &str, args: &[&str]) -> String {
    let py = std::env::var("PGFLARE_PYTHON")
        .unwrap_or_else(|_| common::root().join(".venv/bin/python").display().to_string());
    let o = Command::new(py).arg("-c").arg(code).args(args).output().expect("run python");
    assert!(o.status.success(), "python failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every row of a table of a SQLite file, read by Python, as JSON text.
pub fn py_rows(path: &Path, table: &str) -> String {
    python(
        "import sqlite3,sys,json\nc=sqlite3.connect(sys.argv[1])\n\
         rows=c.execute('SELECT * FROM \"%s\" ORDER BY 1' % sys.argv[2]).fetchall()\n\
         print(json.dumps([[v.hex() if isinstance(v,bytes) else v for v in r] for r in rows]))",
        &[&path.display().to_string(), table],
    )
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// The wrangler import flow: init, PUT, ingest, poll. Returns the final poll answer.
pub async fn import(emu: &Emu, sql: &str) -> Value {
    let etag = md5_hex(sql.as_bytes());
    let url = emu.db_url(DB, "import");
    let (status, v) = emu.post(&url, json!({ "action": "init", "etag": etag })).await;
    assert_eq!(status, 200, "{v}");
    let mut answer = v["result"].clone();
    if let Some(upload_url) = answer["upload_url"].as_str() {
        let filename = answer["filename"].as_str().expect("filename").to_string();
        let put = emu.http.put(upload_url).body(sql.to_string()).send().await.expect("PUT");
        assert_eq!(put.status().as_u16(), 200);
        let got = put
            .headers()
            .get("etag")
            .and_then(|h| h.to_str().ok())
            .expect("ETag")
            .trim_matches('"')
            .to_string();
        assert_eq!(got, etag);
        let (status, v) =
            emu.post(&url, json!({ "action": "ingest", "filename": filename, "etag": etag })).await;
        assert_eq!(status, 200, "{v}");
        answer = v["result"].clone();
    }
    for _ in 0..100 {
        assert_eq!(answer["success"], true, "{answer}");
        if answer["status"] != "active" {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bm = answer["at_bookmark"].clone();
        answer =
            emu.post(&url, json!({ "action": "poll", "current_bookmark": bm })).await.1["result"].clone();
    }
    panic!("the import never finished: {answer}");
}

/// The wrangler export flow: start, then poll with the bookmark until it
/// is no longer active. Returns the final answer (`result` of the envelope).
pub async fn export(emu: &Emu, dump_options: Value) -> Value {
    let url = emu.db_url(DB, "export");
    let (status, v) =
        emu.post(&url, json!({ "output_format": "polling", "dump_options": dump_options })).await;
    assert_eq!(status, 200, "{v}");
    let mut answer = v["result"].clone();
    for _ in 0..100 {
        assert_eq!(answer["success"], true, "{answer}");
        if answer["status"] != "active" {
            return answer;
        }
        let bm = answer["at_bookmark"].clone();
        let body =
            json!({ "output_format": "polling", "dump_options": dump_options, "current_bookmark": bm });
        answer = emu.post(&url, body).await.1["result"].clone();
    }
    panic!("the export never finished: {answer}");
}
