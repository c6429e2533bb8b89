//! Cloudflare's API rate limit as the emulator enforces it.
//!
//! cloudflare-docs `fundamentals/api/reference/limits.mdx` (and its partial
//! `partials/fundamentals/api-rate-limits.mdx`): "The global rate limit for
//! the Cloudflare API is 1,200 requests per five minute period per user,
//! and applies cumulatively regardless of whether the request is made via
//! the dashboard, API key, or API token. If you exceed this limit, all API
//! calls for the next five minutes will be blocked, receiving a HTTP 429".
//! So: at most `limit` requests in any `window` (a sliding window, the
//! stricter reading of "per five minute period"); the request over it
//! blocks the user for a whole `window` from that moment, and every call
//! in that time is refused, whatever its budget would have been.
//!
//! The answers carry the documented headers: `Ratelimit` (`"default";r=
//! remaining;t=seconds until capacity`), `Ratelimit-Policy`
//! (`"default";q=limit;w=window`), and on a 429 `retry-after`, "the number
//! of seconds, rounded up, until more capacity is available". The error
//! itself is code 971 "Please wait and consider throttling your request
//! speed" (observed: third-party reports of the real API's 429 body; the
//! code is not documented).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;

use super::envelope::ApiError;

/// The code of Cloudflare's 429 answer.
pub const CODE_RATE_LIMITED: u32 = 971;

pub(crate) struct RateLimiter {
    limit: u32,
    window: Duration,
    users: Mutex<HashMap<String, User>>,
}

/// One user's recent requests, and the end of a block.
#[derive(Default)]
struct User {
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

pub(crate) struct RateDecision {
    pub allowed: bool,
    limit: u32,
    remaining: u32,
    /// Seconds (rounded up) until more capacity is available.
    reset_secs: u64,
    window_secs: u64,
}

impl RateDecision {
    /// The `Ratelimit` and `Ratelimit-Policy` headers.
    pub fn headers(&self, resp: &mut Response<Body>) {
        let h = resp.headers_mut();
        let now = format!("\"default\";r={};t={}", self.remaining, self.reset_secs);
        let policy = format!("\"default\";q={};w={}", self.limit, self.window_secs);
        if let (Ok(now), Ok(policy)) = (HeaderValue::from_str(&now), HeaderValue::from_str(&policy)) {
            h.insert("ratelimit", now);
            h.insert("ratelimit-policy", policy);
        }
    }

    /// The 429 answer for a refused request.
    pub fn refusal(&self) -> Response<Body> {
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            CODE_RATE_LIMITED,
            "Please wait and consider throttling your request speed",
        );
        let mut resp = e.into_response();
        self.headers(&mut resp);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(self.reset_secs));
        resp
    }
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter { limit, window, users: Mutex::new(HashMap::new()) }
    }

    /// Counts one request of `user` (all of a user's tokens share the
    /// budget; the emulator knows one token, so one user).
    pub fn check(&self, user: &str) -> RateDecision {
        self.check_at(user, Instant::now())
    }

    fn check_at(&self, user: &str, now: Instant) -> RateDecision {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let u = users.entry(user.to_string()).or_default();
        if let Some(until) = u.blocked_until {
            if now < until {
                return self.decision(false, 0, until - now);
            }
            // The block is over: the budget starts afresh.
            *u = User::default();
        }
        while u.sent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            u.sent.pop_front();
        }
        if u.sent.len() >= self.limit as usize {
            u.blocked_until = Some(now + self.window);
            return self.decision(false, 0, self.window);
        }
        u.sent.push_back(now);
        let remaining = self.limit.saturating_sub(u.sent.len() as u32);
        // Capacity comes back when the oldest request leaves the window.
        let back = u.sent.front().map(|t| self.window.saturating_sub(now.duration_since(*t)));
        self.decision(true, remaining, back.unwrap_or(self.window))
    }

    fn decision(&self, allowed: bool, remaining: u32, wait: Duration) -> RateDecision {
        RateDecision {
            allowed,
            limit: self.limit,
            remaining,
            reset_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            window_secs: self.window.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_every_call_is_refused_for_a_whole_window() {
        let rl = RateLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(rl.check_at("u", at(0)).allowed);
        assert!(rl.check_at("u", at(1)).allowed);
        assert!(rl.check_at("u", at(2)).allowed);
        let over = rl.check_at("u", at(3));
        assert!(!over.allowed);
        assert_eq!(over.reset_secs, 10, "blocked for the next window, from the request over it");
        // At 11 s the sliding window would have room again, but the block holds until 13 s.
        let blocked = rl.check_at("u", at(11));
        assert!(!blocked.allowed);
        assert_eq!(blocked.reset_secs, 2);
        assert!(rl.check_at("u", at(13)).allowed, "the block ends after a window");
        assert!(rl.check_at("someone-else", at(4)).allowed, "per user");
    }

    #[test]
    fn the_window_slides() {
        let rl = RateLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(rl.check_at("u", at(0)).allowed);
        let d = rl.check_at("u", at(9));
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_secs), (0, 1), "capacity is back when the first leaves");
        assert!(rl.check_at("u", at(10)).allowed, "the request at 0 s left the window");
    }
}
