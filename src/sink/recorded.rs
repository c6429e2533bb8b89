//! The one "advance only after every sink finished" wrapper. A job's
//! resumable state (the load state file, the sync checkpoint) may mark a
//! key range done only once every sink behind it (D1, the link spool,
//! Vectorize) has finished that range: [`Recorded`] forwards batches to
//! the inner sinks and, when they all finished a (table, range), hands
//! their report to the job's [`Recorder`]. A range whose sinks failed is
//! never handed over, so a rerun redoes it.

use std::sync::Arc;

use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::error::Result;

/// What a job does once a range is finished everywhere: record it (now,
/// or after a wait of its own, such as Vectorize applying the writes).
pub trait Recorder: Send + Sync {
    /// `table` is the qualified source name; `report` what the sinks wrote.
    fn record(&self, table: &str, partition: usize, report: &SinkReport) -> Result<()>;
}

/// Sinks whose finished ranges are recorded by `recorder`.
pub struct Recorded<R: Recorder + 'static> {
    pub inner: Arc<dyn SinkFactory>,
    pub recorder: Arc<R>,
}

impl<R: Recorder + 'static> SinkFactory for Recorded<R> {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        Ok(Box::new(RecordedSink {
            inner: self.inner.open(table, partition)?,
            table: table.qualified(),
            partition,
            recorder: self.recorder.clone(),
        }))
    }
}

struct RecordedSink<R: Recorder> {
    inner: Box<dyn BatchSink>,
    table: String,
    partition: usize,
    recorder: Arc<R>,
}

impl<R: Recorder> BatchSink for RecordedSink<R> {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.inner.write(batch)
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let report = self.inner.finish()?;
        self.recorder.record(&self.table, self.partition, &report)?;
        Ok(report)
    }
}
