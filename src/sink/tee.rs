//! Several sinks fed from one read: a load sends each batch to D1 and to
//! Vectorize, so the source (and its vector column, the bulk of the bytes)
//! is read once. A partition is finished only when every sink finished it.

use std::sync::Arc;

use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::error::Result;

pub struct Tee(pub Vec<Arc<dyn SinkFactory>>);

impl SinkFactory for Tee {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let sinks = self.0.iter().map(|f| f.open(table, partition)).collect::<Result<Vec<_>>>()?;
        Ok(Box::new(TeeSink(sinks)))
    }
}

struct TeeSink(Vec<Box<dyn BatchSink>>);

impl BatchSink for TeeSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.0.iter_mut().try_for_each(|s| s.write(batch))
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let mut report = SinkReport::default();
        for s in self.0 {
            report.merge(s.finish()?);
        }
        Ok(report)
    }
}
