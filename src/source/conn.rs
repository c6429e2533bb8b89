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
        futures::stream::unfold(Some(stream), move |state| {
            let bound = self.clone();
            async move {
                let mut s = state?;
                match tokio::time::timeout(bound.wait, s.next()).await {
                    Ok(Some(item)) => Some((item, Some(s))),
                    Ok(None) => None,
                    Err(_) => Some((Err(bound.error()), None)),
                }
            }
        })
        .boxed()
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
