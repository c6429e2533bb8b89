//! A connection to the source on which no wait is unbounded: every
//! statement's answer, every row of a result and every message of a COPY
//! stream must come within the run's `statement` bound
//! ([`crate::timeouts`]) of the one before. [`SourceConn`] is an sqlx
//! `Executor`, so queries are written as on a plain connection
//! (`sqlx::query(..).fetch_all(&mut *conn)`) and are bounded all the same.
//!
//! A bound that runs out fails the statement with an I/O `TimedOut` error
//! naming the server, the bound and the flag; the connection is then in an
//! unknown state and the run ends (it is not reused).

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _};
use sqlx::postgres::{PgConnection, PgQueryResult, PgRow, PgStatement, PgTypeInfo, Postgres};
use sqlx::{Either, Execute, Executor, SqlStr};
use std::future::Future as _;

/// What a bound is, for its error: how long, on which server.
#[derive(Clone, Debug)]
pub struct Bound {
    pub wait: Duration,
    /// `host:port` (never credentials).
    pub server: String,
}

impl Bound {
    /// The error of a statement that got no answer in time.
    pub fn error(&self) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from Postgres at {} within {} (--statement-timeout; the server may be stuck, or \
                 a statement may need longer: raise it)",
                self.server,
                crate::timeouts::human(self.wait)
            ),
        ))
    }

    async fn run<T>(
        self,
        f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        match tokio::time::timeout(self.wait, f).await {
            Ok(r) => r,
            Err(_) => Err(self.error()),
        }
    }

    /// `stream`, failing (and ending) when an item takes longer than the bound.
    fn stream<'e, T: Send + 'e>(
        self,
        stream: BoxStream<'e, Result<T, sqlx::Error>>,
    ) -> BoxStream<'e, Result<T, sqlx::Error>> {
        let sleep = Box::pin(tokio::time::sleep(self.wait));
        Box::pin(Idle { inner: stream, sleep, waiting_since: None, bound: self, done: false })
    }
}

/// A stream bounded on silence: the bound runs only while the stream is
/// waited on and has nothing (not while the reader is busy elsewhere, e.g.
/// its sink waiting for Cloudflare). A COPY sends one message per row, so
/// the timer is not re-armed per item (measured: a `timeout` per item costs
/// ~70-115 ns, several percent of a narrow row): a wait notes when it
/// started, and when the timer fires it either ends the stream or moves to
/// that start plus the bound.
struct Idle<'e, T> {
    inner: BoxStream<'e, Result<T, sqlx::Error>>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When the current wait began; `None` while items are flowing.
    waiting_since: Option<tokio::time::Instant>,
    bound: Bound,
    done: bool,
}

impl<T> futures::Stream for Idle<'_, T> {
    type Item = Result<T, sqlx::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.inner.poll_next_unpin(cx) {
            this.waiting_since = None;
            this.done = item.is_none();
            return Poll::Ready(item);
        }
        let due = *this.waiting_since.get_or_insert_with(tokio::time::Instant::now) + this.bound.wait;
        while this.sleep.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= due {
                this.done = true;
                return Poll::Ready(Some(Err(this.bound.error())));
            }
            this.sleep.as_mut().reset(due);
        }
        Poll::Pending
    }
}

/// A Postgres connection whose every wait is bounded (see the module).
pub struct SourceConn {
    conn: PgConnection,
    bound: Bound,
}

impl std::fmt::Debug for SourceConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceConn({})", self.bound.server)
    }
}

impl SourceConn {
    pub(super) fn new(conn: PgConnection, bound: Bound) -> Self {
        SourceConn { conn, bound }
    }

    /// `COPY ... TO STDOUT`: the stream of CopyData messages, each within
    /// the bound of the one before (the first within the bound of the start).
    pub async fn copy_out_raw(
        &mut self,
        statement: &str,
    ) -> Result<BoxStream<'_, Result<Bytes, sqlx::Error>>, sqlx::Error> {
        let bound = self.bound.clone();
        let stream = bound.clone().run(self.conn.copy_out_raw(statement)).await?;
        Ok(bound.stream(stream))
    }
}

/// What a `COPY ... FROM STDIN` is fed ([`SourceConn::copy_in`]): bytes,
/// then `Done`.
#[derive(Debug)]
pub enum CopyChunk {
    Data(Vec<u8>),
    Done,
}

impl SourceConn {
    /// Runs `statement` (a `COPY ... FROM STDIN`) and sends what `chunks`
    /// yields, each send and the final answer bounded like any statement;
    /// returns the rows Postgres copied. When the channel closes before
    /// `Done` (the writer failed), the COPY is aborted, Postgres discards
    /// its rows, and this fails.
    pub async fn copy_in(
        &mut self,
        statement: &str,
        chunks: &mut tokio::sync::mpsc::Receiver<CopyChunk>,
    ) -> Result<u64, sqlx::Error> {
        let bound = self.bound.clone();
        let mut copy = bound.clone().run(self.conn.copy_in_raw(statement)).await?;
        loop {
            match chunks.recv().await {
                Some(CopyChunk::Data(bytes)) => {
                    bound.clone().run(async { copy.send(bytes).await.map(|_| ()) }).await?;
                }
                Some(CopyChunk::Done) => return bound.run(copy.finish()).await,
                None => {
                    bound.run(copy.abort("the pgflare writer stopped")).await?;
                    return Err(sqlx::Error::Protocol("the COPY was aborted: its writer stopped".into()));
                }
            }
        }
    }
}

impl<'c> Executor<'c> for &'c mut SourceConn {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let bound = self.bound.clone();
        let conn: &'c mut PgConnection = &mut self.conn;
        bound.stream(conn.fetch_many(query))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let bound = self.bound.clone();
        let conn: &'c mut PgConnection = &mut self.conn;
        bound.run(conn.fetch_optional(query)).boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        let bound = self.bound.clone();
        let conn: &'c mut PgConnection = &mut self.conn;
        bound.run(conn.prepare_with(sql, parameters)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> Bound {
        Bound { wait: Duration::from_secs(10), server: "db:5432".into() }
    }

    /// Items at the given seconds after the start, then silence.
    fn at(seconds: &[u64]) -> BoxStream<'static, Result<u64, sqlx::Error>> {
        let start = tokio::time::Instant::now();
        futures::stream::iter(seconds.to_vec())
            .then(move |s| async move {
                tokio::time::sleep_until(start + Duration::from_secs(s)).await;
                Ok(s)
            })
            .chain(futures::stream::pending())
            .boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn silence_longer_than_the_bound_ends_the_stream_with_the_bound_in_the_error() {
        // Gaps of 9 s are fine, however long the whole stream runs.
        let mut s = bound().stream(at(&[9, 18, 27, 36]));
        for want in [9, 18, 27, 36] {
            assert_eq!(s.next().await.and_then(|r| r.ok()), Some(want));
        }
        let started = tokio::time::Instant::now();
        let e = s.next().await.and_then(|r| r.err()).map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(e.contains("no answer from Postgres at db:5432 within 10 s (--statement-timeout"), "{e}");
        assert!(s.next().await.is_none(), "the stream ends after its error");
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_reader_spends_elsewhere_does_not_count() {
        // Everything is there at once; the reader takes 30 s per item.
        let mut s = bound().stream(at(&[0, 0, 0]));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            assert_eq!(s.next().await.and_then(|r| r.ok()), Some(0));
        }
    }
}
