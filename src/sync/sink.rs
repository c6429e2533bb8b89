//! The sinks of a sync run's upserts. [`ChangedVectors`] sits in front of
//! the Vectorize sink and lets through only rows whose vector (id, float32
//! values, namespace, metadata) differs from what Vectorize holds, by its
//! `pgflare-vector-v1` digest (verify's): the digest last sent is kept in
//! D1 (`pgflare_vector_digests`); for a row sync never sent (loaded by
//! `load`), up to [`CHECK_STORED`] per range are fetched from Vectorize
//! and digested instead, and beyond that they are simply sent (reading 20
//! per request costs more than upserting). A row whose embedding became
//! NULL has its vector deleted, and so has a row whose vector became one
//! Vectorize would refuse (`on_invalid = "skip"`; the inner sink names it
//! as skipped, or stops the run under `fail`): its old vector would
//! otherwise keep answering queries with stale data. Such a delete is
//! sent, and counted, only for an id that may hold a vector
//! ([`crate::state::held`]). Digests are recorded only after Vectorize applied
//! the write, so a kill in between means the vector is sent again, never
//! that a change is skipped; a deleted vector's id is recorded as holding
//! none ([`NO_VECTOR`]), so it is sent again once valid and not deleted
//! again while it stays NULL.
//! [`CheckpointRecorder`] advances the checkpoint of a key range once every
//! sink finished it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::BooleanArray;

use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::cloudflare::vectorize::WriteTicket;
use crate::cloudflare::Vectorize;
use crate::config::mapping::VectorMappings;
use crate::config::project::OnInvalid;
use crate::digest::vector::{vector_digest, Vector};
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::sink::recorded::{Recorded, Recorder};
use crate::sink::vectorize::ndjson::vector_at;
use crate::sink::vectorize::ndjson::{id_text, Line, LineWriter};
use crate::state::checkpoint::Checkpoint;
use crate::state::held::{is_vector_id, may_hold, record_digests, recorded, CHECK_STORED, NO_VECTOR};
use crate::state::store::Store;

/// Counts of one table's vectors in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VectorCounts {
    pub sent: u64,
    pub unchanged: u64,
    /// Vectors deleted (embedding NULL, vector refused, row deleted): ids
    /// that held one as far as sync knows ([`crate::state::held`]); ids known to
    /// hold none cost no request and are not counted.
    pub deleted: u64,
    /// Rows whose vector Vectorize would refuse (`on_invalid = "skip"`):
    /// not sent, and their old vector deleted.
    pub skipped: u64,
}

pub type Counts = Arc<Mutex<HashMap<String, VectorCounts>>>;

pub struct ChangedVectors {
    pub inner: Arc<dyn SinkFactory>,
    pub mappings: VectorMappings,
    pub d1: D1Access,
    /// The index (`None` for NDJSON files: nothing to compare with or wait for).
    pub index: Option<Arc<Vectorize>>,
    /// NDJSON files: where ids of vectors to delete are listed.
    pub deleted_ids: Option<std::path::PathBuf>,
    pub timeout: Duration,
    pub runtime: tokio::runtime::Handle,
    pub counts: Counts,
    /// How many stored vectors a range may fetch to compare
    /// ([`CHECK_STORED`] for a polling run; `sync --follow`, which knows
    /// the row changed and must spare requests, fetches none).
    pub check_stored: usize,
}

struct ChangedVectorSink {
    writer: Option<LineWriter>,
    id_column: usize,
    inner: Box<dyn BatchSink>,
    table: String,
    d1: D1Access,
    index: Option<Arc<Vectorize>>,
    deleted_ids: Option<std::path::PathBuf>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
    counts: Counts,
    local: VectorCounts,
    /// How many stored vectors this range fetched to compare.
    checked: usize,
    /// (id, digest) of vectors found in Vectorize as they are: recorded so
    /// the next run need not fetch them.
    learned: Vec<(String, String)>,
    /// (id, digest) of the vectors sent, recorded once applied.
    sent: Vec<(String, String)>,
    /// Ids whose vector became NULL.
    nulls: Vec<String>,
    /// Under `on_invalid = "skip"`, the ids of rows whose vector Vectorize
    /// would refuse: the index must not keep their old vector.
    refused: Option<Vec<String>>,
}

impl SinkFactory for ChangedVectors {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let m = self.mappings.get(table);
        let id_column = match m {
            Some(m) => table.columns.iter().position(|c| c.name == m.id).unwrap_or(0),
            None => 0,
        };
        Ok(Box::new(ChangedVectorSink {
            writer: m.map(|m| LineWriter::new(table, m).map(LineWriter::for_comparison)).transpose()?,
            id_column,
            inner: self.inner.open(table, partition)?,
            table: table.qualified(),
            d1: self.d1.clone(),
            index: self.index.clone(),
            deleted_ids: self.deleted_ids.clone(),
            timeout: self.timeout,
            runtime: self.runtime.clone(),
            counts: self.counts.clone(),
            local: VectorCounts::default(),
            checked: CHECK_STORED.saturating_sub(self.check_stored),
            learned: Vec::new(),
            sent: Vec::new(),
            nulls: Vec::new(),
            refused: m.filter(|m| m.on_invalid == OnInvalid::Skip).map(|_| Vec::new()),
        }))
    }
}

impl BatchSink for ChangedVectorSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let Some(w) = &self.writer else { return self.inner.write(batch) };
        let b = &batch.batch;
        // Per row: Some((id, digest)) for a line to send, None otherwise.
        let mut lines: Vec<Option<(String, String)>> = Vec::with_capacity(b.num_rows());
        let mut keep = vec![false; b.num_rows()];
        let mut line = String::new();
        for (row, k) in keep.iter_mut().enumerate() {
            match vector_at(w, b, row, &mut line)? {
                (Line::Written, Some(v)) => lines.push(Some((v.id.clone(), hex::encode(vector_digest(&v))))),
                (Line::Null, _) => {
                    let id = id_text(b.column(self.id_column).as_ref(), row).filter(|id| is_vector_id(id));
                    self.nulls.extend(id);
                    lines.push(None);
                }
                // The inner sink applies the on_invalid policy and names the row.
                _ => {
                    // An id Vectorize refuses cannot have a vector to delete.
                    let id = id_text(b.column(self.id_column).as_ref(), row).filter(|id| is_vector_id(id));
                    if let (Some(refused), Some(id)) = (self.refused.as_mut(), id) {
                        refused.push(id);
                    }
                    *k = true;
                    lines.push(None);
                }
            }
        }
        let ids: Vec<&str> = lines.iter().flatten().map(|(id, _)| id.as_str()).collect();
        let mut before =
            if ids.is_empty() { HashMap::new() } else { self.runtime.block_on(recorded(&self.d1, &ids))? };
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !before.contains_key(**id))
            .take(CHECK_STORED.saturating_sub(self.checked))
            .map(|id| id.to_string())
            .collect();
        if let (false, Some(index)) = (unknown.is_empty(), &self.index) {
            self.checked += unknown.len();
            for stored in self.runtime.block_on(index.get_by_ids(&unknown))? {
                let d = hex::encode(vector_digest(&Vector::from_stored(&stored)));
                self.learned.push((stored.id.clone(), d.clone()));
                before.insert(stored.id, d);
            }
        }
        for (row, l) in lines.into_iter().enumerate() {
            if let Some((id, digest)) = l {
                if before.get(&id) == Some(&digest) {
                    self.local.unchanged += 1;
                } else {
                    keep[row] = true;
                    self.sent.push((id, digest));
                }
            }
        }
        if keep.iter().any(|k| *k) {
            let filtered = arrow::compute::filter_record_batch(b, &BooleanArray::from(keep))?;
            self.inner.write(&TableBatch {
                table: batch.table.clone(),
                partition: batch.partition,
                batch: filtered,
            })?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        let mut report = self.inner.finish()?;
        if self.writer.is_none() {
            return Ok(report);
        }
        let timeout = self.timeout;
        if let (Some(t), Some(index)) = (report.vectors.pending_write.take(), &self.index) {
            self.runtime.block_on(index.wait_applied(WriteTicket(t), timeout, &|_: &str| {}))?;
        }
        // Vectors whose row lost its embedding or now breaks a rule: deleted
        // where they may exist (`held`); afterwards none of them holds one.
        let gone: Vec<String> = self.nulls.drain(..).chain(self.refused.take().unwrap_or_default()).collect();
        let mut budget = CHECK_STORED.saturating_sub(self.checked);
        let held = self.runtime.block_on(may_hold(&self.d1, self.index.as_deref(), &gone, &mut budget))?;
        if !held.is_empty() {
            let what = format!(
                "deleting vectors of {} whose embedding became NULL or one Vectorize refuses",
                self.table
            );
            if let Some(index) = &self.index {
                if let Some(t) = self.runtime.block_on(index.delete_by_ids(&what, &held))? {
                    self.runtime.block_on(index.wait_applied(t, timeout, &|_: &str| {}))?;
                }
            }
            if let Some(f) = &self.deleted_ids {
                super::deletes::append(f, &held.iter().map(|i| format!("{i}\n")).collect::<String>())?;
            }
        }
        // Only what Vectorize applied is recorded as sent.
        let mut sql = String::new();
        // A learned digest that a send replaced is written after it, and
        // the send's wins: the upsert below keeps the last value.
        let sent = self.sent.len();
        self.learned.retain(|(id, _)| !self.sent.iter().any(|(s, _)| s == id));
        let none = gone.into_iter().map(|id| (id, NO_VECTOR.to_string()));
        let record: Vec<(String, String)> =
            self.learned.drain(..).chain(self.sent.drain(..)).chain(none).collect();
        record_digests(&mut sql, &record);
        if !sql.is_empty() {
            self.runtime.block_on(self.d1.execute("recording the digests of vectors sent", &sql))?;
        }
        self.local.sent = sent as u64;
        self.local.deleted = held.len() as u64;
        self.local.skipped = report.vectors.skipped;
        let mut all = self.counts.lock().map_err(|_| Error::Internal("vector counts poisoned".into()))?;
        let c = all.entry(self.table.clone()).or_default();
        c.sent += self.local.sent;
        c.unchanged += self.local.unchanged;
        c.deleted += self.local.deleted;
        c.skipped += self.local.skipped;
        Ok(report)
    }
}

/// Records a range as done (at the run's horizon) in the checkpoint, in
/// D1, once its sinks finished ([`crate::sink::recorded`]).
pub struct CheckpointRecorder {
    pub checkpoint: Arc<Mutex<Checkpoint>>,
    pub store: Store,
    pub horizon: u64,
    pub runtime: tokio::runtime::Handle,
    /// Tables whose ranges the link step records instead (see `links`).
    pub deferred: Option<Deferred>,
}

/// A sync run's sinks: every target behind the one recording wrapper.
pub type Recording = Recorded<CheckpointRecorder>;

/// Ranges finished by the sinks but recorded only after the link step set
/// their links: a run killed in between sends them again.
#[derive(Clone, Default)]
pub struct Deferred {
    pub tables: std::collections::HashSet<String>,
    /// (table, range index) in the order they finished.
    pub finished: Arc<Mutex<Vec<(String, usize)>>>,
}

impl Recorder for CheckpointRecorder {
    fn record(&self, table: &str, partition: usize, _: &SinkReport) -> Result<()> {
        if let Some(d) = self.deferred.as_ref().filter(|d| d.tables.contains(table)) {
            let mut finished =
                d.finished.lock().map_err(|_| Error::Internal("deferred ranges poisoned".into()))?;
            finished.push((table.to_string(), partition));
            return Ok(());
        }
        let poisoned = || Error::Internal("sync checkpoint poisoned".into());
        // Held while saving, so saves land in the order they were made.
        let mut c = self.checkpoint.lock().map_err(|_| poisoned())?;
        record(&mut c, table, partition, self.horizon)?;
        self.runtime.block_on(self.store.write(&c))
    }
}

/// Moves range `partition` of `table` to `horizon` in the checkpoint.
pub fn record(c: &mut Checkpoint, table: &str, partition: usize, horizon: u64) -> Result<()> {
    let p = c
        .in_progress
        .as_mut()
        .and_then(|ip| ip.tables.get_mut(table))
        .and_then(|t| {
            let i = t.partitions.iter().position(|p| p.index == partition)?;
            t.horizon.get_mut(i)
        })
        .ok_or_else(|| Error::Internal(format!("no range {partition} of {table} in the sync run")))?;
    *p = horizon;
    c.written_at = crate::state::checkpoint::now();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8))]

        // However many digests a range records, the statements run on a D1
        // file with D1's SQL limits and the table ends with each id's last.
        #[test]
        fn recording_any_number_of_digests_runs_within_d1_limits(
            ids in proptest::collection::vec("(\\PC|'){1,64}", 1..12_000),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = crate::sink::d1::sqlite::D1SqliteConfig::open(&dir.path().join("d.sqlite"), Default::default())
                .expect("open");
            c.execute("setup", crate::state::store::STATE_DDL).expect("setup");
            let record: Vec<(String, String)> =
                ids.iter().enumerate().map(|(i, id)| (id.clone(), format!("{i:064x}"))).collect();
            let mut sql = String::new();
            record_digests(&mut sql, &record);
            c.execute("record", &sql).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let last: HashMap<&String, &String> = record.iter().map(|(i, d)| (i, d)).collect();
            let stored: Vec<(String, String)> = c
                .with_conn(|conn| {
                    let mut st = conn.prepare("SELECT id, digest FROM pgflare_vector_digests").expect("select");
                    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows");
                    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Error::sqlite("rows"))
                })
                .expect("stored");
            proptest::prop_assert_eq!(stored.len(), last.len());
            for (id, d) in &stored {
                proptest::prop_assert_eq!(Some(&d), last.get(id));
            }
        }
    }
}
