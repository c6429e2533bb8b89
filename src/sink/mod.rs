//! The shape every sink shares. A [`SinkFactory`] (a sink's configuration)
//! opens one running [`BatchSink`] per table partition; the sink receives
//! that partition's batches in key order and, when finished, says exactly
//! what it wrote. Sinks for D1, Vectorize and the Parquet archive all have
//! this shape, so the reader never knows which one it feeds.

pub mod d1;
pub mod file;
pub mod tee;
pub mod vectorize;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::batch::{TableBatch, TableSpec};
use crate::error::Result;

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
    #[serde(default, skip_serializing_if = "vectorize::VectorReport::is_empty")]
    pub vectors: vectorize::VectorReport,
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
