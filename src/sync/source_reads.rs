//! The small reads of the source a sync run makes besides its change
//! set, all inside the run's snapshot: how many rows changed (to size the
//! key ranges), an integer key's bounds (to size the delete sweep's
//! buckets), and the keys of soft-deleted rows.

use std::sync::{Arc, Mutex};

use crate::batch::collect::{take, Collector, Collectors};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::{read_all, Partition, ReadOptions, Snapshot, Source, TableJob};

/// Rows of `spec` meeting `filter`.
pub async fn count_rows(
    snapshot: &mut Snapshot,
    spec: &crate::batch::TableSpec,
    filter: Option<&str>,
) -> Result<i64> {
    let sql = match filter {
        Some(f) => format!("SELECT count(*) FROM {} WHERE {f}", spec.sql_name()),
        None => format!("SELECT count(*) FROM {}", spec.sql_name()),
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(snapshot.conn())
        .await
        .map_err(Error::db(format!("counting the changes of {}", spec.qualified())))
}

/// The bounds of an integer key column, for sizing its buckets.
pub async fn int_bounds(
    snapshot: &mut Snapshot,
    spec: &crate::batch::TableSpec,
    column: &str,
) -> Result<Option<(i64, i64)>> {
    let c = crate::batch::quote_ident(column);
    let sql = format!("SELECT min({c})::int8, max({c})::int8 FROM {}", spec.sql_name());
    let row: (Option<i64>, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(snapshot.conn())
        .await
        .map_err(Error::db(format!("reading the key bounds of {}", spec.qualified())))?;
    Ok(row.0.zip(row.1))
}

/// The keys of the rows of `spec` (key columns only) meeting `filter`.
pub async fn read_keys(
    src: &Source,
    snapshot_id: &str,
    spec: &crate::batch::TableSpec,
    filter: Option<String>,
    read: ReadOptions,
    progress: &Progress,
) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let job = TableJob {
        table: Arc::new(spec.clone()),
        partitions: vec![Partition { filter, ..Partition::whole() }],
        progress: progress.rows(&format!("soft deletes {}", spec.name), None),
    };
    let sinks = Arc::new(Collectors::new(out.clone(), |_, _| Ok(KeyBatches(Vec::new()))));
    read_all(src, snapshot_id, vec![job], sinks, read).await?;
    take(&out)
}

/// One partition's batches, kept as they are.
struct KeyBatches(Vec<arrow::record_batch::RecordBatch>);

impl Collector for KeyBatches {
    type Out = Vec<arrow::record_batch::RecordBatch>;

    fn write(&mut self, batch: &crate::batch::TableBatch) -> Result<()> {
        self.0.push(batch.batch.clone());
        Ok(())
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        out.extend(self.0);
        0
    }
}

/// The key batches `select` returns (its columns are `spec`'s, in order),
/// read on `conn` outside any exported snapshot (the follower's
/// statements, each its own snapshot).
pub async fn keys_by_sql(
    conn: &mut crate::source::SourceConn,
    spec: &crate::batch::TableSpec,
    select: &str,
    read: ReadOptions,
    progress: &Progress,
) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sinks = Arc::new(Collectors::new(out.clone(), |_, _| Ok(KeyBatches(Vec::new()))));
    let bar = progress.rows(&format!("keys {}", spec.name), None);
    crate::source::reader::read_sql(conn, Arc::new(spec.clone()), select, 0, sinks, &bar, read).await?;
    bar.finish_and_clear();
    take(&out)
}
