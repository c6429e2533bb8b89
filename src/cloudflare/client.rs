//! The Cloudflare REST client every request goes through: bearer token,
//! the client-side rate limit, the one retry policy, and the envelope
//! (`{success, errors, messages, result}`) turned into a result or an error
//! that says what to do. The token is only ever put in a header: no
//! message, log or error can contain it.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

pub(crate) use super::failure::snippet;
use super::failure::{check_token, classify, stalled, transport};
use super::ratelimit::RateLimiter;
use super::retry::{Failure, RetryPolicy};
use super::transfer::{with_body, Activity, JSON_ANSWER_FACTOR};
use crate::error::{Error, Result};
use crate::progress::Progress;

pub mod probe;

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

#[cfg(test)]
impl ApiSettings {
    /// For lib tests against a local server (the emulator's account
    /// `acct`): a rate limit no test reaches, one retry.
    pub fn for_tests(base_url: &str, token: &str) -> Self {
        ApiSettings {
            base_url: base_url.into(),
            account_id: "acct".into(),
            token: token.into(),
            rate_limit_requests: 10_000,
            rate_limit_window: Duration::from_secs(1),
            retry: RetryPolicy { attempts: 2, ..RetryPolicy::default() },
            timeouts: crate::timeouts::Timeouts::default(),
        }
    }
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
    /// Where retry notices and waits are shown.
    progress: Option<Progress>,
}

impl Api {
    pub fn new(settings: ApiSettings) -> Result<Self> {
        // reqwest is built without a default TLS provider: use ring, as sqlx does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        check_token(&settings.token)?;
        // Only the connection has a timeout here: what follows is bounded
        // by silence ([`super::transfer`]), not by a total that a large
        // upload or download at a slow pace would outlast.
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeouts.connect)
            .user_agent(concat!("pgflare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        let limiter = RateLimiter::new(settings.rate_limit_requests, settings.rate_limit_window);
        Ok(Api { http, settings, limiter, progress: None })
    }

    /// Shows retry notices, and long waits as a countdown, on `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The wait before a retry, shown to the user.
    fn wait(&self, e: &Error, wait: Duration) -> BoxFuture<'static, ()> {
        super::wait::announce(self.progress.clone(), e.to_string(), wait)
    }

    /// A wait for the client's own request budget, shown when it is long.
    pub(super) fn budget_wait(&self, wait: Duration) -> BoxFuture<'static, ()> {
        let s = &self.settings;
        let notice = format!(
            "the request budget is spent: {} requests per {} (--rate-limit; Cloudflare allows 1200 \
             per 5 min per user, shared with wrangler and the dashboard)",
            s.rate_limit_requests,
            crate::timeouts::human(s.rate_limit_window)
        );
        super::wait::budget(self.progress.clone(), notice, wait)
    }

    /// Runs one attempt of a request: `send` builds and sends it with its
    /// body tracked, `read` takes the answer; nothing may stay still for
    /// `--http-timeout` (and a JSON answer has its cap).
    async fn attempt<T>(
        &self,
        what: &str,
        url: &str,
        json_cap: bool,
        send: impl FnOnce(&Activity) -> reqwest::RequestBuilder,
        read: impl AsyncFnOnce(reqwest::Response, &Activity) -> std::result::Result<T, Failure>,
    ) -> std::result::Result<T, Failure> {
        let t = &self.settings.timeouts;
        let activity = Activity::new();
        let cap = json_cap.then(|| t.http * JSON_ANSWER_FACTOR);
        let run = async {
            let resp = send(&activity).send().await.map_err(|e| transport(t, what, e))?;
            activity.touch();
            read(resp, &activity).await
        };
        match activity.bound(run, t.http, t.connect, cap).await {
            Ok(r) => r,
            Err(stall) => Err(stalled(t, what, url, stall)),
        }
    }

    /// Tells the user about a wait that is not a retry (a D1 database
    /// busy with an import), where retry notices go.
    pub fn notify(&self, message: &str) {
        if let Some(p) = &self.progress {
            p.println(message);
        }
    }

    /// The request budget: requests that may go now (`None` while one
    /// waits for it), and its size, per window.
    pub fn budget(&self) -> (Option<usize>, u32, Duration) {
        let s = &self.settings;
        (self.limiter.left(), s.rate_limit_requests, s.rate_limit_window)
    }

    /// Requests sent since the start (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.limiter.total()
    }

    /// The bounds of this run.
    pub fn timeouts(&self) -> crate::timeouts::Timeouts {
        self.settings.timeouts
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
        let wait = |e: &Error, d: Duration| self.wait(e, d);
        let product = Product::of(url);
        // An NDJSON upsert is a transfer (up to 100 MB): no cap on its answer.
        let (bytes, content_type, json_cap) = match &body {
            Payload::Json(v) => {
                let b = serde_json::to_vec(v).map_err(|e| Error::Internal(format!("{what}: {e}")))?;
                (Some(bytes::Bytes::from(b)), "application/json", true)
            }
            // Bytes clones share the buffer: a retry resends without a copy.
            Payload::Ndjson(b) => (Some(b.clone()), "application/x-ndjson", false),
            Payload::None => (None, "", true),
        };
        self.settings
            .retry
            .run_waiting(
                || async {
                    self.limiter.acquire(|d| self.budget_wait(d)).await;
                    let send = |activity: &Activity| {
                        let req = self
                            .http
                            .request(method.clone(), url)
                            .header(AUTHORIZATION, format!("Bearer {}", self.settings.token));
                        let req = match bytes {
                            Some(_) => req.header(CONTENT_TYPE, content_type),
                            None => req,
                        };
                        with_body(req, bytes.as_ref(), activity)
                    };
                    let read = async |resp: reqwest::Response, activity: &Activity| {
                        let t = &self.settings.timeouts;
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        let text = read_text(resp, activity).await.map_err(|e| transport(t, what, e))?;
                        envelope(what, product, status, &headers, &text)
                    };
                    let out = self.attempt(what, url, json_cap, send, read).await;
                    if let Err(Failure::Transient { retry_after: Some(r), .. }) = &out {
                        // A 429: Cloudflare refuses every call until then.
                        self.limiter.hold(*r);
                    }
                    out
                },
                &wait,
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
        let wait = |e: &Error, d: Duration| self.wait(e, d);
        self.settings
            .retry
            .run_waiting(
                || async {
                    let send = |activity: &Activity| {
                        with_body(self.http.request(method.clone(), url), body.as_ref(), activity)
                    };
                    let read = async |resp: reqwest::Response, activity: &Activity| {
                        let t = &self.settings.timeouts;
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        let bytes = read_bytes(resp, activity).await.map_err(|e| transport(t, what, e))?;
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
                    };
                    self.attempt(what, url, false, send, read).await
                },
                &wait,
            )
            .await
    }
}

/// An answer's body, each piece received counted as progress.
async fn read_bytes(resp: reqwest::Response, activity: &Activity) -> reqwest::Result<bytes::Bytes> {
    let mut stream = resp.bytes_stream();
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        out.extend_from_slice(&chunk?);
        activity.touch();
    }
    Ok(out.freeze())
}

async fn read_text(resp: reqwest::Response, activity: &Activity) -> reqwest::Result<String> {
    let bytes = read_bytes(resp, activity).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
        let wait = |e: &Error, d: Duration| self.wait(e, d);
        self.settings
            .retry
            .run_waiting(
                || async {
                    let send = |activity: &Activity| {
                        activity.sent();
                        self.http.get(url)
                    };
                    let read = async |resp: reqwest::Response, activity: &Activity| {
                        let t = &self.settings.timeouts;
                        let status = resp.status();
                        if !status.is_success() {
                            let headers = resp.headers().clone();
                            let text = read_text(resp, activity).await.unwrap_or_default();
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
                            let chunk = chunk.map_err(|e| transport(t, what, e))?;
                            activity.touch();
                            file.write_all(&chunk).await.map_err(fatal)?;
                            n += chunk.len() as u64;
                        }
                        file.flush().await.map_err(fatal)?;
                        Ok(n)
                    };
                    self.attempt(what, url, false, send, read).await
                },
                &wait,
            )
            .await
    }
}

// `Failure` is an `Error` with two small fields, returned once per answer.
#[allow(clippy::result_large_err)]
fn envelope(
    what: &str,
    product: Product,
    status: StatusCode,
    headers: &HeaderMap,
    text: &str,
) -> std::result::Result<Value, Failure> {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let success = parsed.as_ref().and_then(|v| v.get("success")).and_then(Value::as_bool);
    if status.is_success() && success != Some(false) {
        return match parsed {
            Some(mut v) => Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null)),
            None => Err(Failure::Transient {
                error: Error::Api {
                    what: what.into(),
                    status: Some(status.as_u16()),
                    message: format!("the answer is not JSON: {}", snippet(text)),
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
        _ => snippet(text),
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
    Err(classify(what, status, headers, message, &fallback))
}

/// The Cloudflare error codes of an API error, read back from its message
/// as [`envelope`] writes it (`[code] message; [code] message`): products
/// say what went wrong with the code (Vectorize answers a missing index
/// with HTTP 400 and code 3000), so callers decide on codes, not statuses.
pub(crate) fn error_codes(e: &Error) -> Vec<u32> {
    let Error::Api { message, .. } = e else { return Vec::new() };
    message.split("; ").filter_map(|part| part.strip_prefix('[')?.split_once(']')?.0.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refusal(product: Product, body: &str) -> Error {
        let status = StatusCode::BAD_REQUEST;
        match envelope("reading keys of changed buckets of chunks", product, status, &HeaderMap::new(), body)
        {
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
