//! The parallel reader: every (table, partition) becomes a work item; N
//! workers, each on its own connection inside the shared snapshot, take
//! items in turn and run `COPY (SELECT ...) TO STDOUT (FORMAT binary)`.
//! The network side is async; framing, decoding into Arrow and the sink run
//! on one OS thread per worker, fed through a bounded channel. Memory is
//! therefore bounded by workers x (channel slots + one batch + the sink's
//! own buffer), whatever the table size.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::conn::SourceConn;
use bytes::Bytes;
use futures::StreamExt;
use indicatif::ProgressBar;

use super::connect::Source;
use super::copy::CopyFramer;
use super::decode::BatchBuilder;
use super::partition::Partition;
use super::snapshot;
use crate::batch::sink::{SinkFactory, SinkReport};
use crate::batch::{quote_ident, TableBatch, TableSpec};
use crate::error::{Error, Result};

use crate::batch::BATCH_BYTES;

/// Batch sizing and parallelism.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    pub jobs: usize,
    /// A batch is cut at this many rows...
    pub batch_rows: usize,
    /// ...or this many bytes of field data, whichever comes first.
    pub batch_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { jobs: 2, batch_rows: 8192, batch_bytes: BATCH_BYTES }
    }
}

/// One table to read, its partitions, and where its progress goes.
pub struct TableJob {
    pub table: Arc<TableSpec>,
    pub partitions: Vec<Partition>,
    pub progress: ProgressBar,
}

/// What one partition produced.
#[derive(Debug)]
pub struct PartitionResult {
    pub table: Arc<TableSpec>,
    pub partition: usize,
    pub rows: u64,
    pub report: SinkReport,
}

/// The SELECT a partition is read with: the table's columns (cast where
/// asked), the partition's key range, in primary-key order.
pub fn select_sql(table: &TableSpec, partition: &Partition) -> String {
    select_sql_with(table, partition, &[])
}

/// [`select_sql`] with `extra` expressions after the table's columns (a
/// computed column the reader's spec lists last, e.g. verify's filter
/// results per query).
pub fn select_sql_with(table: &TableSpec, partition: &Partition, extra: &[String]) -> String {
    let cols = table
        .columns
        .iter()
        .map(|c| match &c.cast {
            Some(t) => format!("{}::{t} AS {}", quote_ident(&c.name), quote_ident(&c.name)),
            None => quote_ident(&c.name),
        })
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("SELECT {cols} FROM {}", table.sql_name());
    if let Some(p) = partition.predicate(table) {
        sql.push_str(" WHERE ");
        sql.push_str(&p);
    }
    if !table.primary_key.is_empty() {
        let keys = table.primary_key.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ");
        sql.push_str(" ORDER BY ");
        sql.push_str(&keys);
    }
    sql
}

/// Reads every partition of every job inside snapshot `snapshot_id`.
pub async fn read_all(
    source: &Source,
    snapshot_id: &str,
    jobs: Vec<TableJob>,
    sinks: Arc<dyn SinkFactory>,
    opts: ReadOptions,
) -> Result<Vec<PartitionResult>> {
    read_until(source, snapshot_id, jobs, sinks, opts, &Arc::new(AtomicBool::new(false))).await
}

/// [`read_all`], except that once `stop` is set no worker starts another
/// partition: those running finish (their sinks checkpoint them) and the
/// result lists only the partitions that were read.
pub async fn read_until(
    source: &Source,
    snapshot_id: &str,
    jobs: Vec<TableJob>,
    sinks: Arc<dyn SinkFactory>,
    opts: ReadOptions,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<PartitionResult>> {
    let queue: VecDeque<(Arc<TableSpec>, Partition, ProgressBar)> = jobs
        .into_iter()
        .flat_map(|j| {
            let (table, bar) = (j.table, j.progress);
            j.partitions.into_iter().map(move |p| (table.clone(), p, bar.clone()))
        })
        .collect();
    let workers = opts.jobs.clamp(1, queue.len().max(1));
    let queue = Arc::new(Mutex::new(queue));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (queue, results, sinks, stop) = (queue.clone(), results.clone(), sinks.clone(), stop.clone());
        let (source, id) = (source.clone(), snapshot_id.to_string());
        handles.push(tokio::spawn(async move {
            let mut conn = snapshot::join(&source, &id).await?;
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let item =
                    queue.lock().map_err(|_| Error::Internal("work queue poisoned".into()))?.pop_front();
                let Some((table, partition, bar)) = item else { break };
                let r = read_partition(&mut conn, table, &partition, sinks.clone(), &bar, opts).await;
                if r.is_err() {
                    // Leave nothing for the others: the job is failing.
                    if let Ok(mut q) = queue.lock() {
                        q.clear();
                    }
                }
                results.lock().map_err(|_| Error::Internal("results poisoned".into()))?.push(r?);
            }
            Ok::<(), Error>(())
        }));
    }
    let mut first_error = None;
    for h in handles {
        let outcome =
            h.await.map_err(|e| Error::Internal(format!("a reader task died: {e}"))).and_then(|r| r);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut out =
        std::mem::take(&mut *results.lock().map_err(|_| Error::Internal("results poisoned".into()))?);
    out.sort_by_key(|r| (r.table.qualified(), r.partition));
    Ok(out)
}

/// Streams one partition through the decoder thread into its sink.
async fn read_partition(
    conn: &mut SourceConn,
    table: Arc<TableSpec>,
    partition: &Partition,
    sinks: Arc<dyn SinkFactory>,
    bar: &ProgressBar,
    opts: ReadOptions,
) -> Result<PartitionResult> {
    let sql = select_sql(&table, partition);
    read_sql(conn, table, &sql, partition.index, sinks, bar, opts).await
}

/// Streams the rows of `select` (whose columns are `table`'s, in order,
/// as [`select_sql`] writes them) through the decoder thread into the
/// sink of partition `index`.
pub async fn read_sql(
    conn: &mut SourceConn,
    table: Arc<TableSpec>,
    select: &str,
    index: usize,
    sinks: Arc<dyn SinkFactory>,
    bar: &ProgressBar,
    opts: ReadOptions,
) -> Result<PartitionResult> {
    let sql = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
    // 64 CopyData messages (usually one row each) in flight per worker.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let decoder = {
        let (table, bar) = (table.clone(), bar.clone());
        std::thread::Builder::new()
            .name(format!("decode-{}-{index}", table.name))
            .spawn(move || -> Result<(u64, SinkReport)> {
                let mut sink = sinks.open(&table, index)?;
                let mut framer = CopyFramer::new(table.qualified(), table.columns.len());
                let mut builder = BatchBuilder::new(table.clone(), opts.batch_rows.min(1024));
                let mut rows = 0u64;
                let mut flush = |builder: &mut BatchBuilder,
                                 sink: &mut Box<dyn crate::batch::sink::BatchSink>|
                 -> Result<()> {
                    let n = builder.rows() as u64;
                    if n == 0 {
                        return Ok(());
                    }
                    let batch = builder.finish()?;
                    sink.write(&TableBatch { table: table.clone(), partition: index, batch })?;
                    rows += n;
                    bar.inc(n);
                    Ok(())
                };
                while let Some(chunk) = rx.blocking_recv() {
                    framer.feed(&chunk, |row| {
                        builder.push(row)?;
                        if builder.rows() >= opts.batch_rows || builder.bytes() >= opts.batch_bytes {
                            flush(&mut builder, &mut sink)?;
                        }
                        Ok(())
                    })?;
                }
                framer.finish()?;
                flush(&mut builder, &mut sink)?;
                Ok((rows, sink.finish()?))
            })
            .map_err(|e| Error::Internal(format!("cannot start a decoder thread: {e}")))?
    };

    // A cast can fail on a value (`'twelve'::integer`); Postgres does not
    // say which column, so the casts are named.
    let casts: Vec<String> =
        table.columns.iter().filter_map(|c| c.cast.as_ref().map(|t| format!("{} as {t}", c.name))).collect();
    let read_through = match casts.is_empty() {
        true => String::new(),
        false => format!("; columns read through a cast: {}", casts.join(", ")),
    };
    let streamed: Result<()> = async {
        let mut stream = conn.copy_out_raw(&sql).await.map_err(Error::db(format!(
            "starting COPY of {} (partition {index}{read_through})",
            table.qualified()
        )))?;
        while let Some(chunk) = stream.next().await {
            // The context is built only on failure: this runs per CopyData
            // message, which is per row.
            let chunk = chunk.map_err(|e| {
                Error::db(format!("reading {} (partition {index}{read_through})", table.qualified()))(e)
            })?;
            if tx.send(chunk).await.is_err() {
                break; // the decoder stopped; its error is the one to report
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let decoded = tokio::task::spawn_blocking(move || decoder.join())
        .await
        .map_err(|e| Error::Internal(format!("decoder join failed: {e}")))?
        .map_err(|_| Error::Internal(format!("the decoder of {} panicked", table.qualified())))?;
    // A stream that failed on its own (Postgres refused the COPY, or the
    // connection broke) is the cause: the decoder then only saw a stream
    // without its trailer. A decoder that failed first stopped the stream
    // quietly (the send above fails), so its error is the one to report.
    let (rows, report) = match (decoded, streamed) {
        (_, Err(e)) => return Err(e),
        (Err(e), Ok(())) => return Err(e),
        (Ok(v), Ok(())) => v,
    };
    Ok(PartitionResult { table, partition: index, rows, report })
}
