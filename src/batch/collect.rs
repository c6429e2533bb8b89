//! The one shape of a collector: a sink that writes nothing, only folds
//! the batches of one partition into a value of its own and, when the
//! partition is finished, merges that value into a result every partition
//! shares (bucket sums, rows of differing buckets, expected vectors, keys,
//! query candidates). A job writes only what it folds and how it merges
//! ([`Collector`]); opening a collector per partition, the lock and the
//! report are [`Collectors`]'.

use std::sync::{Arc, Mutex};

use super::sink::{BatchSink, SinkFactory, SinkReport};
use super::{TableBatch, TableSpec};
use crate::error::{Error, Result};

/// One partition's fold.
pub trait Collector: Send + 'static {
    /// What every partition's collector merges into.
    type Out: Send + 'static;
    fn write(&mut self, batch: &TableBatch) -> Result<()>;
    /// Merges this partition's part into `out`; returns the rows it counts
    /// (the report's `rows`).
    fn merge_into(self, out: &mut Self::Out) -> u64;
}

type Open<C> = dyn Fn(&Arc<TableSpec>, usize) -> Result<C> + Send + Sync;

/// Sinks that run a [`Collector`] per (table, partition), opened by `open`,
/// and merge them into `out`.
pub struct Collectors<C: Collector> {
    open: Box<Open<C>>,
    out: Arc<Mutex<C::Out>>,
}

impl<C: Collector> Collectors<C> {
    pub fn new(
        out: Arc<Mutex<C::Out>>,
        open: impl Fn(&Arc<TableSpec>, usize) -> Result<C> + Send + Sync + 'static,
    ) -> Collectors<C> {
        Collectors { open: Box::new(open), out }
    }
}

impl<C: Collector> SinkFactory for Collectors<C> {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        Ok(Box::new(CollectorSink { local: (self.open)(table, partition)?, out: self.out.clone() }))
    }
}

struct CollectorSink<C: Collector> {
    local: C,
    out: Arc<Mutex<C::Out>>,
}

impl<C: Collector> BatchSink for CollectorSink<C> {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.local.write(batch)
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let mut out = self.out.lock().map_err(|_| poisoned())?;
        let rows = self.local.merge_into(&mut out);
        Ok(SinkReport { rows, ..SinkReport::default() })
    }
}

fn poisoned() -> Error {
    Error::Internal("a collector panicked".into())
}

/// The shared result, once every partition merged (it is left empty).
pub fn take<T: Default>(out: &Arc<Mutex<T>>) -> Result<T> {
    Ok(std::mem::take(&mut *out.lock().map_err(|_| poisoned())?))
}
