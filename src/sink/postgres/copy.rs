//! The Postgres sink: one `COPY ... FROM STDIN (FORMAT binary)` per table
//! partition (for a restore, per archive file), in a transaction that also
//! records the file in the ledger ([`super::ledger`]), so a partition is in
//! whole with its record or not at all.
//!
//! The sink contract is synchronous (writers run on blocking threads) and
//! sqlx's COPY is async and borrows its connection, so each open sink is a
//! task on the runtime that owns the connection and the COPY, fed encoded
//! bytes through a small bounded channel: the encoder works while the
//! previous chunk is on the wire, and a slow server holds the reader back
//! instead of filling memory. A sink dropped without `finish` (an error
//! elsewhere) closes the channel, which aborts the COPY and rolls back.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::encode::{CopyEncoder, HEADER, TRAILER};
use super::ledger;
use crate::batch::sink::{BatchSink, FileReport, SinkFactory, SinkReport};
use crate::batch::{quote_ident, TableBatch, TableSpec};
use crate::error::{Error, Result};
use crate::source::conn::CopyChunk;
use crate::source::{Source, SourceConn};

/// Bytes encoded before they are handed to the connection.
const CHUNK_BYTES: usize = 1 << 20;

/// Opens COPY writers into a Postgres target.
pub struct PgCopy {
    target: Source,
    handle: Handle,
    /// Per table (`schema.name`): the element type oid of each array
    /// column in the target (array_recv checks it), None for the others.
    element_oids: HashMap<String, Vec<Option<u32>>>,
    /// Per table: the file each partition comes from, recorded with it.
    files: HashMap<String, Vec<FileReport>>,
}

impl PgCopy {
    /// Writers for `tables` (whose tables must exist in the target), each
    /// partition `p` recorded as `files[table][p]`.
    pub async fn new(
        target: Source,
        conn: &mut SourceConn,
        tables: &[(&TableSpec, &[FileReport])],
    ) -> Result<PgCopy> {
        let mut element_oids = HashMap::new();
        let mut files = HashMap::new();
        for (spec, f) in tables {
            element_oids.insert(spec.qualified(), element_oids_of(conn, spec).await?);
            files.insert(spec.qualified(), f.to_vec());
        }
        Ok(PgCopy { target, handle: Handle::current(), element_oids, files })
    }
}

/// The element type of each array column of `spec` as the target declares
/// it (through domains: a domain over an array, or an array of a domain,
/// whose element is the domain itself).
pub async fn element_oids_of(conn: &mut SourceConn, spec: &TableSpec) -> Result<Vec<Option<u32>>> {
    let rows = sqlx::query(
        "WITH RECURSIVE base(attname, oid, depth) AS (
             SELECT a.attname::text, a.atttypid, 0 FROM pg_attribute a
              WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT b.attname, t.typbasetype, b.depth + 1 FROM base b JOIN pg_type t ON t.oid = b.oid
              WHERE t.typtype = 'd')
         SELECT b.attname, t.typelem::int8 FROM base b JOIN pg_type t ON t.oid = b.oid
          WHERE t.typtype <> 'd'",
    )
    .bind(spec.sql_name())
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the column types of {} in the target", spec.qualified())))?;
    let by_name: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    spec.columns
        .iter()
        .map(|c| {
            let Some(&elem) = by_name.get(&c.name) else {
                return Err(Error::Source {
                    message: format!("the target's table {} has no column {}", spec.qualified(), c.name),
                    hint: "restore into a database without the table (pgflare creates it), or add the column"
                        .into(),
                });
            };
            Ok(if c.ty.array { u32::try_from(elem).ok().filter(|&o| o != 0) } else { None })
        })
        .collect()
}

impl SinkFactory for PgCopy {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let name = table.qualified();
        let oids = self.element_oids.get(&name).cloned().unwrap_or_default();
        let file =
            self.files.get(&name).and_then(|f| f.get(partition)).cloned().ok_or_else(|| {
                Error::Internal(format!("no archive file for partition {partition} of {name}"))
            })?;
        let encoder = CopyEncoder::new(table.clone(), oids)?;
        let (tx, rx) = mpsc::channel(2);
        let statement = copy_statement(table);
        let task =
            self.handle.spawn(copy_task(self.target.clone(), statement, rx, name.clone(), file.clone()));
        let mut buf = Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2));
        buf.extend_from_slice(HEADER);
        let what = format!("{} (archive file {})", name, file.path);
        Ok(Box::new(PgCopySink {
            tx,
            task: Some(task),
            handle: self.handle.clone(),
            encoder,
            buf,
            rows: 0,
            bytes: 0,
            what,
        }))
    }
}

/// `COPY "schema"."table" ("a", "b") FROM STDIN (FORMAT binary)`.
fn copy_statement(table: &TableSpec) -> String {
    let cols: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    format!("COPY {} ({}) FROM STDIN (FORMAT binary)", table.sql_name(), cols.join(", "))
}

/// One partition's transaction: the COPY, the ledger record, the commit.
/// Durability of the commit is relaxed (`synchronous_commit off`): a
/// server crash can lose the last commits, but never leaves a transaction
/// half applied (Postgres docs, "Asynchronous Commit", wal-async-commit):
/// rows and record go together, so a rerun copies those files again.
async fn copy_task(
    target: Source,
    statement: String,
    mut rx: mpsc::Receiver<CopyChunk>,
    table: String,
    file: FileReport,
) -> Result<u64> {
    let mut conn = target.connect().await?;
    let what = format!("copying {} into {}", file.path, table);
    sqlx::raw_sql("BEGIN; SET LOCAL synchronous_commit TO off")
        .execute(&mut conn)
        .await
        .map_err(Error::db(&what))?;
    let rows = conn.copy_in(&statement, &mut rx).await.map_err(Error::db(&what))?;
    let record = ledger::record_sql(&table, &file.path, rows, &file.blake3);
    sqlx::raw_sql(sqlx::AssertSqlSafe(record)).execute(&mut conn).await.map_err(Error::db(&what))?;
    sqlx::raw_sql("COMMIT").execute(&mut conn).await.map_err(Error::db(&what))?;
    Ok(rows)
}

/// A running COPY of one partition.
struct PgCopySink {
    tx: mpsc::Sender<CopyChunk>,
    task: Option<JoinHandle<Result<u64>>>,
    handle: Handle,
    encoder: CopyEncoder,
    buf: Vec<u8>,
    rows: u64,
    bytes: u64,
    /// The table and file, for messages.
    what: String,
}

impl PgCopySink {
    /// Hands the encoded bytes to the connection's task; when the task is
    /// gone (the server refused the COPY), its error is the answer.
    fn send(&mut self, chunk: CopyChunk) -> Result<()> {
        if self.tx.blocking_send(chunk).is_ok() {
            return Ok(());
        }
        match self.task.take() {
            Some(task) => match self.handle.block_on(task) {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => Err(Error::Internal("a COPY ended before its rows were sent".into())),
                Err(e) => Err(Error::Internal(format!("a COPY task died: {e}"))),
            },
            None => Err(Error::Internal("a COPY was used after it failed".into())),
        }
    }

    fn flush(&mut self) -> Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2)));
        self.bytes += chunk.len() as u64;
        self.send(CopyChunk::Data(chunk))
    }
}

impl BatchSink for PgCopySink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.encoder.encode(&batch.batch, &mut self.buf)?;
        self.rows += batch.batch.num_rows() as u64;
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        self.buf.extend_from_slice(TRAILER);
        self.flush()?;
        self.send(CopyChunk::Done)?;
        let task = self.task.take().ok_or_else(|| Error::Internal("a COPY finished twice".into()))?;
        let copied =
            self.handle.block_on(task).map_err(|e| Error::Internal(format!("a COPY task died: {e}")))??;
        if copied != self.rows {
            return Err(Error::Internal(format!(
                "{}: Postgres copied {copied} rows, pgflare sent {}",
                self.what, self.rows
            )));
        }
        Ok(SinkReport { rows: copied, bytes: self.bytes, ..SinkReport::default() })
    }
}
