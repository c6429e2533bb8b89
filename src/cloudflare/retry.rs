//! The one retry policy for every Cloudflare request: exponential backoff
//! with jitter (backon's builder supplies the delays), a server's
//! `Retry-After` honoured when it asks for longer, and a fixed number of
//! attempts. Only failures that a later attempt can fix are retried (429,
//! 5xx, a dropped or refused connection, a timeout); a refused token or a
//! SQL error stops at once, so a wrong setting never becomes a retry storm.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::future::BoxFuture;

use crate::error::Error;
use crate::timeouts::human;

/// How one attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt, after at least `retry_after` if the server
    /// said so. `timed_out`: no answer within the run's bound (such
    /// attempts are limited to [`RetryPolicy::timeout_attempts`]).
    Transient { error: Error, retry_after: Option<Duration>, timed_out: bool },
    /// Another attempt would fail the same way.
    Fatal(Error),
}

/// Backoff settings; [`RetryPolicy::default`] is what pgflare uses.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Longest `Retry-After` we accept to wait; Cloudflare blocks every
    /// call for 5 minutes after a request over its rate limit
    /// (cloudflare-docs `fundamentals/api/reference/limits.mdx`), so 5.5
    /// minutes covers its longest block; an answer asking for more stops
    /// the run with what to do.
    pub max_retry_after: Duration,
    /// Attempts that got no answer within the bound, at most: each costs a
    /// whole `--http-timeout`, and a silent server usually stays silent,
    /// so ten of them would hold a run for half an hour.
    pub timeout_attempts: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(330),
            timeout_attempts: 3,
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails fatally, or attempts run out
    /// (then the last error is returned with the count in its hint).
    /// `on_retry` hears about every wait (for progress messages).
    pub async fn run<T, F, Fut>(
        &self,
        attempt: F,
        on_retry: &(dyn Fn(&Error, Duration) + Sync),
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let wait = |e: &Error, d: Duration| -> BoxFuture<'static, ()> {
            on_retry(e, d);
            Box::pin(tokio::time::sleep(d))
        };
        self.run_waiting(attempt, &wait).await
    }

    /// [`RetryPolicy::run`], with `wait` doing the waiting between two
    /// attempts (a countdown the user can see, for long waits).
    pub async fn run_waiting<T, F, Fut>(
        &self,
        mut attempt: F,
        wait: &(dyn Fn(&Error, Duration) -> BoxFuture<'static, ()> + Sync),
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1))
            .with_jitter()
            .build();
        let (mut tries, mut silent) = (0, 0);
        loop {
            tries += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient { error, retry_after, timed_out }) => {
                    silent += usize::from(timed_out);
                    if timed_out && silent >= self.timeout_attempts {
                        return Err(gave_up(error, tries));
                    }
                    let Some(backoff) = delays.next() else {
                        return Err(gave_up(error, tries));
                    };
                    // backon's jitter adds up to the whole delay again: keep
                    // the documented maximum.
                    let backoff = backoff.min(self.max_delay);
                    let pause = match retry_after {
                        Some(r) if r > self.max_retry_after => {
                            return Err(asks_too_long(error, r, self.max_retry_after))
                        }
                        Some(r) => r.max(backoff),
                        None => backoff,
                    };
                    wait(&error, pause).await;
                }
            }
        }
    }
}

/// The error when the server asks to wait longer than pgflare will.
fn asks_too_long(error: Error, asked: Duration, most: Duration) -> Error {
    match error {
        Error::Api { what, status, message, .. } => Error::Api {
            what,
            status,
            message: format!(
                "{message} (Retry-After asks for {}, longer than pgflare waits: {})",
                human(asked),
                human(most)
            ),
            hint: format!(
                "Cloudflare refuses every call of this user until then (its limit is 1200 requests \
                 per 5 minutes per user, shared with wrangler, the dashboard and other tools). Run \
                 the command again after {}: finished parts are not redone. If pgflare alone went \
                 over, lower --rate-limit (or [cloudflare] rate_limit in pgflare.toml)",
                human(asked)
            ),
        },
        other => other,
    }
}

fn gave_up(error: Error, attempts: usize) -> Error {
    match error {
        Error::Api { what, status, message, hint } => Error::Api {
            what,
            status,
            message: format!("{message} (gave up after {attempts} attempts)"),
            hint,
        },
        other => other,
    }
}

/// Reads a `Retry-After` value: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (when.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
    Some(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
            timeout_attempts: 2,
        }
    }

    fn api(msg: &str) -> Error {
        Error::Api { what: "test".into(), status: Some(503), message: msg.into(), hint: "-".into() }
    }

    /// Found by review: backon's jitter adds up to 100% of the delay, so
    /// waits of up to twice `max_delay` happened ("retrying in 47.6s" with
    /// the documented 30 s maximum).
    #[tokio::test]
    async fn no_wait_exceeds_the_maximum_delay_jitter_included() {
        let waits = std::sync::Mutex::new(Vec::new());
        let policy = RetryPolicy { attempts: 40, ..quick() };
        let _: Result<(), Error> = policy
            .run(
                || async {
                    Err(Failure::Transient { error: api("busy"), retry_after: None, timed_out: false })
                },
                &|_, d| waits.lock().expect("waits").push(d),
            )
            .await;
        let waits = waits.into_inner().expect("waits");
        assert_eq!(waits.len(), 39);
        let longest = waits.iter().max().copied().unwrap_or_default();
        assert!(longest <= policy.max_delay, "waited {longest:?}, more than {:?}", policy.max_delay);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicUsize::new(0);
        let out = quick()
            .run(
                || async {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 | 1 => Err(Failure::Transient {
                            error: api("busy"),
                            retry_after: None,
                            timed_out: false,
                        }),
                        n => Ok(n),
                    }
                },
                &|_, _| {},
            )
            .await;
        assert_eq!(out.ok(), Some(2));
    }

    #[tokio::test]
    async fn fatal_failures_are_not_retried() {
        let calls = AtomicUsize::new(0);
        let out: Result<(), Error> = quick()
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(Failure::Fatal(api("bad token")))
                },
                &|_, _| {},
            )
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn attempts_run_out_and_say_so() {
        let calls = AtomicUsize::new(0);
        let out: Result<(), Error> = quick()
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(Failure::Transient { error: api("busy"), retry_after: None, timed_out: false })
                },
                &|_, _| {},
            )
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(out.err().map(|e| e.to_string()).unwrap_or_default().contains("gave up after 4 attempts"));
    }

    #[tokio::test]
    async fn a_silent_server_is_retried_only_timeout_attempts_times() {
        let calls = AtomicUsize::new(0);
        let out: Result<(), Error> = quick()
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(Failure::Transient { error: api("no answer"), retry_after: None, timed_out: true })
                },
                &|_, _| {},
            )
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "quick() allows 2 silent attempts of 4");
        assert!(out.err().map(|e| e.to_string()).unwrap_or_default().contains("gave up after 2 attempts"));
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let waits = std::sync::Mutex::new(Vec::new());
        let calls = AtomicUsize::new(0);
        let _ = quick()
            .run(
                || async {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(Failure::Transient {
                            error: api("429"),
                            retry_after: Some(Duration::from_millis(40)),
                            timed_out: false,
                        }),
                        _ => Ok(()),
                    }
                },
                &|_, d| waits.lock().map(|mut w| w.push(d)).unwrap_or(()),
            )
            .await;
        let waits = waits.lock().map(|w| w.clone()).unwrap_or_default();
        assert_eq!(waits.len(), 1);
        assert!(waits[0] >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_maximum_stops_with_what_to_do() {
        let calls = AtomicUsize::new(0);
        let out: Result<(), Error> = quick()
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(Failure::Transient {
                        error: api("[971] Please wait"),
                        retry_after: Some(Duration::from_secs(600)),
                        timed_out: false,
                    })
                },
                &|_, _| {},
            )
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt is made into the block");
        let text = out.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("Retry-After asks for 10 min, longer than pgflare waits: 1 s"), "{text}");
        assert!(text.contains("Run the command again after 10 min"), "{text}");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
