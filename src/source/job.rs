//! One whole read: the selected tables, introspected and split into key
//! ranges inside a snapshot, read by the parallel workers into a sink, the
//! snapshot released at the end. Every command that moves data (archive,
//! load) runs its sinks through this.

use std::sync::Arc;

use super::partition::{self, SplitOptions};
use super::reader::{read_all, PartitionResult, ReadOptions, TableJob};
use super::{introspect, Selection, Snapshot, SnapshotInfo, Source, TableInfo};
use crate::batch::sink::{SinkFactory, SinkReport};
use crate::error::Result;
use crate::progress::Progress;

/// What a read produced, per table in selection order.
pub struct Reading {
    pub snapshot: SnapshotInfo,
    pub tables: Vec<TableRead>,
}

pub struct TableRead {
    pub info: TableInfo,
    pub partitions: usize,
    /// Everything the sinks of this table wrote, merged.
    pub report: SinkReport,
}

/// Reads `selection` at `snapshot` into `sinks`.
pub async fn read_selection(
    src: &Source,
    snapshot: Snapshot,
    selection: &Selection,
    split: SplitOptions,
    read: ReadOptions,
    sinks: Arc<dyn SinkFactory>,
    progress: &Progress,
) -> Result<Reading> {
    let plan = Plan { selection, split, read };
    read_selection_after(src, snapshot, plan, sinks, progress, || Ok(())).await
}

/// What [`read_selection_after`] reads, and how.
pub struct Plan<'a> {
    pub selection: &'a Selection,
    pub split: SplitOptions,
    pub read: ReadOptions,
}

/// [`read_selection`], with `before_read` run once the tables are
/// introspected and planned, before the first row: where the caller
/// creates its output, so that a refusal leaves nothing behind.
pub async fn read_selection_after(
    src: &Source,
    mut snapshot: Snapshot,
    plan: Plan<'_>,
    sinks: Arc<dyn SinkFactory>,
    progress: &Progress,
    before_read: impl FnOnce() -> Result<()>,
) -> Result<Reading> {
    let Plan { selection, split, read } = plan;
    let tables = introspect(snapshot.conn(), selection).await?;
    let mut jobs = Vec::new();
    for t in &tables {
        let parts = partition::plan(snapshot.conn(), &t.spec, t.total_bytes, split).await?;
        jobs.push(TableJob {
            table: Arc::new(t.spec.clone()),
            partitions: parts,
            progress: progress.rows(&t.spec.qualified(), t.row_estimate),
        });
    }
    before_read()?;
    let partitions: Vec<usize> = jobs.iter().map(|j| j.partitions.len()).collect();
    let bars: Vec<_> = jobs.iter().map(|j| j.progress.clone()).collect();
    let results: Vec<PartitionResult> = read_all(src, &snapshot.info.id, jobs, sinks, read).await?;
    let info = snapshot.info.clone();
    snapshot.release().await?;
    for b in bars {
        b.finish();
    }
    let tables = tables
        .into_iter()
        .zip(partitions)
        .map(|(info, partitions)| {
            let mut report = SinkReport::default();
            for r in results.iter().filter(|r| r.table.qualified() == info.spec.qualified()) {
                report.merge(r.report.clone());
            }
            TableRead { info, partitions, report }
        })
        .collect();
    Ok(Reading { snapshot: info, tables })
}
