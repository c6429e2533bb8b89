//! Wraps a target's sinks so that a key range is recorded as done in the
//! load state only after the target's own sink finished it, and so that
//! the progress bar shows bytes written next to rows.

use std::sync::Arc;

use indicatif::ProgressBar;

use super::state::StateFile;
use crate::batch::{TableBatch, TableSpec};
use crate::error::Result;
use crate::sink::{BatchSink, SinkFactory, SinkReport};

pub struct Checkpointing {
    pub inner: Arc<dyn SinkFactory>,
    pub state: Arc<StateFile>,
    /// Bars by qualified table name.
    pub bars: Vec<(String, ProgressBar)>,
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl SinkFactory for Checkpointing {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let name = table.qualified();
        let bar = self.bars.iter().find(|(n, _)| *n == name).map(|(_, b)| b.clone());
        Ok(Box::new(CheckpointSink {
            inner: self.inner.open(table, partition)?,
            state: self.state.clone(),
            table: name,
            partition,
            bar,
            bytes: self.bytes.clone(),
        }))
    }
}

struct CheckpointSink {
    inner: Box<dyn BatchSink>,
    state: Arc<StateFile>,
    table: String,
    partition: usize,
    bar: Option<ProgressBar>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl BatchSink for CheckpointSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.inner.write(batch)
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let report = self.inner.finish()?;
        self.state.partition_done(&self.table, self.partition, &report)?;
        let total = self.bytes.fetch_add(report.bytes, std::sync::atomic::Ordering::Relaxed) + report.bytes;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} of SQL written", indicatif::HumanBytes(total)));
        }
        Ok(report)
    }
}
