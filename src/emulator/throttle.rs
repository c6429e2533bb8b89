//! A transfer bandwidth for the emulator (`pgflare emulate --bandwidth`):
//! request bodies are read and answers written no faster than a set number
//! of bytes per second, so a large transfer (a D1 import upload, an export
//! download, a 100 MB Vectorize upsert) takes the time it takes over a real
//! link, and a client's timeouts meet transfers that last longer than they
//! do.
//!
//! Every body is paced on its own (a link per connection): two transfers
//! at once each get the whole bandwidth. The pacing is end to end: the
//! server stops reading the socket while a request body waits, so the
//! client's writes block as they would behind a slow link.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Pieces a body is cut into: small enough that the pace is smooth at a
/// few KiB/s, large enough that a 100 MB body is not a million wake-ups.
const PIECE: usize = 16 * 1024;

/// `inner`, delivered at no more than `rate` bytes per second.
pub(crate) struct Paced<B> {
    inner: B,
    rate: u64,
    started: Option<Instant>,
    sent: u64,
    pending: Bytes,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> Paced<B> {
    /// `rate` is bytes per second (at least 1).
    pub fn new(inner: B, rate: u64) -> Paced<B> {
        Paced { inner, rate: rate.max(1), started: None, sent: 0, pending: Bytes::new(), sleep: None }
    }

    /// When `sent` bytes are due at this rate.
    fn due(&self, started: Instant) -> Instant {
        started + Duration::from_secs_f64(self.sent as f64 / self.rate as f64)
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            if !this.pending.is_empty() {
                let piece = this.pending.split_to(this.pending.len().min(PIECE));
                this.sent += piece.len() as u64;
                let started = *this.started.get_or_insert_with(Instant::now);
                let due = this.due(started);
                if due > Instant::now() {
                    // The next piece waits until this one is paid for.
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
                }
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                end_or_error => return Poll::Ready(end_or_error),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.sleep.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The answer's Content-Length stays what the handler's body says.
        let inner = self.inner.size_hint();
        let held = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

/// Reads `--bandwidth`: bytes per second, with an optional unit
/// (`500K`, `2MiB`, `1M`; K and M are powers of 1024).
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("`{text}`: expected bytes per second, e.g. 2MiB or 500K"))?;
    let scale = match unit.trim().to_ascii_lowercase().trim_end_matches("/s") {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("`{text}`: the unit must be K, M or G (bytes per second)")),
    };
    match n.checked_mul(scale) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("`{text}`: must be above zero")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_takes_its_size_over_the_rate() {
        let data = Bytes::from(vec![7u8; 100 * 1024]);
        let body = Paced::new(axum::body::Body::from(data.clone()), 10 * 1024);
        let started = Instant::now();
        let out = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX).await;
        assert_eq!(out.ok(), Some(data));
        let took = started.elapsed();
        // The last piece is delivered when the 84 KiB before it are paid for.
        assert!(took >= Duration::from_millis(8400) && took <= Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn bandwidths_read_like_people_write_them() {
        assert_eq!(parse_bandwidth("2MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_bandwidth("500K"), Ok(500 * 1024));
        assert_eq!(parse_bandwidth("1000"), Ok(1000));
        assert_eq!(parse_bandwidth("1M/s"), Ok(1024 * 1024));
        assert!(parse_bandwidth("0").is_err());
        assert!(parse_bandwidth("fast").is_err());
        assert!(parse_bandwidth("3 parsecs").is_err());
    }
}
