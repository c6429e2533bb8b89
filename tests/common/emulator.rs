//! The one emulator harness of the tests: `pgflare emulate` started as a
//! child process on a free port (killed on drop), its first stdout line
//! read for the base URL, and the ways tests reach it: `pgflare` and
//! wrangler commands with the Cloudflare environment pointing at it,
//! pgflare's own API clients, and plain JSON over HTTP (reqwest).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{temp_dir, TestDb};

/// The API token every emulator of the tests takes.
pub const TOKEN: &str = "emulator-test-token-8c1f";
/// The account id every emulator of the tests serves.
pub const ACCOUNT: &str = "acct-test";
/// The D1 database every emulator of the tests is started with.
pub const DB: &str = "db1";

/// A running `pgflare emulate`, killed when dropped.
pub struct Emulator {
    child: Child,
    pub base_url: String,
    pub data_dir: tempfile::TempDir,
    /// [`TOKEN`], as a field for callers that pass it on.
    pub token: String,
    /// [`ACCOUNT`], as a field for callers that pass it on.
    pub account: String,
    /// A client for the tests that speak HTTP to the emulator themselves.
    pub http: reqwest::Client,
    /// Kept open: the emulator's stdout must not hit a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Emulator {
    /// Starts the emulator on a free port with `extra` flags, one D1
    /// database [`DB`] and the fault seed 7 (unless `extra` names one).
    /// `--json` in `extra` makes it print (and this read) a JSON line.
    pub fn start(extra: &[&str]) -> Emulator {
        let data_dir = temp_dir("emulator");
        let (child, base_url, stdout) = spawn(data_dir.path(), extra);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        let (token, account) = (TOKEN.to_string(), ACCOUNT.to_string());
        Emulator { child, base_url, data_dir, token, account, http, _stdout: stdout }
    }

    /// Kills the emulator (no clean shutdown) and starts a new one on the
    /// same data dir with `extra` flags.
    pub fn restart(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, base_url, stdout) = spawn(self.data_dir.path(), extra);
        (self.child, self.base_url, self._stdout) = (child, base_url, stdout);
    }

    /// The SQLite file behind D1 database `id`.
    pub fn d1_file(&self, id: &str) -> PathBuf {
        self.data_dir.path().join("d1").join(format!("{id}.sqlite"))
    }

    /// The URL of `action` (query, raw, import, export) of D1 database `db`.
    pub fn db_url(&self, db: &str, action: &str) -> String {
        format!("{}/accounts/{ACCOUNT}/d1/database/{db}/{action}", self.base_url)
    }

    /// `pgflare` with the Cloudflare environment pointing here.
    pub fn command(&self, db: &TestDb) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgflare"));
        self.env_for(db, &mut c);
        c
    }

    /// Gives `c` (any program) the environment of [`Emulator::command`]:
    /// `db`'s URL and the Cloudflare settings pointing here.
    pub fn env_for(&self, db: &TestDb, c: &mut Command) {
        c.env("DATABASE_URL", &db.url).env_remove("SUPABASE_DB_URL");
        self.cloudflare_env(c);
    }

    /// `pgflare --json load --target api` of D1 database [`DB`] only, in
    /// 1 MiB partitions, its state in `state`, `extra` flags added.
    pub fn d1_load(&self, db: &TestDb, state: &Path, extra: &[&str]) -> Command {
        let mut c = self.command(db);
        c.args(["--json", "load", "--target", "api", "--d1-database-id", DB, "--partition-mib", "1"])
            .args(extra)
            .arg("--state-dir")
            .arg(state);
        c
    }

    /// wrangler (see [`super::wrangler_command`]) in `project`, its remote
    /// commands pointed here.
    pub fn wrangler(&self, project: &Path) -> Command {
        let mut c = super::wrangler_command(project);
        self.cloudflare_env(&mut c);
        c
    }

    fn cloudflare_env(&self, c: &mut Command) {
        c.env("CLOUDFLARE_API_BASE_URL", &self.base_url)
            .env("CLOUDFLARE_ACCOUNT_ID", &self.account)
            .env("CLOUDFLARE_API_TOKEN", &self.token);
    }

    /// pgflare's own Vectorize client on index `index` here, for planting
    /// changes behind a load's back.
    pub fn vectorize(&self, index: &str) -> pgflare::cloudflare::Vectorize {
        pgflare::cloudflare::Vectorize::new(self.api(), index)
    }

    /// pgflare's own D1 client on database `id` here, for changing D1
    /// behind a load's back the way another tool would (over the API).
    pub fn d1(&self, id: &str) -> pgflare::cloudflare::D1 {
        pgflare::cloudflare::D1::new(self.api(), id)
    }

    /// pgflare's API client pointed here, with a generous request budget.
    pub fn api(&self) -> std::sync::Arc<pgflare::cloudflare::Api> {
        self.api_at(&self.base_url)
    }

    /// [`Self::api`] through `base_url` (a proxy in front of this emulator).
    pub fn api_at(&self, base_url: &str) -> std::sync::Arc<pgflare::cloudflare::Api> {
        use pgflare::cloudflare::{Api, ApiSettings};
        let api = Api::new(ApiSettings {
            base_url: base_url.to_string(),
            account_id: self.account.clone(),
            token: self.token.clone(),
            rate_limit_requests: 1000,
            rate_limit_window: std::time::Duration::from_secs(1),
            retry: Default::default(),
            timeouts: Default::default(),
        })
        .expect("client");
        std::sync::Arc::new(api)
    }

    /// POSTs JSON with the token; returns (status, body).
    pub async fn post(&self, url: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(url).bearer_auth(TOKEN).json(&body).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON envelope"))
    }

    /// A D1 query on [`DB`]; returns (status, body).
    pub async fn query(&self, body: Value) -> (u16, Value) {
        self.post(&self.db_url(DB, "query"), body).await
    }

    /// Runs SQL on [`DB`] that must succeed; returns `result`.
    pub async fn ok(&self, sql: &str) -> Value {
        let (status, v) = self.query(json!({ "sql": sql })).await;
        assert_eq!(status, 200, "{sql}: {v}");
        v["result"].clone()
    }

    /// Runs SQL on [`DB`] that must fail with D1's SQL error; returns the message.
    pub async fn refused(&self, body: Value) -> String {
        let (status, v) = self.query(body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["success"], false);
        assert_eq!(v["errors"][0]["code"], 7500, "{v}");
        v["errors"][0]["message"].as_str().expect("message").to_string()
    }

    /// One request (waited for) to `/accounts/<id>/<tail>` here with the
    /// token: its status and JSON body (null when the body is not JSON).
    pub fn request(&self, method: reqwest::Method, tail: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}/accounts/{}/{tail}", self.base_url, self.account);
        super::block_on(async {
            let mut r = self.http.request(method, &url).bearer_auth(&self.token);
            if let Some(b) = body {
                r = r.json(b);
            }
            let r = r.send().await.expect("request to the emulator");
            let status = r.status().as_u16();
            let bytes = r.bytes().await.expect("answer body");
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }

    /// Deletes Vectorize index `name` over the API; it must succeed.
    pub fn delete_index(&self, name: &str) {
        let (status, v) =
            self.request(reqwest::Method::DELETE, &format!("vectorize/v2/indexes/{name}"), None);
        assert!((200..300).contains(&status), "{status}: {v}");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pgflare emulate` on `dir`; returns it, its base URL and its
/// stdout. The Cloudflare environment of the test run is not passed on:
/// the flags alone say what it serves.
fn spawn(dir: &Path, extra: &[&str]) -> (Child, String, BufReader<ChildStdout>) {
    let seed: &[&str] = if extra.contains(&"--seed") { &[] } else { &["--seed", "7"] };
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["emulate", "--listen", "127.0.0.1:0", "--token", TOKEN, "--account-id", ACCOUNT])
        .args(["--d1-database", DB, "--data-dir"])
        .arg(dir)
        .args(seed)
        .args(extra)
        .env_remove("CLOUDFLARE_API_TOKEN")
        .env_remove("CLOUDFLARE_ACCOUNT_ID")
        .env_remove("CLOUDFLARE_API_BASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pgflare emulate");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("first line of pgflare emulate");
    let base = if extra.contains(&"--json") {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("emulate printed `{line}`"));
        assert_eq!(v["account_id"], ACCOUNT);
        v["base_url"].as_str().expect("base_url").to_string()
    } else {
        line.trim()
            .strip_prefix("pgflare emulate: listening on ")
            .unwrap_or_else(|| panic!("the first line names the URL: `{line}`"))
            .to_string()
    };
    assert!(!line.contains(TOKEN), "the token must never be printed");
    (child, base, stdout)
}

/// The lines of an emulator's `--request-log`.
pub fn request_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("request log");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}
