//! How long a request may take: bounded by silence, not by size.
//!
//! A request is given up when nothing moves for `--http-timeout`: no piece
//! of its body handed to the connection, no byte of the answer received.
//! There is no cap on the whole transfer, so an import upload, an export
//! download or a 100 MB Vectorize upsert over a slow link finishes however
//! long it takes while it keeps moving, and a stalled one ends within the
//! bound. (reqwest's own `read_timeout` runs from sending the request to
//! the answer's head as one wait, the upload included: a 32 MiB upload at
//! 2 Mbit/s outlasted the 2 minutes and was retried until it gave up.)
//!
//! A body counts as sent when it is handed to the connection, but the
//! kernel holds up to a few MiB of it (Linux autotunes a socket's send
//! buffer up to 4 MiB) and sends them at the link's pace: after the last
//! piece the wait for the answer is also allowed the time those bytes take
//! at the pace the upload itself went ([`SEND_BUFFER`] over the measured
//! rate). An upload smaller than that gives no pace to measure; with the
//! default bound of 2 minutes that is a concern below about 35 KB/s.
//!
//! JSON calls, whose answers are small, keep a cap on the whole answer as
//! well: [`JSON_ANSWER_FACTOR`] times `--http-timeout` from the moment the
//! request was sent, so a server that trickles bytes cannot hold a run.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// A JSON call's answer must be complete within this many `--http-timeout`s
/// of the request being sent (D1 stops a query after 30 s; the default
/// bound of 2 minutes gives 8).
pub const JSON_ANSWER_FACTOR: u32 = 4;

/// Pieces a request body is handed over in: each one that leaves is
/// progress.
const PIECE: usize = 64 * 1024;

/// What the kernel may hold of a body already handed over (Linux's
/// largest autotuned send buffer, `net.ipv4.tcp_wmem`).
const SEND_BUFFER: u64 = 4 * 1024 * 1024;

/// What one request has done so far, shared by its body, its answer
/// reader and its watchdog.
#[derive(Clone)]
pub(crate) struct Activity(Arc<Mutex<Moves>>);

struct Moves {
    last: Instant,
    /// Whether anything moved yet (until then the connection is being
    /// made, which `--connect-timeout` bounds).
    moved: bool,
    /// When the whole request body was handed over.
    sent: Option<Instant>,
    /// Bytes handed over, and when they passed [`SEND_BUFFER`].
    handed: u64,
    past_buffer: Option<Instant>,
    /// The time the kernel may still need for the body's tail.
    drain: Duration,
    /// Whether any of the answer arrived.
    answered: bool,
}

/// Why a watchdog gave a request up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// The request body stopped leaving.
    Upload,
    /// Sent, and the answer stopped coming (or never started).
    Answer,
    /// A JSON answer still incomplete after its cap.
    TooSlow,
}

impl Activity {
    pub fn new() -> Activity {
        Activity(Arc::new(Mutex::new(Moves {
            last: Instant::now(),
            moved: false,
            sent: None,
            handed: 0,
            past_buffer: None,
            drain: Duration::ZERO,
            answered: false,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Moves) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Something of the answer arrived.
    pub fn touch(&self) {
        self.with(|m| {
            m.last = Instant::now();
            m.moved = true;
            m.answered |= m.sent.is_some();
        });
    }

    /// `n` more bytes of the body were handed over.
    fn handed(&self, n: usize) {
        self.with(|m| {
            let now = Instant::now();
            m.last = now;
            m.moved = true;
            m.handed += n as u64;
            if m.handed >= SEND_BUFFER && m.past_buffer.is_none() {
                m.past_buffer = Some(now);
            }
        });
    }

    /// The request body is all handed over (or there was none).
    pub fn sent(&self) {
        self.with(|m| {
            let now = Instant::now();
            m.last = now;
            m.moved = true;
            if m.sent.is_none() {
                m.sent = Some(now);
                // The pace once the send buffer was full is the link's.
                if let Some(t) = m.past_buffer {
                    let secs = now.duration_since(t).as_secs_f64();
                    let rate = (m.handed - SEND_BUFFER) as f64 / secs.max(1e-3);
                    let drain = SEND_BUFFER.min(m.handed) as f64 / rate.max(1.0);
                    m.drain = Duration::from_secs_f64(drain.min(3600.0));
                }
            }
        });
    }

    /// Runs `fut` until it ends, or until nothing moved for `idle` (before
    /// the first move: `first`, the connection's own bound), or until a
    /// `cap` after sending ran out.
    pub async fn bound<T>(
        &self,
        fut: impl Future<Output = T>,
        idle: Duration,
        first: Duration,
        cap: Option<Duration>,
    ) -> Result<T, Stall> {
        tokio::pin!(fut);
        loop {
            let (last, moved, sent, drain, answered) =
                self.with(|m| (m.last, m.moved, m.sent, m.drain, m.answered));
            let quiet = match (moved, sent.is_some() && !answered) {
                (false, _) => first.max(idle),
                // Sent: the kernel may still be sending the tail.
                (true, true) => idle + drain,
                (true, false) => idle,
            };
            let capped = sent.zip(cap).map(|(s, c)| s + drain + c);
            let deadline = capped.map_or(last + quiet, |c| c.min(last + quiet));
            tokio::select! {
                biased;
                v = &mut fut => return Ok(v),
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    if capped.is_some_and(|c| now >= c) {
                        return Err(Stall::TooSlow);
                    }
                    let (last2, moved2, sent2) = self.with(|m| (m.last, m.moved, m.sent));
                    if last2 == last && moved2 == moved && now.duration_since(last) >= quiet {
                        return Err(if sent2.is_some() || !moved { Stall::Answer } else { Stall::Upload });
                    }
                }
            }
        }
    }
}

/// A request body that reports each piece it hands over, and tells its
/// exact length (a signed upload URL needs a `Content-Length`).
pub(crate) struct Tracked {
    rest: Bytes,
    activity: Activity,
}

impl Tracked {
    pub fn new(body: Bytes, activity: Activity) -> Tracked {
        if body.is_empty() {
            activity.sent();
        }
        Tracked { rest: body, activity }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            self.activity.sent();
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(PIECE);
        let piece = self.rest.split_to(n);
        // The connection asks for a piece when the last one has left.
        self.activity.handed(n);
        if self.rest.is_empty() {
            self.activity.sent();
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// `req` with `body` (tracked by `activity`), or marked sent when there is none.
pub(crate) fn with_body(
    req: reqwest::RequestBuilder,
    body: Option<&Bytes>,
    activity: &Activity,
) -> reqwest::RequestBuilder {
    match body {
        Some(b) => req.body(reqwest::Body::wrap(Tracked::new(b.clone(), activity.clone()))),
        None => {
            activity.sent();
            req
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_transfer_that_keeps_moving_is_not_cut_short() {
        let activity = Activity::new();
        let a = activity.clone();
        let slow = async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                a.touch();
            }
            a.sent();
            "done"
        };
        let out = activity.bound(slow, Duration::from_secs(1), Duration::ZERO, None).await;
        assert_eq!(out, Ok("done"), "9 s in all, never 1 s idle");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_ends_within_the_bound_and_says_where() {
        let activity = Activity::new();
        let started = Instant::now();
        let out =
            activity.bound(std::future::pending::<()>(), Duration::from_secs(2), Duration::ZERO, None).await;
        assert_eq!(out, Err(Stall::Answer), "nothing moved at all: no answer");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        activity.handed(1);
        let out =
            activity.bound(std::future::pending::<()>(), Duration::from_secs(2), Duration::ZERO, None).await;
        assert_eq!(out, Err(Stall::Upload), "a body began to leave, then stopped");
        activity.sent();
        let out =
            activity.bound(std::future::pending::<()>(), Duration::from_secs(2), Duration::ZERO, None).await;
        assert_eq!(out, Err(Stall::Answer));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_the_answer_allows_the_send_buffer_to_drain() {
        let activity = Activity::new();
        // 12 MiB handed over: the first 4 MiB at once, the rest at 1 MiB/s.
        activity.handed(4 * 1024 * 1024);
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            activity.handed(1024 * 1024);
        }
        activity.sent();
        // The tail of 4 MiB takes 4 s more; then the server answers after 1.5 s.
        let answer = tokio::time::sleep(Duration::from_millis(5500));
        let out = activity.bound(answer, Duration::from_secs(2), Duration::ZERO, None).await;
        assert_eq!(out, Ok(()), "2 s of silence allowed, plus 4 s for the buffer");
        let out =
            activity.bound(std::future::pending::<()>(), Duration::from_secs(2), Duration::ZERO, None).await;
        assert_eq!(out, Err(Stall::Answer), "but not for ever");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_json_answer_meets_its_cap() {
        let activity = Activity::new();
        activity.sent();
        let a = activity.clone();
        let trickle = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                a.touch();
            }
        };
        let started = Instant::now();
        let out: Result<(), Stall> = activity
            .bound(trickle, Duration::from_secs(1), Duration::ZERO, Some(Duration::from_secs(4)))
            .await;
        assert_eq!(out, Err(Stall::TooSlow));
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }
}
