//! One authenticated GET, one attempt, with the answer's headers: what
//! `pgflare doctor` needs to diagnose an account. A diagnosis should report
//! a failure as it is (a 429 means the budget is spent now, a 5xx that
//! Cloudflare failed) rather than retry it for minutes, and it reads the
//! rate-limit headers, which [`Api::get`] does not return. The token,
//! the client-side budget and the envelope are the client's own.

use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use serde_json::Value;

use super::{envelope, read_text, transport, with_body, Activity, Api, Product};
use crate::cloudflare::retry::{parse_retry_after, Failure};
use crate::error::Error;

/// A probe's answer: `result` and the headers it came with.
#[derive(Debug)]
pub struct Probe {
    pub result: Value,
    pub headers: HeaderMap,
}

/// A refused or failed probe: the error as the client words it, and how
/// long Cloudflare asked to wait (a 429's `Retry-After`).
#[derive(Debug)]
pub struct ProbeFailure {
    pub error: Error,
    pub retry_after: Option<std::time::Duration>,
    pub headers: HeaderMap,
}

impl Api {
    /// `GET url` once (see the module comment).
    pub async fn probe(&self, what: &str, url: &str) -> std::result::Result<Probe, ProbeFailure> {
        self.limiter.acquire(|d| self.budget_wait(d)).await;
        // One attempt under the client's own bounds (connect, stall, the
        // JSON answer's cap); the headers ride along with the answer.
        let send = |activity: &Activity| {
            let req = self.http.get(url).header(AUTHORIZATION, format!("Bearer {}", self.settings.token));
            with_body(req, None, activity)
        };
        let read = async |resp: reqwest::Response, activity: &Activity| {
            let (status, headers) = (resp.status(), resp.headers().clone());
            let answer = match read_text(resp, activity).await {
                Err(e) => Err(failure(transport(&self.settings.timeouts, what, e), headers)),
                Ok(text) => match envelope(what, Product::of(url), status, &headers, &text) {
                    Ok(result) => Ok(Probe { result, headers }),
                    Err(f) => Err(failure(f, headers)),
                },
            };
            Ok(answer)
        };
        let attempt = self.attempt(what, url, true, send, read);
        match attempt.await {
            Ok(answer) => answer,
            Err(f) => Err(failure(f, HeaderMap::new())),
        }
    }
}

fn failure(f: Failure, headers: HeaderMap) -> ProbeFailure {
    let header_wait = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    match f {
        Failure::Fatal(error) => ProbeFailure { error, retry_after: header_wait, headers },
        Failure::Transient { error, retry_after, .. } => {
            ProbeFailure { error, retry_after: retry_after.or(header_wait), headers }
        }
    }
}
