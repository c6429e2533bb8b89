//! The client-side request budget: at most N requests in any sliding
//! window (Cloudflare: 1200 per 5 minutes per user, all endpoints
//! together). Hand-written rather than a token bucket crate because a
//! bucket with a burst lets through up to twice the budget inside one
//! window, and Cloudflare then blocks the token for minutes; a log of the
//! last N send times is exact and costs N instants.

use std::collections::VecDeque;
use std::time::Duration;

use futures::future::BoxFuture;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    requests: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
    /// Requests let through since the start, for callers that pace
    /// themselves (`sync --follow`).
    total: std::sync::atomic::AtomicU64,
    /// Until when Cloudflare said no call gets through (a 429's
    /// `Retry-After`): every worker waits, not only the one refused.
    held: std::sync::Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(requests: u32, window: Duration) -> Self {
        RateLimiter {
            requests: requests.max(1) as usize,
            window,
            sent: Mutex::new(VecDeque::new()),
            total: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::Mutex::new(None),
        }
    }

    /// Holds every request for `wait`: Cloudflare answered 429 and refuses
    /// every call of the user until then (a refused call is wasted, and
    /// counts as one of the retries of the request that made it).
    pub fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.is_none_or(|h| h < until) {
            *held = Some(until);
        }
    }

    /// Requests that may go out now without waiting (`None` while a
    /// request holds the log, e.g. one waiting for the budget).
    pub fn left(&self) -> Option<usize> {
        if self.held_until().is_some_and(|u| u > Instant::now()) {
            return Some(0);
        }
        let sent = self.sent.try_lock().ok()?;
        let now = Instant::now();
        let in_window = sent.iter().filter(|t| now.duration_since(**t) < self.window).count();
        Some(self.requests.saturating_sub(in_window))
    }

    /// Requests let through since the start.
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn held_until(&self) -> Option<Instant> {
        *self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until one more request fits the budget, and counts it. A wait
    /// for the budget is `wait(d)`, so that the caller can show it; a hold
    /// is not (the refused request's retry notice already said so).
    pub async fn acquire(&self, wait: impl Fn(Duration) -> BoxFuture<'static, ()>) {
        let mut sent = self.sent.lock().await;
        loop {
            if let Some(until) = self.held_until().filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let now = Instant::now();
            while sent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                sent.pop_front();
            }
            if sent.len() < self.requests {
                sent.push_back(now);
                self.total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            if let Some(oldest) = sent.front().copied() {
                // Holding the lock while waiting is the point: requests
                // leave in order, none overtakes a waiting one (and only
                // one of the workers shows the wait).
                wait((oldest + self.window).saturating_duration_since(now)).await;
            }
        }
    }
}

/// How long `remaining` more requests take when `left` of them may go at
/// once and then `requests` per `window`, each taking `per_request` (the
/// pace seen so far): whichever bound is slower, the budget or the pace.
pub fn eta(remaining: u64, left: u64, requests: u32, window: Duration, per_request: Duration) -> Duration {
    let paced = per_request.mul_f64(remaining as f64);
    let over = remaining.saturating_sub(left);
    let budget = window.mul_f64(over as f64 / f64::from(requests.max(1)));
    paced.max(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep(d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }

    #[test]
    fn the_default_budget_leaves_room_under_cloudflares_limit() {
        // Cloudflare: 1200 per 5 minutes per user, shared with everything
        // else on the account; a step over blocks every call for 5 minutes.
        let d = crate::config::project::CloudflareSettings::default();
        assert_eq!(d.rate_limit_window, Duration::from_secs(300));
        assert!(d.rate_limit_requests <= 1000, "{} leaves no room for wrangler", d.rate_limit_requests);
    }

    #[test]
    fn the_eta_is_bound_by_the_budget_once_it_is_spent() {
        let (w, fast) = (Duration::from_secs(300), Duration::from_millis(10));
        // 100 requests with 1000 left: the pace decides.
        assert_eq!(eta(100, 1000, 1000, w, fast), Duration::from_secs(1));
        // 3000 with 1000 left: two more windows' worth of budget.
        assert_eq!(eta(3000, 1000, 1000, w, fast), Duration::from_secs(600));
        assert_eq!(eta(0, 0, 1000, w, fast), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn left_counts_what_the_window_still_allows() {
        let limiter = RateLimiter::new(5, Duration::from_secs(10));
        assert_eq!(limiter.left(), Some(5));
        limiter.acquire(sleep).await;
        limiter.acquire(sleep).await;
        assert_eq!(limiter.left(), Some(3));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(limiter.left(), Some(5));
        limiter.hold(Duration::from_secs(3));
        assert_eq!(limiter.left(), Some(0), "a 429's hold lets nothing through");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_stops_every_request_until_it_ends() {
        let limiter = RateLimiter::new(100, Duration::from_secs(10));
        let start = Instant::now();
        limiter.hold(Duration::from_secs(7));
        limiter.hold(Duration::from_secs(3));
        limiter.acquire(sleep).await;
        assert_eq!(start.elapsed(), Duration::from_secs(7), "the longer hold wins");
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_budget_in_any_window() {
        let limiter = RateLimiter::new(5, Duration::from_secs(10));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            limiter.acquire(sleep).await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|u| **u < *t + Duration::from_secs(10)).count();
            assert!(in_window <= 5, "{in_window} requests within 10 s starting at {t:?}");
        }
        assert_eq!(times[5], Duration::from_secs(10));
        assert_eq!(times[11], Duration::from_secs(20));
    }
}
