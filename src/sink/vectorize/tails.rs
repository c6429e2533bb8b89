//! Packing the last upsert of every key range with the others' (issue 18:
//! requests packed to Cloudflare's limits). A range sends full requests
//! of `vectors_per_request` itself; what is left when it finishes (fewer
//! than that) goes into the one [`TailPool`] of the load, which sends a
//! request each time it is full, and the rest when the load calls
//! [`TailPool::flush`] after the ranges of a wave finished. Without it,
//! every range ends with a partial upsert: 6 requests where 4 would do on
//! 19,626 vectors in 6 ranges.
//!
//! A range whose last lines wait in the pool is not done yet: its report
//! carries a [`DeferredWrite`] that resolves to the write ticket of the
//! request holding its last line (the pool's requests go out one at a
//! time, in order, so waiting for that one covers its earlier lines), and
//! the load records the range only once Vectorize applied it. A pool that
//! is dropped unsent (the load failed before its flush) resolves every
//! ticket to an error, so those ranges stay to do and the rerun redoes
//! them; upserts by id make the resend harmless.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::batch::sink::{DeferredWrite, Outcome};
use crate::cloudflare::vectorize::WriteTicket;
use crate::cloudflare::Vectorize;
use crate::error::{Error, Result};

/// The tails of finished ranges, gathered into shared upserts.
pub struct TailPool {
    per_request: usize,
    max_bytes: usize,
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    body: Vec<u8>,
    lines: usize,
    /// The ranges with lines in `body`, for the request's name.
    from: Vec<String>,
    /// Ranges whose *last* line is in `body`.
    waiting: Vec<watch::Sender<Outcome>>,
}

impl TailPool {
    pub fn new(per_request: usize, max_bytes: usize) -> TailPool {
        TailPool { per_request, max_bytes, pool: Mutex::new(Pool::default()) }
    }

    /// Takes a finished range's remaining lines (`body` holds `lines`
    /// NDJSON lines); sends every request that fills up on the way. The
    /// ticket resolves when the request holding the range's last line
    /// was sent. An error is the failed request's (the range fails).
    pub fn add(
        &self,
        index: &Vectorize,
        runtime: &tokio::runtime::Handle,
        what: &str,
        body: &[u8],
        lines: usize,
    ) -> Result<Option<DeferredWrite>> {
        if lines == 0 {
            return Ok(None);
        }
        let mut pool = self.lock()?;
        pool.from.push(what.to_string());
        for line in body.split_inclusive(|&b| b == b'\n') {
            if pool.lines >= self.per_request || pool.body.len() + line.len() >= self.max_bytes {
                send(&mut pool, index, runtime)?;
                pool.from.push(what.to_string());
            }
            pool.body.extend_from_slice(line);
            pool.lines += 1;
        }
        let (tx, rx) = watch::channel(None);
        pool.waiting.push(tx);
        Ok(Some(DeferredWrite { outcome: rx, what: what.to_string() }))
    }

    /// Sends what the pool holds (after a wave's ranges finished, before
    /// the load waits for their tickets).
    pub async fn flush(&self, index: &Vectorize) -> Result<()> {
        let Some(request) = Request::take(&mut *self.lock()?, index) else { return Ok(()) };
        let sent = index.upsert(&request.what, request.body.clone()).await;
        request.tell(sent)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Pool>> {
        self.pool.lock().map_err(|_| Error::Internal("Vectorize tail pool poisoned".into()))
    }
}

/// One upsert of the pool's body; its waiters hear the outcome. Sent
/// under the pool's lock, so the pool's requests go out in order.
fn send(pool: &mut Pool, index: &Vectorize, runtime: &tokio::runtime::Handle) -> Result<()> {
    let Some(request) = Request::take(pool, index) else { return Ok(()) };
    let sent = runtime.block_on(index.upsert(&request.what, request.body.clone()));
    request.tell(sent)
}

/// The pool's body taken out to be sent, with the ranges it ends.
struct Request {
    what: String,
    body: bytes::Bytes,
    waiting: Vec<watch::Sender<Outcome>>,
}

impl Request {
    fn take(pool: &mut Pool, index: &Vectorize) -> Option<Request> {
        if pool.lines == 0 {
            return None;
        }
        let what = format!(
            "Vectorize {}, the last {} vectors of {}",
            index.index(),
            pool.lines,
            pool.from.join("; ")
        );
        let request = Request {
            what,
            body: bytes::Bytes::from(std::mem::take(&mut pool.body)),
            waiting: std::mem::take(&mut pool.waiting),
        };
        pool.lines = 0;
        pool.from.clear();
        Some(request)
    }

    fn tell(self, sent: Result<WriteTicket>) -> Result<()> {
        let outcome = match &sent {
            Ok(t) => Ok(t.0),
            Err(e) => Err(e.to_string()),
        };
        for w in self.waiting {
            // A receiver gone (its range's recording was abandoned) needs no news.
            let _ = w.send(Some(outcome.clone()));
        }
        sent.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::TailPool;
    use crate::cloudflare::client::ApiSettings;
    use crate::cloudflare::vectorize::{IndexConfig, WriteTicket};
    use crate::cloudflare::{Api, Vectorize};
    use crate::emulator::{Emulator, EmulatorConfig};

    const TOKEN: &str = "tails-token";

    fn lines(ids: std::ops::Range<usize>) -> Vec<u8> {
        ids.map(|i| format!("{{\"id\":\"v{i}\",\"values\":[{i},1,2]}}\n")).collect::<String>().into_bytes()
    }

    /// Ranges of 3 and 6 vectors, requests of 4: the pool sends 4, 4 and
    /// (at the flush) 1; each range's ticket is the request holding its
    /// last line, and nothing is lost or sent twice.
    #[test]
    fn each_range_waits_for_the_request_holding_its_last_line_and_every_vector_arrives() {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let dir = tempfile::tempdir().expect("tempdir");
        let emu =
            rt.block_on(Emulator::start(EmulatorConfig::for_tests(dir.path(), TOKEN))).expect("emulator");
        let api = Arc::new(Api::new(ApiSettings::for_tests(&emu.base_url, TOKEN)).expect("api"));
        let index = Vectorize::new(api, "vi");
        let want = IndexConfig { dimensions: 3, metric: "cosine".into() };
        rt.block_on(index.ensure(&want, true)).expect("index");
        let handle = rt.handle().clone();
        let pool = TailPool::new(4, 1 << 20);

        let before = index.requests_sent();
        let a = pool.add(&index, &handle, "range a", &lines(0..3), 3).expect("a").expect("a ticket");
        assert!(a.outcome.borrow().is_none(), "range a's last line waits in the pool");
        let b = pool.add(&index, &handle, "range b", &lines(3..9), 6).expect("b").expect("b ticket");
        assert_eq!(index.requests_sent() - before, 2, "two full requests of 4 went out");
        let a_sent = a.outcome.borrow().clone().expect("a's request went out").expect("accepted");
        assert!(b.outcome.borrow().is_none(), "range b's last line waits for the flush");
        assert!(pool.add(&index, &handle, "empty", b"", 0).expect("empty").is_none());

        rt.block_on(pool.flush(&index)).expect("flush");
        assert_eq!(index.requests_sent() - before, 3);
        let b_sent = rt.block_on(b.clone().sent()).expect("b sent");
        assert!(a_sent < b_sent, "the later request's ticket: {a_sent} then {b_sent}");
        let quiet = |_: &str| {};
        rt.block_on(index.wait_applied(WriteTicket(b_sent), Duration::from_secs(30), &quiet))
            .expect("applied");
        let mut ids = rt.block_on(index.list_ids()).expect("list");
        ids.sort();
        let want: Vec<String> =
            (0..9).map(|i| format!("v{i}")).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        assert_eq!(ids, want);

        // A pool dropped before its flush: the waiting range hears it.
        let pool = TailPool::new(4, 1 << 20);
        let c = pool.add(&index, &handle, "range c", &lines(9..10), 1).expect("c").expect("c ticket");
        drop(pool);
        let err = rt.block_on(c.sent()).expect_err("never sent").to_string();
        assert!(err.contains("range c, its last vectors") && err.contains("run the load again"), "{err}");
    }
}
