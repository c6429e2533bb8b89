//! The Cloudflare REST client every request goes through: bearer token,
//! the client-side rate limit, the one retry policy, and the envelope
//! (`{success, errors, messages, result}`) turned into a result or an error
//! that says what to do. The token is only ever put in a header: no
//! message, log or error can contain it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use super::ratelimit::RateLimiter;
use super::retry::{parse_retry_after, Failure, RetryPolicy};
use crate::error::{Error, Result};
use crate::timeouts::human;

/// Everything needed to talk to the API. Its `Debug` masks the token.
#[derive(Clone)]
pub struct ApiSettings {
    pub base_url: String,
    pub account_id: String,
    pub token: String,
    pub rate_limit_requests: u32,
    pub rate_limit_window: Duration,
    pub retry: RetryPolicy,
    /// `connect` bounds reaching the API, `http` its answers.
    pub timeouts: crate::timeouts::Timeouts,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("base_url", &self.base_url)
            .field("account_id", &self.account_id)
            .field("token", &"***")
            .field("rate_limit_requests", &self.rate_limit_requests)
            .field("rate_limit_window", &self.rate_limit_window)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

pub struct Api {
    http: reqwest::Client,
    settings: ApiSettings,
    limiter: RateLimiter,
    on_retry: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Api {
    pub fn new(settings: ApiSettings) -> Result<Self> {
        // reqwest is built without a default TLS provider: use ring, as sqlx does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No total cap: an export download may run for long. reqwest's read
        // timeout runs from sending the request (upload included) to the
        // answer's head, then between two reads of its body.
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeouts.connect)
            .read_timeout(settings.timeouts.http)
            .user_agent(concat!("pgflare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        let limiter = RateLimiter::new(settings.rate_limit_requests, settings.rate_limit_window);
        Ok(Api { http, settings, limiter, on_retry: Arc::new(|_| {}) })
    }

    /// Where retry notices go (the progress display).
    pub fn with_retry_notices(mut self, f: Arc<dyn Fn(&str) + Send + Sync>) -> Self {
        self.on_retry = f;
        self
    }

    fn notice(&self, e: &Error, wait: Duration) {
        (self.on_retry)(&format!("{e}; retrying in {:.1}s", wait.as_secs_f64()));
    }

    pub fn account_url(&self, path: &str) -> String {
        format!("{}/accounts/{}/{path}", self.settings.base_url, self.settings.account_id)
    }

    /// An authenticated API call with a JSON body, retried per the policy;
    /// returns `result`.
    pub async fn call(&self, what: &str, method: reqwest::Method, url: &str, body: &Value) -> Result<Value> {
        self.send(what, method, url, Payload::Json(body)).await
    }

    /// An authenticated POST of NDJSON (Vectorize's insert and upsert).
    pub async fn call_ndjson(&self, what: &str, url: &str, body: bytes::Bytes) -> Result<Value> {
        self.send(what, reqwest::Method::POST, url, Payload::Ndjson(body)).await
    }

    /// An authenticated GET (no body).
    pub async fn get(&self, what: &str, url: &str) -> Result<Value> {
        self.send(what, reqwest::Method::GET, url, Payload::None).await
    }

    async fn send(&self, what: &str, method: reqwest::Method, url: &str, body: Payload<'_>) -> Result<Value> {
        let notice = |e: &Error, wait: Duration| self.notice(e, wait);
        let product = Product::of(url);
        self.settings
            .retry
            .run(
                || async {
                    self.limiter.acquire().await;
                    let mut req = self
                        .http
                        .request(method.clone(), url)
                        .header(AUTHORIZATION, format!("Bearer {}", self.settings.token));
                    req = match &body {
                        Payload::Json(v) => req.json(v),
                        // Bytes clones share the buffer: a retry resends without a copy.
                        Payload::Ndjson(b) => {
                            req.header(CONTENT_TYPE, "application/x-ndjson").body(b.clone())
                        }
                        Payload::None => req,
                    };
                    let resp = req.send().await.map_err(|e| transport(&self.settings.timeouts, what, e))?;
                    envelope(&self.settings.timeouts, what, product, resp).await
                },
                &notice,
            )
            .await
    }

    /// A bare request to a URL the API handed out (upload or download):
    /// no token (it would leak to a storage host) and no rate budget, but
    /// the same retries. Returns the headers and the body.
    pub async fn fetch(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<(HeaderMap, bytes::Bytes)> {
        let notice = |e: &Error, wait: Duration| self.notice(e, wait);
        self.settings
            .retry
            .run(
                || async {
                    let mut req = self.http.request(method.clone(), url);
                    if let Some(b) = &body {
                        req = req.body(b.clone());
                    }
                    let resp = req.send().await.map_err(|e| transport(&self.settings.timeouts, what, e))?;
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let bytes =
                        resp.bytes().await.map_err(|e| transport(&self.settings.timeouts, what, e))?;
                    if status.is_success() {
                        Ok((headers, bytes))
                    } else {
                        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).to_string();
                        Err(classify(
                            what,
                            status,
                            &headers,
                            text,
                            "the upload/download URL refused the request",
                        ))
                    }
                },
                &notice,
            )
            .await
    }
}

enum Payload<'a> {
    Json(&'a Value),
    Ndjson(bytes::Bytes),
    None,
}

/// Which product a URL belongs to: a refused request means different
/// things (and calls for different advice) for D1 and Vectorize.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Product {
    D1,
    Vectorize,
    Other,
}

impl Product {
    fn of(url: &str) -> Product {
        if url.contains("/vectorize/") {
            Product::Vectorize
        } else if url.contains("/d1/") {
            Product::D1
        } else {
            Product::Other
        }
    }
}

impl Api {
    /// Downloads a URL the API handed out (an export's signed URL) into
    /// `path`, streaming, with the same retries (a failed attempt starts
    /// the file again). No token is sent.
    pub async fn download_to(&self, what: &str, url: &str, path: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let notice = |e: &Error, wait: Duration| self.notice(e, wait);
        self.settings
            .retry
            .run(
                || async {
                    let resp = self
                        .http
                        .get(url)
                        .send()
                        .await
                        .map_err(|e| transport(&self.settings.timeouts, what, e))?;
                    let status = resp.status();
                    if !status.is_success() {
                        let headers = resp.headers().clone();
                        let text = resp.text().await.unwrap_or_default();
                        return Err(classify(
                            what,
                            status,
                            &headers,
                            snippet(&text),
                            "the download URL refused",
                        ));
                    }
                    let fatal = |e: std::io::Error| Failure::Fatal(Error::io(path)(e));
                    let mut file = tokio::fs::File::create(path).await.map_err(fatal)?;
                    let mut stream = resp.bytes_stream();
                    let mut n = 0u64;
                    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                        let chunk = chunk.map_err(|e| transport(&self.settings.timeouts, what, e))?;
                        file.write_all(&chunk).await.map_err(fatal)?;
                        n += chunk.len() as u64;
                    }
                    file.flush().await.map_err(fatal)?;
                    Ok(n)
                },
                &notice,
            )
            .await
    }
}

/// A request that got no answer: a failed or refused connection, or one of
/// the run's bounds ran out (then the error says which, and the retry
/// policy gives up sooner: a server that stays silent once usually does
/// again).
fn transport(t: &crate::timeouts::Timeouts, what: &str, e: reqwest::Error) -> Failure {
    let server = e.url().map(|u| match (u.host_str(), u.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => u.to_string(),
    });
    let server = server.unwrap_or_else(|| "the Cloudflare API".into());
    let (message, timed_out) = if e.is_timeout() && e.is_connect() {
        (format!("could not connect to {server} within {} (--connect-timeout)", human(t.connect)), true)
    } else if e.is_timeout() {
        (format!("no answer from {server} within {} (--http-timeout)", human(t.http)), true)
    } else {
        // reqwest errors show the URL; ours hold account and database
        // ids, never the token, so they may be shown. The causes say
        // what happened (`Connection refused`).
        let mut text = format!("request failed: {e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        (text, false)
    };
    Failure::Transient {
        error: Error::Api {
            what: what.to_string(),
            status: None,
            message,
            hint: "the connection failed or the server did not answer in time; pgflare retries such \
                   failures with backoff (a silent server a few times only)"
                .into(),
        },
        retry_after: None,
        timed_out,
    }
}

async fn envelope(
    timeouts: &crate::timeouts::Timeouts,
    what: &str,
    product: Product,
    resp: reqwest::Response,
) -> std::result::Result<Value, Failure> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.map_err(|e| transport(timeouts, what, e))?;
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let success = parsed.as_ref().and_then(|v| v.get("success")).and_then(Value::as_bool);
    if status.is_success() && success != Some(false) {
        return match parsed {
            Some(mut v) => Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null)),
            None => Err(Failure::Transient {
                error: Error::Api {
                    what: what.into(),
                    status: Some(status.as_u16()),
                    message: format!("the answer is not JSON: {}", snippet(&text)),
                    hint: "a proxy may be in the way; check CLOUDFLARE_API_BASE_URL".into(),
                },
                retry_after: None,
                timed_out: false,
            }),
        };
    }
    let message = match parsed.as_ref().and_then(|v| v.get("errors")).and_then(Value::as_array) {
        Some(errors) if !errors.is_empty() => errors
            .iter()
            .map(|e| {
                let code = e.get("code").map(|c| c.to_string()).unwrap_or_default();
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
                format!("[{code}] {msg}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => snippet(&text),
    };
    let fallback = match (status.as_u16(), product) {
        // Vectorize says an index is missing with code 3000 and HTTP 400,
        // or deleted with 3005 and HTTP 410 (see cloudflare::vectorize).
        (400, Product::Vectorize) if message.starts_with("[3000]") => {
            "the Vectorize index does not exist: check the index name (--vectorize-index) and \
             CLOUDFLARE_ACCOUNT_ID, or let pgflare create it (--create-index)"
                .to_string()
        }
        (410, Product::Vectorize) => "the Vectorize index was deleted (Vectorize answers so for a while \
                                      after a delete): create it again, or load into another index"
            .to_string(),
        (400, Product::Vectorize) => {
            "Vectorize refused the request (the message says which vector and limit); fix the data or \
             the mapping (or set [vectorize] on_invalid = \"skip\") and run the command again"
                .to_string()
        }
        (400, Product::D1) => super::limits::shape_limit_hint(what, &message).unwrap_or_else(|| {
            "D1 refused the SQL; the message above is SQLite's. Fix the data or the mapping and run the \
             command again: finished parts are not redone"
                .into()
        }),
        _ => String::new(),
    };
    Err(classify(what, status, &headers, message, &fallback))
}

/// Decides whether a failed answer is worth another attempt, and what to tell the user.
fn classify(what: &str, status: StatusCode, headers: &HeaderMap, message: String, fallback: &str) -> Failure {
    let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    let hint = match status.as_u16() {
        429 => "over Cloudflare's rate limit (1200 requests / 5 minutes per token); pgflare waits as Retry-After says".into(),
        400 if message.contains("[6003]") || message.contains("[6111]") => {
            "the Authorization header was refused: set CLOUDFLARE_API_TOKEN to an API token (not a global API key)".into()
        }
        401 | 403 => "the API token was refused: check CLOUDFLARE_API_TOKEN, that it has D1 (and Vectorize) edit permission, and CLOUDFLARE_ACCOUNT_ID".into(),
        409 => "it conflicts with what exists (an index or metadata index of that name, perhaps created by an earlier attempt)".into(),
        404 => "not found: check CLOUDFLARE_ACCOUNT_ID and the D1 database id / Vectorize index name (or the wrangler binding)".into(),
        400 if !fallback.is_empty() => fallback.into(),
        s if s >= 500 => "Cloudflare failed; pgflare retries with backoff".into(),
        _ => if fallback.is_empty() { "unexpected answer".into() } else { fallback.into() },
    };
    let error = Error::Api { what: what.to_string(), status: Some(status.as_u16()), message, hint };
    if transient {
        Failure::Transient { error, retry_after, timed_out: false }
    } else {
        Failure::Fatal(error)
    }
}

/// The Cloudflare error codes of an API error, read back from its message
/// as [`envelope`] writes it (`[code] message; [code] message`): products
/// say what went wrong with the code (Vectorize answers a missing index
/// with HTTP 400 and code 3000), so callers decide on codes, not statuses.
pub(crate) fn error_codes(e: &Error) -> Vec<u32> {
    let Error::Api { message, .. } = e else { return Vec::new() };
    message.split("; ").filter_map(|part| part.strip_prefix('[')?.split_once(']')?.0.parse().ok()).collect()
}

pub(crate) fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refusal(product: Product, body: &str) -> Error {
        let resp = axum::http::Response::builder().status(400).body(body.to_string()).expect("response");
        let timeouts = crate::timeouts::Timeouts::default();
        match envelope(&timeouts, "reading keys of changed buckets of chunks", product, resp.into()).await {
            Err(Failure::Fatal(e)) => e,
            Err(Failure::Transient { error, .. }) => panic!("a 400 is not transient: {error}"),
            Ok(v) => panic!("a refusal answered {v}"),
        }
    }

    fn hint(e: &Error) -> &str {
        match e {
            Error::Api { hint, .. } => hint,
            other => panic!("not an API error: {other}"),
        }
    }

    #[tokio::test]
    async fn error_codes_are_read_back_from_the_envelope() {
        let body = r#"{"success":false,"errors":[{"code":3000,"message":"vectorize.index.not_found - Index name \"x\""},{"code":10000,"message":"a; [b]"}]}"#;
        let e = refusal(Product::Vectorize, body).await;
        assert_eq!(error_codes(&e), vec![3000, 10000], "{e}");
        assert_eq!(error_codes(&refusal(Product::Vectorize, "not json").await), Vec::<u32>::new());
        assert_eq!(error_codes(&Error::Internal("[3000] not an API error".into())), Vec::<u32>::new());
    }

    /// Found with the issue-13 emulator: a write to an index deleted
    /// mid-run answers HTTP 400, code 3000, and the hint said to fix the
    /// data.
    #[tokio::test]
    async fn a_missing_vectorize_index_is_not_blamed_on_the_data() {
        let body = r#"{"success":false,"errors":[{"code":3000,"message":"vectorize.index.not_found - Index name \"x\""}]}"#;
        let e = refusal(Product::Vectorize, body).await;
        assert!(hint(&e).contains("does not exist") && !hint(&e).contains("fix the data"), "{e}");
    }

    #[tokio::test]
    async fn d1_refusing_generated_sql_for_a_limit_is_pgflares_fault_not_the_datas() {
        let body = r#"{"success":false,"errors":[{"code":7500,"message":"Expression tree is too large (maximum depth 100): SQLITE_ERROR"}],"messages":[],"result":null}"#;
        let e = refusal(Product::D1, body).await;
        let (text, h) = (e.to_string(), hint(&e));
        assert!(
            text.contains("reading keys of changed buckets of chunks") && text.contains("[7500]"),
            "{text}"
        );
        assert!(h.contains("100 levels of expression nesting") && h.contains("pgflare limit problem"), "{h}");
        assert!(!h.contains("Fix the data"), "{h}");
        // A refusal the data causes keeps the advice to fix the data.
        let body = r#"{"success":false,"errors":[{"code":7500,"message":"NOT NULL constraint failed: chunks.content: SQLITE_CONSTRAINT"}]}"#;
        let e = refusal(Product::D1, body).await;
        assert!(hint(&e).contains("Fix the data or the mapping"), "{e}");
    }
}
