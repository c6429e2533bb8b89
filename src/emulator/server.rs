//! The accept loop and what happens to every API request before a handler
//! sees it, in this order: injected latency and 5xx faults, the bearer
//! token, the per-token rate limit, the account id. After the handler, an
//! injected drop closes the connection without an answer.
//!
//! The loop is hyper-util's rather than `axum::serve` because a dropped
//! answer needs the service to fail: hyper then closes the connection
//! without writing anything, which is what a client sees when a proxy dies.
//!
//! Status codes follow Cloudflare: a missing or malformed `Authorization`
//! header is HTTP 400 with code 6003 "Invalid request headers" (its
//! `error_chain` holds 6111 "Invalid format for Authorization header"); a
//! wrong token is HTTP 403 with code 10000 "Authentication error" (what
//! Cloudflare answers, e.g. terraform-provider-cloudflare#1533); an unknown
//! account id is HTTP 404 with code 7003 "Could not route to ...".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper_util::rt::TokioIo;
use rand::RngExt;
use tokio::sync::watch;
use tower::ServiceExt;

use super::envelope::ApiError;
use super::State;

/// Paths served without token, faults or rate limit (they stand for R2
/// signed URLs, which carry their own authorization).
pub const UPLOAD_PREFIX: &str = "/__upload/";
pub const DOWNLOAD_PREFIX: &str = "/__export/";

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    crate::commands::output::err_line(format_args!("pgflare emulate: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (router, state) = (router.clone(), state.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(router.clone(), state.clone(), req));
            // Errors here are client disconnects and injected drops.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The error that makes hyper close the connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected fault: connection dropped after the request ran")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    router: axum::Router,
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Dropped> {
    let req = req.map(Body::new);
    let path = req.uri().path().to_string();
    if path.starts_with(UPLOAD_PREFIX) || path.starts_with(DOWNLOAD_PREFIX) {
        return Ok(call(router, req).await);
    }
    let roll = state.roll();
    if !state.faults.latency.is_zero() {
        tokio::time::sleep(state.faults.latency).await;
    }
    if let Some(status) = roll.error {
        let e = ApiError::new(status, 10013, format!("Injected fault: HTTP {}", status.as_u16()));
        return Ok(e.into_response());
    }
    let token = match bearer(&req) {
        Ok(t) => t,
        Err(e) => return Ok(e.into_response()),
    };
    if !constant_time_eq(token.as_bytes(), state.token.as_bytes()) {
        return Ok(ApiError::new(StatusCode::FORBIDDEN, 10000, "Authentication error").into_response());
    }
    let rate = state.rate.check(&state.token);
    if !rate.allowed {
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            971,
            "Please wait and consider throttling your request speed",
        );
        let mut resp = e.into_response();
        rate.headers(&mut resp);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(rate.reset_secs));
        return Ok(resp);
    }
    if let Some(account) = path.strip_prefix("/client/v4/accounts/").and_then(|r| r.split('/').next()) {
        if account != state.account_id {
            let msg = format!("Could not route to {path}, perhaps your object identifier is invalid?");
            let e = ApiError::new(StatusCode::NOT_FOUND, 7003, msg).with_chain(7000, "No route for that URI");
            return Ok(e.into_response());
        }
    }
    let mut resp = call(router, req).await;
    rate.headers(&mut resp);
    if roll.drop {
        return Err(Dropped);
    }
    Ok(resp)
}

async fn call(router: axum::Router, req: Request<Body>) -> Response<Body> {
    match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(req: &Request<Body>) -> Result<&str, ApiError> {
    let bad = || {
        ApiError::new(StatusCode::BAD_REQUEST, 6003, "Invalid request headers")
            .with_chain(6111, "Invalid format for Authorization header")
    };
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(bad)?;
    let value = value.to_str().map_err(|_| bad())?;
    let token = value.strip_prefix("Bearer ").map(str::trim).ok_or_else(bad)?;
    if token.is_empty() {
        return Err(bad());
    }
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One request's fault draws.
struct Roll {
    error: Option<StatusCode>,
    drop: bool,
}

impl State {
    /// Draws the same three numbers for every request, so a seed gives the
    /// same fault sequence whatever the rates are.
    fn roll(&self) -> Roll {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let (e, d, which): (f64, f64, usize) = (rng.random(), rng.random(), rng.random_range(0..3));
        let status =
            [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE]
                [which];
        Roll { error: (e < self.faults.error_rate).then_some(status), drop: d < self.faults.drop_rate }
    }
}

/// A fixed window of `limit` requests per `window`, per token.
pub(crate) struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

pub(crate) struct RateDecision {
    allowed: bool,
    limit: u32,
    remaining: u32,
    reset_secs: u64,
    window_secs: u64,
}

impl RateDecision {
    /// The IETF `RateLimit` headers Cloudflare sends.
    fn headers(&self, resp: &mut Response<Body>) {
        let h = resp.headers_mut();
        let now = format!("\"default\";r={};t={}", self.remaining, self.reset_secs);
        let policy = format!("\"default\";q={};w={}", self.limit, self.window_secs);
        if let (Ok(now), Ok(policy)) = (HeaderValue::from_str(&now), HeaderValue::from_str(&policy)) {
            h.insert("ratelimit", now);
            h.insert("ratelimit-policy", policy);
        }
    }
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter { limit, window, windows: Mutex::new(HashMap::new()) }
    }

    fn check(&self, key: &str) -> RateDecision {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        let allowed = entry.1 < self.limit;
        if allowed {
            entry.1 += 1;
        }
        let left = self.window.saturating_sub(now.duration_since(entry.0));
        RateDecision {
            allowed,
            limit: self.limit,
            remaining: self.limit - entry.1,
            reset_secs: left.as_secs_f64().ceil().max(1.0) as u64,
            window_secs: self.window.as_secs().max(1),
        }
    }
}

/// Unknown paths: Cloudflare's answer for a URI it has no route for.
pub(crate) async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, 7000, "No route for that URI")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 10405, "Method not allowed")
}
