//! The D1 database API: `query` for small batches of statements and the
//! `import` flow (init, upload, ingest, poll) for large ones, the way
//! `wrangler d1 execute --remote --file` runs a file, and the export. Imports
//! and exports are D1 jobs that run in the background and are polled
//! ([`super::d1_transfer`] reads the answers); D1 refuses every other
//! request on the database while one runs, so this client sends none then,
//! and waits out a job another process holds. Parameters go as strings,
//! the only type D1's API takes ([`text_param`]).

use std::time::Duration;

use md5::{Digest, Md5};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::client::Api;
use super::d1_transfer::{self, Answer, Pacer};
use crate::error::{Error, Result};

/// What D1 reported for executed SQL.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Applied {
    pub statements: u64,
    pub rows_written: u64,
    /// Rows changed (`meta.changes`: SQLite's count, cascades included),
    /// summed over the statements; 0 for imports.
    pub changes: u64,
}

pub struct D1 {
    api: std::sync::Arc<Api>,
    database_id: String,
    /// Imports and exports hold it alone, queries together: D1 refuses
    /// every request while an import or export runs, so this process sends
    /// none then.
    gate: tokio::sync::RwLock<()>,
    poll_every: Duration,
    /// How long an import or export may take ([`crate::timeouts::Timeouts::d1_wait`]).
    wait: Duration,
}

/// D1's API takes parameters as strings only (the OpenAPI schema's
/// `d1_params` is an array of strings: cloudflare-python
/// `types/d1/database_query_params.py`). A numeric string still compares as
/// a number with a column or expression of numeric affinity (SQLite applies
/// the column's affinity to an operand without one); where the other side
/// has none (`json_extract`, `json_each.value`), the SQL must `CAST` it.
pub fn text_param(what: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
        other => Err(Error::Internal(format!(
            "{what}: a D1 parameter must be text or a number (D1's API takes strings), not {other}"
        ))),
    }
}

impl D1 {
    pub fn new(api: std::sync::Arc<Api>, database_id: &str) -> Self {
        let wait = api.timeouts().d1_wait;
        D1 {
            api,
            database_id: database_id.to_string(),
            gate: tokio::sync::RwLock::new(()),
            poll_every: Duration::from_millis(200),
            wait,
        }
    }

    pub fn database_id(&self) -> &str {
        &self.database_id
    }

    /// The client it calls through (its request budget is the user's).
    pub fn api(&self) -> &std::sync::Arc<Api> {
        &self.api
    }

    fn url(&self, action: &str) -> String {
        self.api.account_url(&format!("d1/database/{}/{action}", self.database_id))
    }

    /// A `query` request; while another import or export (of another
    /// process, or one a stopped run left behind) holds the database, D1
    /// refuses it before running it, so it is sent again until the database
    /// is free or [`Self::wait`] has passed.
    async fn call_query(&self, what: &str, body: &Value) -> Result<Value> {
        let _shared = self.gate.read().await;
        let url = self.url("query");
        let mut pacer = Pacer::new(self.poll_every, self.wait);
        let mut told = false;
        loop {
            match self.api.call(what, Method::POST, &url, body).await {
                Err(Error::Api { message, .. }) if d1_transfer::is_busy(&message) => {
                    self.busy_notice(&mut told, what, "D1 is busy with an import or export.");
                    d1_transfer::pause(&mut pacer, what, &message).await?;
                }
                other => return other,
            }
        }
    }

    /// Says once per wait that the database is held (a line per poll would
    /// be hundreds of lines over `--d1-wait`, times the workers waiting).
    fn busy_notice(&self, told: &mut bool, what: &str, text: &str) {
        if !std::mem::replace(told, true) {
            let wait = crate::timeouts::human(self.wait);
            self.api.notify(&format!("{what}: {text} Waiting for the database (up to {wait}, --d1-wait)"));
        }
    }

    /// Runs `sql` (one or more `;`-separated statements) as one request,
    /// which D1 runs as one transaction.
    pub async fn query(&self, what: &str, sql: &str) -> Result<Applied> {
        let result = self.call_query(what, &query_body(sql)).await?;
        let entries = result.as_array().cloned().unwrap_or_default();
        let rows_written =
            entries.iter().filter_map(|e| e.pointer("/meta/rows_written").and_then(Value::as_u64)).sum();
        let changes = entries.iter().filter_map(|e| e.pointer("/meta/changes").and_then(Value::as_u64)).sum();
        Ok(Applied { statements: entries.len() as u64, rows_written, changes })
    }

    /// Runs one statement with `?N` parameters (sent as text, see
    /// [`text_param`]) and returns its rows (JSON objects by column name).
    pub async fn select(&self, what: &str, sql: &str, params: &[Value]) -> Result<Vec<Value>> {
        let params = params.iter().map(|p| text_param(what, p)).collect::<Result<Vec<_>>>()?;
        let body =
            if params.is_empty() { json!({ "sql": sql }) } else { json!({ "sql": sql, "params": params }) };
        let result = self.call_query(what, &body).await?;
        Ok(result
            .as_array()
            .and_then(|a| a.last())
            .and_then(|e| e.get("results"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Runs a whole SQL file through the import flow; returns when D1 says
    /// it is complete. A failed import leaves the database as it was. When
    /// D1 no longer knows the import (its end was lost, e.g. with a dropped
    /// answer), the file is run again: the files pgflare imports are
    /// upserts, so a second run ends in the same rows.
    pub async fn import(&self, what: &str, sql: bytes::Bytes) -> Result<Applied> {
        let _alone = self.gate.write().await;
        let etag = hex::encode(Md5::digest(&sql));
        let url = self.url("import");
        let mut pacer = Pacer::new(self.poll_every, self.wait);
        let (mut lost, mut told) = (0, false);
        loop {
            let first = self.import_begin(what, &sql, &etag, &url).await?;
            let poll = |bm: &str| json!({"action": "poll", "current_bookmark": bm});
            match self.follow(&format!("{what}: import poll"), &url, first, &mut pacer, &poll).await? {
                Answer::Complete(state) => {
                    let r = state.get("result").cloned().unwrap_or(Value::Null);
                    return Ok(Applied {
                        statements: r.get("num_queries").and_then(Value::as_u64).unwrap_or(0),
                        rows_written: r.pointer("/meta/rows_written").and_then(Value::as_u64).unwrap_or(0),
                        changes: 0,
                    });
                }
                Answer::Busy(text) => {
                    self.busy_notice(&mut told, what, &text);
                    d1_transfer::pause(&mut pacer, &format!("{what}: import"), &text).await?;
                }
                Answer::Gone(text) if lost < 2 => {
                    lost += 1;
                    self.api.notify(&format!("{what}: D1 answered \"{text}\" before the import's end was seen; running the file again (its statements are upserts)"));
                }
                other => return Err(import_failed(what, other)),
            }
        }
    }

    /// `init` (and when D1 does not have the file yet, the upload and
    /// `ingest`): the first answer about the import.
    async fn import_begin(&self, what: &str, sql: &bytes::Bytes, etag: &str, url: &str) -> Result<Value> {
        let init = json!({"action": "init", "etag": etag});
        let init = self.api.call(&format!("{what}: import init"), Method::POST, url, &init).await?;
        // D1 already has this exact file: it answers like a poll.
        let Some(upload_url) = init.get("upload_url").and_then(Value::as_str) else { return Ok(init) };
        let filename = init.get("filename").and_then(Value::as_str).unwrap_or_default().to_string();
        let (headers, _) = self
            .api
            .fetch(&format!("{what}: import upload"), Method::PUT, upload_url, Some(sql.clone()))
            .await?;
        let returned = headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_default();
        if returned != etag {
            return Err(Error::Api {
                what: format!("{what}: import upload"),
                status: None,
                message: format!("the upload's ETag is `{returned}`, expected the file's MD5 `{etag}`"),
                hint: "the file was damaged in transit; run the command again".into(),
            });
        }
        let ingest = json!({"action": "ingest", "filename": filename, "etag": etag});
        self.api.call(&format!("{what}: import ingest"), Method::POST, url, &ingest).await
    }

    /// Polls a job from its first answer until it is no longer running;
    /// returns its last answer, read. It never polls without a bookmark.
    async fn follow(
        &self,
        what: &str,
        url: &str,
        mut state: Value,
        pacer: &mut Pacer,
        poll: &dyn Fn(&str) -> Value,
    ) -> Result<Answer> {
        loop {
            let Answer::Active(bookmark) = d1_transfer::read(&state) else {
                return Ok(d1_transfer::read(&state));
            };
            d1_transfer::pause(pacer, what, "still running").await?;
            state = self.api.call(what, Method::POST, url, &poll(&bookmark)).await?;
        }
    }

    /// Exports the database as SQL (schema and rows, as `wrangler d1
    /// export` does) into `path`: start, poll until complete, then stream
    /// the dump from its signed URL. Returns the bytes written and the
    /// export's `at_bookmark`. An export D1 lost track of is started again
    /// (it only reads).
    pub async fn export_to(&self, what: &str, path: &std::path::Path) -> Result<Exported> {
        let _alone = self.gate.write().await;
        let url = self.url("export");
        let mut pacer = Pacer::new(self.poll_every, self.wait);
        let (mut lost, mut told) = (0, false);
        let state = loop {
            let start = json!({"output_format": "polling"});
            let first = self.api.call(&format!("{what}: export"), Method::POST, &url, &start).await?;
            let poll = |bm: &str| json!({"output_format": "polling", "current_bookmark": bm});
            match self.follow(&format!("{what}: export poll"), &url, first, &mut pacer, &poll).await? {
                Answer::Complete(state) => break state,
                Answer::Busy(text) => {
                    self.busy_notice(&mut told, what, &text);
                    d1_transfer::pause(&mut pacer, &format!("{what}: export"), &text).await?;
                }
                Answer::Gone(_) if lost < 2 => lost += 1,
                Answer::Failed(message) | Answer::Gone(message) | Answer::Malformed(message) => {
                    return Err(Error::Api {
                        what: format!("{what}: export"),
                        status: None,
                        message,
                        hint: "D1 could not export the database (the message above is Cloudflare's); \
                               run the command again later"
                            .into(),
                    })
                }
                Answer::Active(_) => {
                    return Err(Error::Internal("an active export was left unpolled".into()))
                }
            }
        };
        let signed =
            state.pointer("/result/signed_url").and_then(Value::as_str).ok_or_else(|| Error::Api {
                what: format!("{what}: export"),
                status: None,
                message: format!("the finished export has no signed_url: {state}"),
                hint: "check CLOUDFLARE_API_BASE_URL points at the Cloudflare API".into(),
            })?;
        let bytes = self.api.download_to(&format!("{what}: export download"), signed, path).await?;
        let at_bookmark = state.get("at_bookmark").and_then(Value::as_str).map(str::to_string);
        Ok(Exported { bytes, at_bookmark })
    }

    /// The database's own description (`GET d1/database/{id}`: `uuid`,
    /// `name`, `version`, `num_tables`, `file_size`; cloudflare-go
    /// `d1/database.go` `Get`).
    pub async fn database(&self) -> Result<Value> {
        let what = format!("D1 database {}", self.database_id);
        self.api.get(&what, &self.api.account_url(&format!("d1/database/{}", self.database_id))).await
    }

    /// The database's current Time Travel bookmark (`GET
    /// d1/database/{id}/time_travel/bookmark` -> `{bookmark}`:
    /// cloudflare-typescript `src/resources/d1/database/time-travel.ts`
    /// `getBookmark`). Bookmarks name a state of the database and sort
    /// from oldest to newest (cloudflare-docs `d1/reference/time-travel`),
    /// so two equal bookmarks around a read prove nothing was written
    /// during it.
    pub async fn bookmark(&self) -> Result<String> {
        let what = format!("D1 database {}: Time Travel bookmark", self.database_id);
        let v = self.api.get(&what, &self.url("time_travel/bookmark")).await?;
        v.get("bookmark").and_then(Value::as_str).map(str::to_string).ok_or_else(|| Error::Api {
            what,
            status: None,
            message: format!("the answer has no bookmark: {}", super::client::snippet(&v.to_string())),
            hint: "check CLOUDFLARE_API_BASE_URL points at the Cloudflare API".into(),
        })
    }
}

/// What an export gave: the dump's size and the Time Travel bookmark of
/// the state it holds (`at_bookmark`, "the current time-travel bookmark
/// for your D1 ... will not change for the duration of the export task":
/// cloudflare-python `types/d1/database_export_response.py`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub bytes: u64,
    pub at_bookmark: Option<String>,
}

/// The error of an import that ended without completing: Cloudflare's own
/// text, and what to do.
fn import_failed(what: &str, end: Answer) -> Error {
    let message = match end {
        Answer::Failed(t) | Answer::Busy(t) | Answer::Malformed(t) => t,
        Answer::Gone(t) => format!("{t} (D1 no longer knows the import, twice: its end was never seen)"),
        Answer::Complete(_) | Answer::Active(_) => "the import ended in an unexpected state".into(),
    };
    let hint = super::limits::shape_limit_hint(what, &message).unwrap_or_else(|| {
        "D1 refused the file and left the database as it was; the message above is Cloudflare's".into()
    });
    Error::Api { what: what.to_string(), status: None, message, hint }
}
#[cfg(test)]
#[path = "d1_tests.rs"]
mod tests;

/// The body of a `query` request running `sql`. D1 prepares a
/// multi-statement `sql` as one text: each `sqlite3_prepare_v3` gets all
/// that is not yet run (cloudflare/workerd `src/workerd/util/sqlite.c++`,
/// `prepareSql`), so the 100,000-byte statement limit holds for the whole
/// text. A longer text goes as a `batch` of its statements, each prepared on
/// its own (`DatabaseQueryParams.MultipleQueries` in cloudflare-typescript
/// `src/resources/d1/database/database.ts`); the batch is still one request
/// and one transaction.
fn query_body(sql: &str) -> Value {
    if sql.len() <= crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES {
        return json!({ "sql": sql });
    }
    let batch: Vec<Value> = crate::d1::split::split(sql).into_iter().map(|s| json!({ "sql": s })).collect();
    json!({ "batch": batch })
}

#[cfg(test)]
mod query_body_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the statements, no `sql` in the body is longer than D1
        /// prepares at once (unless one statement alone is), and the
        /// statements keep their order.
        #[test]
        fn no_text_sent_is_longer_than_one_prepare(sizes in proptest::collection::vec(1usize..30_000, 1..40)) {
            let statements: Vec<String> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| format!("INSERT INTO t VALUES ({i}, '{}');", "x".repeat(*n)))
                .collect();
            let sql = statements.concat();
            let body = query_body(&sql);
            let texts: Vec<String> = match (body.get("sql"), body.get("batch")) {
                (Some(s), None) => vec![s.as_str().unwrap_or_default().to_string()],
                (None, Some(b)) => b
                    .as_array()
                    .map(|a| a.iter().filter_map(|e| e["sql"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                other => return Err(TestCaseError::fail(format!("neither sql nor batch: {other:?}"))),
            };
            prop_assert!(texts.iter().all(|t| t.len() <= crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES));
            prop_assert_eq!(texts.concat().replace(char::is_whitespace, ""), sql.replace(char::is_whitespace, ""));
        }
    }
}
