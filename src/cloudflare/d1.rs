//! The D1 database API: `query` for small batches of statements and the
//! `import` flow (init, upload, ingest, poll) for large ones, the way
//! `wrangler d1 execute --remote --file` runs a file. Imports run one at a
//! time per database: D1 makes the database unavailable while one runs.

use std::time::Duration;

use md5::{Digest, Md5};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use super::client::Api;
use crate::error::{Error, Result};
use crate::timeouts::D1_WAIT;

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
    import_lock: tokio::sync::Mutex<()>,
    poll_every: Duration,
}

impl D1 {
    pub fn new(api: std::sync::Arc<Api>, database_id: &str) -> Self {
        D1 {
            api,
            database_id: database_id.to_string(),
            import_lock: tokio::sync::Mutex::new(()),
            poll_every: Duration::from_millis(200),
        }
    }

    pub fn database_id(&self) -> &str {
        &self.database_id
    }

    fn url(&self, action: &str) -> String {
        self.api.account_url(&format!("d1/database/{}/{action}", self.database_id))
    }

    /// Runs `sql` (one or more `;`-separated statements) as one request,
    /// which D1 runs as one transaction.
    pub async fn query(&self, what: &str, sql: &str) -> Result<Applied> {
        let result = self.api.call(what, Method::POST, &self.url("query"), &query_body(sql)).await?;
        let entries = result.as_array().cloned().unwrap_or_default();
        let rows_written =
            entries.iter().filter_map(|e| e.pointer("/meta/rows_written").and_then(Value::as_u64)).sum();
        let changes = entries.iter().filter_map(|e| e.pointer("/meta/changes").and_then(Value::as_u64)).sum();
        Ok(Applied { statements: entries.len() as u64, rows_written, changes })
    }

    /// Runs one statement with `?N` parameters and returns its rows (JSON
    /// objects by column name).
    pub async fn select(&self, what: &str, sql: &str, params: &[Value]) -> Result<Vec<Value>> {
        let body = json!({ "sql": sql, "params": params });
        let result = self.api.call(what, Method::POST, &self.url("query"), &body).await?;
        Ok(result
            .as_array()
            .and_then(|a| a.last())
            .and_then(|e| e.get("results"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Runs a whole SQL file through the import flow; returns when D1 says
    /// it is complete. A failed import leaves the database as it was.
    pub async fn import(&self, what: &str, sql: bytes::Bytes) -> Result<Applied> {
        let _one_at_a_time = self.import_lock.lock().await;
        let etag = hex::encode(Md5::digest(&sql));
        let url = self.url("import");
        let init = self
            .api
            .call(
                &format!("{what}: import init"),
                Method::POST,
                &url,
                &json!({"action": "init", "etag": etag}),
            )
            .await?;
        let mut state = if let Some(upload_url) = init.get("upload_url").and_then(Value::as_str) {
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
            self.api
                .call(
                    &format!("{what}: import ingest"),
                    Method::POST,
                    &url,
                    &json!({"action": "ingest", "filename": filename, "etag": etag}),
                )
                .await?
        } else {
            // D1 already has this exact file: it answers like a poll.
            init
        };
        let (mut poll, started) = (self.poll_every, std::time::Instant::now());
        loop {
            match state.get("status").and_then(Value::as_str) {
                Some("complete") => {
                    let r = state.get("result").cloned().unwrap_or(Value::Null);
                    return Ok(Applied {
                        statements: r.get("num_queries").and_then(Value::as_u64).unwrap_or(0),
                        rows_written: r.pointer("/meta/rows_written").and_then(Value::as_u64).unwrap_or(0),
                        changes: 0,
                    });
                }
                Some("error") => {
                    let message = state
                        .get("error")
                        .map(|e| e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string()))
                        .unwrap_or_else(|| "import failed".into());
                    let hint = super::limits::shape_limit_hint(what, &message).unwrap_or_else(|| {
                        "D1 refused the file and left the database as it was; the message above is SQLite's"
                            .into()
                    });
                    return Err(Error::Api { what: what.to_string(), status: None, message, hint });
                }
                _ => {}
            }
            waited_too_long(&format!("{what}: import"), started)?;
            let bookmark = state.get("at_bookmark").cloned().unwrap_or(Value::Null);
            tokio::time::sleep(poll).await;
            // Polls count against the request budget: a long import must not
            // spend it, so the interval grows to 5 s.
            poll = (poll * 3 / 2).min(std::time::Duration::from_secs(5));
            state = self
                .api
                .call(
                    &format!("{what}: import poll"),
                    Method::POST,
                    &url,
                    &json!({"action": "poll", "current_bookmark": bookmark}),
                )
                .await?;
        }
    }

    /// Exports the database as SQL (schema and rows, as `wrangler d1
    /// export` does) into `path`: start, poll until complete, then stream
    /// the dump from its signed URL. Returns the bytes written.
    pub async fn export_to(&self, what: &str, path: &std::path::Path) -> Result<u64> {
        let url = self.url("export");
        let mut state = self
            .api
            .call(&format!("{what}: export"), Method::POST, &url, &json!({"output_format": "polling"}))
            .await?;
        let (mut poll, started) = (self.poll_every, std::time::Instant::now());
        loop {
            match state.get("status").and_then(Value::as_str) {
                Some("complete") => break,
                Some("error") => {
                    return Err(Error::Api {
                        what: format!("{what}: export"),
                        status: None,
                        message: state
                            .get("error")
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "export failed".into()),
                        hint: "D1 could not export the database; run the command again later".into(),
                    })
                }
                _ => {}
            }
            waited_too_long(&format!("{what}: export"), started)?;
            tokio::time::sleep(poll).await;
            poll = (poll * 3 / 2).min(std::time::Duration::from_secs(5));
            let body = json!({"output_format": "polling", "current_bookmark": state.get("at_bookmark")});
            state = self.api.call(&format!("{what}: export poll"), Method::POST, &url, &body).await?;
        }
        let signed =
            state.pointer("/result/signed_url").and_then(Value::as_str).ok_or_else(|| Error::Api {
                what: format!("{what}: export"),
                status: None,
                message: format!("the finished export has no signed_url: {state}"),
                hint: "check CLOUDFLARE_API_BASE_URL points at the Cloudflare API".into(),
            })?;
        self.api.download_to(&format!("{what}: export download"), signed, path).await
    }
}

/// An import or export still running after [`D1_WAIT`] is given up on
/// (polling it for ever would hang the run): the error says so, and the
/// rerun sends the range again (upserts: harmless).
fn waited_too_long(what: &str, started: std::time::Instant) -> Result<()> {
    if started.elapsed() < D1_WAIT {
        return Ok(());
    }
    Err(Error::Api {
        what: what.to_string(),
        status: None,
        message: format!("D1 has not finished it after {}", crate::timeouts::human(D1_WAIT)),
        hint: "D1 may be overloaded or stuck on this database; run the command again later \
               (finished ranges are not redone)"
            .into(),
    })
}

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
mod tests {
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
