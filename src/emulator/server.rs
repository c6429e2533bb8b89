//! The accept loop and what happens to every API request before a handler
//! sees it, in this order: injected latency and 5xx faults, the
//! authentication headers, the per-user rate limit, the account id, an
//! injected D1 internal error. After the handler, an injected drop closes
//! the connection without an answer. With a bandwidth set, every request
//! body is read and every answer written at that pace ([`super::throttle`]).
//!
//! The loop is hyper-util's rather than `axum::serve` because a dropped
//! answer needs the service to fail: hyper then closes the connection
//! without writing anything, which is what a client sees when a proxy dies.
//!
//! Authentication answers as Cloudflare's API does (all observed; the
//! codes are not in Cloudflare's docs):
//! - no `Authorization`, `X-Auth-Key` or `X-Auth-Email` header: HTTP 400,
//!   code 9106 "Missing X-Auth-Key, X-Auth-Email or Authorization headers";
//! - an `Authorization` header that is not `Bearer <token>` with a token of
//!   bearer-token characters (RFC 6750 `b64token`): HTTP 400, code 6003
//!   "Invalid request headers" whose `error_chain` holds 6111 "Invalid
//!   format for Authorization header" (cloudflare/workers-sdk#5175,
//!   jeessy2/ddns-go#916);
//! - `X-Auth-Email`/`X-Auth-Key` (a global API key, which the emulator
//!   does not know): HTTP 400, code 6003 with 6102 "Invalid format for
//!   X-Auth-Email header" / 6103 "Invalid format for X-Auth-Key header"
//!   (cloudflare/cloudflare-typescript#161, openwrt/packages#15714);
//! - a well-formed token that is not the emulator's: HTTP 403, code 10000
//!   "Authentication error" (terraform-provider-cloudflare#1533).
//!
//! An unknown account id is HTTP 404 with code 7003 "Could not route to ...".
//! Source: cloudflare/wrangler-legacy#1598 (7003 "Could not route to /accounts/<id>/..., perhaps
//! your object identifier is invalid?" then 7000 "No route for that URI"), cloudflare/workers-sdk#2100.
//! That report shows HTTP 400 and 7000 as a second entry of `errors`, not 404 with an `error_chain`.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper_util::rt::TokioIo;
use rand::RngExt;
use tokio::sync::watch;
use tower::ServiceExt;

use super::envelope::ApiError;
use super::throttle::Paced;
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
                    crate::output::err_line(format_args!("pgflare emulate: accept failed: {e}"));
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
    let paced = |body: Body| match state.bandwidth {
        Some(rate) => Body::new(Paced::new(body, rate)),
        None => body,
    };
    let req = req.map(|b| paced(Body::new(b)));
    let path = req.uri().path().to_string();
    if path.starts_with(UPLOAD_PREFIX) || path.starts_with(DOWNLOAD_PREFIX) {
        return Ok(call(router, req).await.map(paced));
    }
    let roll = state.roll();
    if !state.faults.latency.is_zero() {
        tokio::time::sleep(state.faults.latency).await;
    }
    if let Some(status) = roll.error {
        let e = ApiError::new(status, 10013, format!("Injected fault: HTTP {}", status.as_u16()));
        return Ok(e.into_response());
    }
    if let Err(e) = authenticate(&req, &state.token) {
        return Ok(e.into_response());
    }
    let rate = state.rate.check(&state.token);
    if !rate.allowed {
        return Ok(rate.refusal());
    }
    if let Some(account) = path.strip_prefix("/client/v4/accounts/").and_then(|r| r.split('/').next()) {
        if account != state.account_id {
            // Source: cloudflare/wrangler-legacy#1598, cloudflare/workers-sdk#2100 (see the module doc).
            let msg = format!("Could not route to {path}, perhaps your object identifier is invalid?");
            let e = ApiError::new(StatusCode::NOT_FOUND, 7003, msg).with_chain(7000, "No route for that URI");
            return Ok(e.into_response());
        }
    }
    if roll.internal && is_d1_query(&path) {
        return Ok(ApiError::d1_internal().into_response());
    }
    let mut resp = call(router, req).await;
    rate.headers(&mut resp);
    if roll.drop {
        return Err(Dropped);
    }
    Ok(resp.map(paced))
}

/// D1's `query` and `raw`: where the observed internal errors come from.
fn is_d1_query(path: &str) -> bool {
    path.contains("/d1/database/") && (path.ends_with("/query") || path.ends_with("/raw"))
}

async fn call(router: axum::Router, req: Request<Body>) -> Response<Body> {
    match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Checks the authentication headers as Cloudflare does (module comment).
fn authenticate(req: &Request<Body>, token: &str) -> Result<(), ApiError> {
    let headers = req.headers();
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        let (email, key) = (headers.get("x-auth-email"), headers.get("x-auth-key"));
        if email.is_none() && key.is_none() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                9106,
                "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
            ));
        }
        let mut e = ApiError::bad(6003, "Invalid request headers");
        if email.is_some() {
            e = e.with_chain(6102, "Invalid format for X-Auth-Email header");
        }
        return Err(e.with_chain(6103, "Invalid format for X-Auth-Key header"));
    };
    let malformed = || {
        ApiError::bad(6003, "Invalid request headers")
            .with_chain(6111, "Invalid format for Authorization header")
    };
    let given = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(malformed)?;
    if !is_b64token(given) {
        return Err(malformed());
    }
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, 10000, "Authentication error"));
    }
    Ok(())
}

/// RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+"
/// / "/" ) *"="`. Cloudflare's own tokens are 40 of `[A-Za-z0-9_-]`; a
/// token with a space, a quote or a line break in it (copied with its
/// surroundings) is malformed.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One request's fault draws.
struct Roll {
    error: Option<StatusCode>,
    drop: bool,
    /// Answer a D1 query with an internal error (HTTP 500, code 7500).
    internal: bool,
}

impl State {
    /// Draws the same four numbers for every request, so a seed gives the
    /// same fault sequence whatever the rates are.
    fn roll(&self) -> Roll {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let (e, d, which): (f64, f64, usize) = (rng.random(), rng.random(), rng.random_range(0..3));
        let i: f64 = rng.random();
        let status =
            [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE]
                [which];
        Roll {
            error: (e < self.faults.error_rate).then_some(status),
            drop: d < self.faults.drop_rate,
            internal: i < self.faults.internal_error_rate,
        }
    }
}

/// Unknown paths: Cloudflare's answer for a URI it has no route for.
/// Source: cloudflare/serverless-cloudflare-workers#32 (code 7000 "No route for that URI" for an
/// endpoint that does not exist); Jazee6/cloudflare-ai-web#52 reports it with HTTP 400, not 404.
pub(crate) async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, 7000, "No route for that URI")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 10405, "Method not allowed")
}
