//! *Pending sync*: source rows written after the sync checkpoint stored in
//! D1 are expected to differ from the targets until the next sync run, so
//! verify reports them apart from failures: exactly the rows the next run
//! sends (see `sync::changes`), those of transactions at or above the
//! checkpoint's horizon, or listed by its finer horizon. Postgres' snapshot
//! xmin is cluster-wide, and one long transaction anywhere would make every
//! row written since it began pending, hiding real differences: the
//! horizon leaves out other databases' transactions, and this database's
//! without subtransactions (Postgres 16+). With a stopped run in the
//! checkpoint, the position's horizon (the last finished run's) decides:
//! rows the stopped run already sent may count as pending until the next
//! run ends, never the other way round. Their keys are read from the source
//! at verify's own snapshot, key columns only.
//!
//! A row deleted from the source after the checkpoint is no longer there
//! to be matched, so it stays an `extra` difference until the sync.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

use crate::batch::collect::{take, Collector, Collectors};
use crate::batch::TableSpec;
use crate::digest::key_display;
use crate::error::{Error, Result};
use crate::plan::Prepared;
use crate::sink::vectorize::ndjson::id_text;
use crate::source::{read_all, Partition, ReadOptions, Source, TableJob};
use crate::state::changes::{all_of, changed_after};
use crate::state::checkpoint::{snapshot_xmax, Checkpoint};

/// One table's rows written after the checkpoint.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    /// As D1 differences name rows (`id=…`).
    pub d1_keys: HashSet<String>,
    /// As Vectorize differences name them (the vector id, for a one-column key).
    pub vector_ids: HashSet<String>,
}

impl Pending {
    /// Whether the row behind a Vectorize difference keyed `id=<vector id>`
    /// is pending: by its vector id (any one-column key, whatever its
    /// name), or by its D1 key when that column is named `id`.
    pub fn holds_vector(&self, key: &str) -> bool {
        key.strip_prefix("id=").is_some_and(|id| self.vector_ids.contains(id)) || self.d1_keys.contains(key)
    }
}

/// The sync checkpoint kept in a D1 file, if the file has one.
pub fn checkpoint_in(d1_file: &Path) -> Result<Option<Checkpoint>> {
    let conn = rusqlite::Connection::open_with_flags(d1_file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(format!("opening {}", d1_file.display())))?;
    let text: Option<String> = conn
        .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
        .ok();
    text.map(|t| Checkpoint::parse(&t, &format!("pgflare_sync_state in {}", d1_file.display()))).transpose()
}

/// Per source table, the rows written after the checkpoint's position
/// (a stopped run's ranges count as at the position).
pub async fn pending(
    src: &Source,
    snapshot_id: &str,
    txid_snapshot: &str,
    prepared: &Prepared,
    checkpoint: &Checkpoint,
    read: ReadOptions,
) -> Result<HashMap<String, Pending>> {
    let xmax = snapshot_xmax(txid_snapshot)?;
    // A parent restored from a soft delete makes its children pending
    // too. Too old to order (2^31 transactions without a sync): every row.
    let changed = |spec: &TableSpec| {
        let changed = prepared.live.touched(spec, changed_after(&checkpoint.position, xmax).as_deref());
        Some(changed.unwrap_or_else(|| "true".into()))
    };
    keys_where(src, snapshot_id, prepared, read, &changed).await
}

/// Per source table, the keys of its live rows that match `condition`
/// (tables for which it gives `None` are not read), at the snapshot.
pub async fn keys_where(
    src: &Source,
    snapshot_id: &str,
    prepared: &Prepared,
    read: ReadOptions,
    condition: &dyn Fn(&TableSpec) -> Option<String>,
) -> Result<HashMap<String, Pending>> {
    let out = Arc::new(Mutex::new(HashMap::new()));
    let mut jobs = Vec::new();
    let mut schemas = HashMap::new();
    for (info, (_, d1)) in prepared.infos.iter().zip(&prepared.d1) {
        let Ok((key_src, key_d1)) = crate::digest::pass::key_views(&info.spec, d1) else { continue };
        let Some(changed) = condition(&info.spec) else { continue };
        schemas.insert(info.spec.qualified(), key_d1.spec.arrow_schema());
        let filter = all_of(&[Some(changed), prepared.live.live(&info.spec)]);
        jobs.push(TableJob {
            table: Arc::new(key_src),
            partitions: vec![Partition { filter, ..Partition::whole() }],
            progress: indicatif::ProgressBar::hidden(),
        });
    }
    let sinks = Arc::new(Collectors::new(out.clone(), move |table, _| {
        let schema = schemas.get(&table.qualified()).cloned();
        Ok(KeySink { table: table.qualified(), schema, local: Pending::default() })
    }));
    read_all(src, snapshot_id, jobs, sinks, read).await?;
    take(&out)
}

/// One partition's keys, as D1 and Vectorize differences name rows.
struct KeySink {
    table: String,
    schema: Option<arrow::datatypes::SchemaRef>,
    local: Pending,
}

impl Collector for KeySink {
    type Out = HashMap<String, Pending>;

    fn write(&mut self, batch: &crate::batch::TableBatch) -> Result<()> {
        let Some(schema) = &self.schema else { return Ok(()) };
        // Under D1's names: the form D1 differences use.
        let b = RecordBatch::try_new(schema.clone(), batch.batch.columns().to_vec())?;
        let key: Vec<usize> = (0..b.num_columns()).collect();
        for row in 0..b.num_rows() {
            self.local.d1_keys.insert(key_display(&b, &key, row));
            if b.num_columns() == 1 {
                self.local.vector_ids.extend(id_text(b.column(0).as_ref(), row));
            }
        }
        Ok(())
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        let p = out.entry(self.table).or_default();
        p.d1_keys.extend(self.local.d1_keys);
        p.vector_ids.extend(self.local.vector_ids);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_difference_is_pending_whatever_the_key_column_is_named() {
        let p = Pending { d1_keys: ["chunk_id=7".to_string()].into(), vector_ids: ["7".to_string()].into() };
        // Vectorize differences are keyed `id=<vector id>`: matched by the
        // vector id, not only when the key column happens to be `id`.
        assert!(p.holds_vector("id=7"));
        assert!(!p.holds_vector("id=8"));
        let named_id = Pending { d1_keys: ["id=9".to_string()].into(), vector_ids: HashSet::new() };
        assert!(named_id.holds_vector("id=9"));
    }
}
