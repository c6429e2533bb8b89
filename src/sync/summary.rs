//! What a sync run reports: per table the rows upserted and deleted and
//! the vectors sent, unchanged, deleted and skipped, and for the run the
//! totals, the snapshots before and after and the lag
//! (`schemas/sync-summary.schema.json`).

use serde::Serialize;

use super::deletes::Deleted;
use super::sink::VectorCounts;
use super::sweep::SweepReport;
use crate::batch::sink::Rejected;

#[derive(Clone, Debug, Default, Serialize)]
pub struct TableSync {
    pub table: String,
    pub d1_table: String,
    pub rows_upserted: u64,
    /// Rows removed from D1 because they were soft-deleted (rows D1 did
    /// not hold are not counted; `files`: the keys written to delete).
    pub rows_soft_deleted: u64,
    /// Rows removed from D1 because a parent (along the foreign keys,
    /// transitively) was soft-deleted.
    pub rows_hidden_by_deleted_parent: u64,
    pub rows_hard_deleted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectors: Option<VectorCounts>,
    /// Rows whose vector Vectorize would refuse (`on_invalid = "skip"`),
    /// the first [`crate::batch::sink::MAX_NAMED_REJECTS`] with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_vectors: Vec<Rejected>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepReport>,
    /// Links set after the upserts (tables with foreign keys on a cycle),
    /// and rows left with their link unset (the row they point at is not in D1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<crate::sink::d1::linker::LinkReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SyncSummary {
    pub format: &'static str,
    /// Completed runs including this one.
    pub run: u64,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectorize: Option<String>,
    pub state: String,
    pub started_at: String,
    /// The snapshot the targets reflected before this run, and now.
    pub from_snapshot_taken_at: String,
    pub to_snapshot_taken_at: String,
    /// This run continued one that was stopped.
    pub resumed: bool,
    /// False when a signal stopped the run early (the next run goes on).
    pub complete: bool,
    pub rows_upserted: u64,
    pub rows_deleted: u64,
    pub vectors_upserted: u64,
    pub vectors_unchanged: u64,
    pub vectors_deleted: u64,
    /// How far behind the source the targets are at the end of the run:
    /// seconds from the snapshot they now reflect to now.
    pub lag_seconds: f64,
    pub seconds: f64,
    pub tables: Vec<TableSync>,
}

pub(super) fn add_deleted_vectors(t: &mut TableSync, d: Deleted) {
    if let Some(v) = t.vectors.as_mut() {
        v.deleted += d.vectors;
    }
}
