//! Waiting before a retry where the user can see it. A short backoff is a
//! line ("...; retrying in 1.2s"); a long one (Cloudflare's rate limit asks
//! for up to 5 minutes) is a countdown, so a run that waits never looks
//! hung: on a terminal a spinner line whose message counts down each
//! second, otherwise a line now and then with the time left.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::progress::Progress;
use crate::timeouts::human;

/// Waits at least this long get a countdown rather than one line.
pub const COUNTDOWN_FROM: Duration = Duration::from_secs(5);

/// The wait before the next attempt, with `notice` said first.
pub(crate) fn announce(progress: Option<Progress>, notice: String, wait: Duration) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let Some(progress) = progress else {
            return tokio::time::sleep(wait).await;
        };
        if wait < COUNTDOWN_FROM {
            progress.println(&format!("{notice}; retrying in {:.1}s", wait.as_secs_f64()));
            return tokio::time::sleep(wait).await;
        }
        countdown(&progress, &notice, &RETRY, wait).await;
    })
}

/// A wait for pgflare's own request budget (`--rate-limit`): no request
/// failed, so no "retrying"; long ones get the same countdown, because
/// spending the budget at the start of a big verify means minutes of
/// silence otherwise (20,000 vectors are 1,000 `get_by_ids` calls).
pub(crate) fn budget(progress: Option<Progress>, notice: String, wait: Duration) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        match progress {
            Some(p) if wait >= COUNTDOWN_FROM => countdown(&p, &notice, &BUDGET, wait).await,
            _ => tokio::time::sleep(wait).await,
        }
    })
}

/// How a countdown words what it waits for and what comes after.
struct Wording {
    whom: &'static str,
    next: &'static str,
    resume: &'static str,
}

/// After a refused request: Cloudflare asked for the wait.
const RETRY: Wording = Wording { whom: "Cloudflare", next: "the next attempt", resume: "retrying now" };
/// Before a request pgflare's own budget holds back: nothing failed.
const BUDGET: Wording =
    Wording { whom: "the request budget", next: "the next request", resume: "sending requests again" };

/// `notice`, then the time left until `wait` has passed.
async fn countdown(progress: &Progress, notice: &str, w: &Wording, wait: Duration) {
    let whom = w.whom;
    let end = Instant::now() + wait;
    let until = chrono::Local::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    progress.println(&format!(
        "{notice}; waiting {} (until {}) before {}",
        human(wait),
        until.format("%H:%M:%S"),
        w.next
    ));
    let left = || end.saturating_duration_since(Instant::now());
    let spinner = progress.spinner("waiting");
    // A line every fifth of the wait when there is no terminal (1 s to 30 s apart).
    let every = (wait / 5).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut next_line = Instant::now() + every;
    while !left().is_zero() {
        let l = left();
        spinner.set_message(format!("waiting for {whom}: {} left", clock(l)));
        if !progress.is_visible() && Instant::now() >= next_line && l >= Duration::from_secs(1) {
            progress.println(&format!("  still waiting for {whom}: {} left", clock(l)));
            next_line += every;
        }
        tokio::time::sleep(l.min(Duration::from_secs(1))).await;
    }
    spinner.finish_and_clear();
    progress.println(&format!("  {}", w.resume));
}

/// The longest pause between two polls.
const MAX_POLL_EVERY: Duration = Duration::from_secs(5);

/// The one poll pace of the Cloudflare clients (D1 import and export jobs,
/// a D1 database busy with one, Vectorize writes being applied, a metadata
/// index being listed): the first pause, then 1.5 times longer each time up
/// to 5 s, never past the deadline.
pub struct Pacer {
    next: Duration,
    started: Instant,
    limit: Duration,
}

impl Pacer {
    pub fn new(first: Duration, limit: Duration) -> Pacer {
        Pacer { next: first, started: Instant::now(), limit }
    }

    /// The pause before the next poll.
    pub fn every(&self) -> Duration {
        self.next
    }

    /// How long the caller may wait in all.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Time since the wait began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.elapsed() >= self.limit
    }

    /// Sleeps before the next poll (at most until the deadline, so one last
    /// poll comes at it); `Err(limit)` once the deadline has passed, for
    /// the caller to say what did not finish.
    pub async fn pause(&mut self) -> std::result::Result<(), Duration> {
        let left = self.limit.saturating_sub(self.elapsed());
        if left.is_zero() {
            return Err(self.limit);
        }
        tokio::time::sleep(self.next.min(left)).await;
        self.next = (self.next * 3 / 2).min(MAX_POLL_EVERY);
        Ok(())
    }
}

/// `4:05` (minutes and seconds left, rounded up).
fn clock(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_reads_as_a_clock() {
        assert_eq!(clock(Duration::from_secs(245)), "4:05");
        assert_eq!(clock(Duration::from_millis(59_100)), "1:00");
        assert_eq!(clock(Duration::from_secs(9)), "0:09");
    }
}
