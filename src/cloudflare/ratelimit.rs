//! The client-side request budget: at most N requests in any sliding
//! window (Cloudflare: 1200 per 5 minutes per token, all endpoints
//! together). Hand-written rather than a token bucket crate because a
//! bucket with a burst lets through up to twice the budget inside one
//! window, and Cloudflare then blocks the token for minutes; a log of the
//! last N send times is exact and costs N instants.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    requests: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    pub fn new(requests: u32, window: Duration) -> Self {
        RateLimiter { requests: requests.max(1) as usize, window, sent: Mutex::new(VecDeque::new()) }
    }

    /// Waits until one more request fits the budget, and counts it.
    pub async fn acquire(&self) {
        let mut sent = self.sent.lock().await;
        loop {
            let now = Instant::now();
            while sent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                sent.pop_front();
            }
            if sent.len() < self.requests {
                sent.push_back(now);
                return;
            }
            if let Some(oldest) = sent.front().copied() {
                // Holding the lock while sleeping is the point: requests
                // leave in order, none overtakes a waiting one.
                tokio::time::sleep_until(oldest + self.window).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_budget_in_any_window() {
        let limiter = RateLimiter::new(5, Duration::from_secs(10));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            limiter.acquire().await;
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
