//! The contract between the reader and every sink. A [`SinkFactory`] (a
//! sink's configuration) opens one running [`BatchSink`] per table
//! partition; the sink receives that partition's batches in key order and,
//! when finished, says exactly what it wrote in a [`SinkReport`]. Sinks for
//! D1, Vectorize, the Parquet archive and the digest collectors all have
//! this shape, so the reader never knows which one it feeds. It lives next
//! to the batch, below `source`, `digest` and `sink`, because all three
//! speak it (the reader calls it, the collectors and the writers implement
//! it).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{TableBatch, TableSpec};
use crate::error::{Error, Result};

/// One file a sink wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    /// Path relative to the sink's output folder, with `/` separators.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// blake3 of the file's bytes, hex.
    pub blake3: String,
    /// Combined digest of the rows in the file (see `digest`), hex;
    /// empty for files whose rows are not digested (Vectorize NDJSON).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub row_digest: String,
}

/// What one running sink wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkReport {
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<FileReport>,
    /// What went to Vectorize (empty for other sinks).
    #[serde(default, skip_serializing_if = "VectorReport::is_empty")]
    pub vectors: VectorReport,
}

impl SinkReport {
    pub fn merge(&mut self, other: SinkReport) {
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.files.extend(other.files);
        self.vectors.merge(other.vectors);
    }
}

/// A running writer for one partition of one table.
pub trait BatchSink: Send {
    fn write(&mut self, batch: &TableBatch) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<SinkReport>;
}

/// A sink's configuration: opens a writer per (table, partition).
pub trait SinkFactory: Send + Sync {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>>;
}

/// A row whose vector was left out (policy `skip`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The row's key, `col=value`.
    pub key: String,
    pub column: String,
    /// The JSON path inside `column` at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
}

impl Rejected {
    /// `column meta, path meta.loc: reason`.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("column {}, path {p}: {}", self.column, self.reason),
            None => format!("column {}: {}", self.column, self.reason),
        }
    }
}

/// Metadata values left out from one JSON path for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omitted {
    pub path: String,
    pub reason: String,
    /// Values left out (one per vector).
    pub count: u64,
    /// The key of one row it happened to.
    pub example: String,
}

/// Rejected rows named per partition; the count has them all.
pub const MAX_NAMED_REJECTS: usize = 20;

/// Distinct (path, reason) pairs of omitted metadata listed; the total
/// counts them all.
pub const MAX_NAMED_OMISSIONS: usize = 20;

/// What a Vectorize sink did for one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorReport {
    /// Vectors written (lines in files, or vectors upserted).
    pub written: u64,
    /// Rows whose vector is NULL: no line, counted.
    pub null: u64,
    /// Rows refused by a Vectorize rule and skipped.
    pub skipped: u64,
    /// NDJSON bytes written or sent.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
    /// Metadata values left out of written vectors (JSON that does not
    /// fit Vectorize, or left out by the mapping).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub metadata_omitted: u64,
    /// Where and why, per (path, reason), the first [`MAX_NAMED_OMISSIONS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omissions: Vec<Omitted>,
    /// The last write to wait for before the partition counts as done
    /// (see `cloudflare::vectorize`); never stored.
    #[serde(skip)]
    pub pending_write: Option<u64>,
    /// Writes still to be sent that hold this partition's last vectors
    /// (the load's shared upserts); never stored.
    #[serde(skip)]
    pub pending_tails: Vec<DeferredWrite>,
}

impl VectorReport {
    pub fn is_empty(&self) -> bool {
        *self == VectorReport::default()
    }

    pub fn merge(&mut self, other: VectorReport) {
        self.written += other.written;
        self.null += other.null;
        self.skipped += other.skipped;
        self.bytes += other.bytes;
        self.files.extend(other.files);
        for r in other.rejected {
            if self.rejected.len() < MAX_NAMED_REJECTS {
                self.rejected.push(r);
            }
        }
        self.metadata_omitted += other.metadata_omitted;
        for o in other.omissions {
            self.count_omission(o);
        }
        self.pending_write = self.pending_write.max(other.pending_write);
        self.pending_tails.extend(other.pending_tails);
    }

    /// Adds `o` to its (path, reason) entry, or a new one while there is room.
    pub fn count_omission(&mut self, o: Omitted) {
        match self.omissions.iter().position(|x| x.path == o.path && x.reason == o.reason) {
            Some(i) => self.omissions[i].count += o.count,
            None if self.omissions.len() < MAX_NAMED_OMISSIONS => self.omissions.push(o),
            None => {}
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the request holding a range's last vectors came to: its write
/// ticket, or why it was not sent (`None` while it waits).
pub type Outcome = Option<std::result::Result<u64, String>>;

/// A write not sent yet: resolves to the write ticket of the request
/// that will hold a range's last vectors (`sink::vectorize::tails`).
/// Never stored; two are equal when they watch the same request.
#[derive(Clone)]
pub struct DeferredWrite {
    pub outcome: tokio::sync::watch::Receiver<Outcome>,
    /// The range whose last vectors wait (`Vectorize idx, public.t partition 3`).
    pub what: String,
}

impl DeferredWrite {
    /// Waits until the pool sent the request (or failed, or was dropped).
    pub async fn sent(mut self) -> Result<u64> {
        let failed = |message: String| Error::Api {
            what: format!("{}, its last vectors (sent with other ranges')", self.what),
            status: None,
            message,
            hint:
                "run the load again: it sends the ranges not confirmed again (upserts by id are harmless to \
                   repeat)"
                    .into(),
        };
        loop {
            if let Some(outcome) = self.outcome.borrow_and_update().clone() {
                return outcome.map_err(|e| failed(format!("the upsert holding them failed: {e}")));
            }
            if self.outcome.changed().await.is_err() {
                // The pool went away unsent: the load stopped before its flush.
                return Err(failed("the load stopped before they were sent".into()));
            }
        }
    }
}

impl std::fmt::Debug for DeferredWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferredWrite")
    }
}

impl PartialEq for DeferredWrite {
    fn eq(&self, other: &Self) -> bool {
        self.outcome.same_channel(&other.outcome)
    }
}

impl Eq for DeferredWrite {}
