//! Sync's link step (see `sink::d1::links`). A table with foreign keys on
//! a cycle is upserted like any other, except that its link columns are
//! written only for new rows (as a placeholder) and never by the update
//! of an existing row: a row whose parent arrives later in the run (its
//! key sorting first, or in another range) cannot fail, and an existing
//! row keeps its valid link while the run goes on. Each row's link values
//! go to a spool under the work folder; after every range is upserted,
//! the links are set (NULL ones included: a row may have lost its parent),
//! and only then are those ranges recorded in the checkpoint, so a run
//! killed before redoes them. Links left unset because the row they point
//! at is not in D1 are counted per table in the summary.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::sink::{record, Deferred};
use crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES;
use crate::error::{Error, Result};
use crate::plan::Prepared;
use crate::sink::d1::link_spool::LinkSpool;
use crate::sink::d1::linker::{self, LinkReport, LinkTarget};
use crate::sink::d1::render::D1Mappings;
use crate::state::checkpoint::Checkpoint;
use crate::state::store::Store;

/// The spool and the ranges waiting for the link step.
pub struct SyncLinks {
    pub spool: LinkSpool,
    pub deferred: Deferred,
}

/// `None` when no table has links; else an empty spool under `work_dir`.
pub fn prepare(work_dir: &Path, prepared: &Prepared) -> Result<Option<SyncLinks>> {
    if !prepared.fks.any_links() {
        return Ok(None);
    }
    let dir = work_dir.join("sync-links");
    LinkSpool::clear(&dir)?;
    let mappings = D1Mappings(
        prepared.infos.iter().zip(&prepared.mappings).map(|(i, m)| (i.spec.qualified(), m.clone())).collect(),
    );
    let tables = prepared
        .infos
        .iter()
        .zip(&prepared.mappings)
        .filter(|(_, m)| !m.links.is_empty())
        .map(|(i, _)| i.spec.qualified())
        .collect();
    Ok(Some(SyncLinks {
        spool: LinkSpool { dir, mappings, keep_nulls: true },
        deferred: Deferred { tables, finished: Arc::default() },
    }))
}

/// Sets the links of every range the upserts finished, then records those
/// ranges at `horizon`; returns what was set per table.
pub async fn link_and_record(
    links: &SyncLinks,
    target: &LinkTarget,
    prepared: &Prepared,
    checkpoint: &Arc<Mutex<Checkpoint>>,
    store: &Store,
    horizon: u64,
) -> Result<HashMap<String, LinkReport>> {
    let finished: Vec<(String, usize)> = links
        .deferred
        .finished
        .lock()
        .map_err(|_| Error::Internal("deferred ranges poisoned".into()))?
        .drain(..)
        .collect();
    let mut reports: HashMap<String, LinkReport> = HashMap::new();
    for (table, partition) in &finished {
        let i = prepared
            .infos
            .iter()
            .position(|i| i.spec.qualified() == *table)
            .ok_or_else(|| Error::Internal(format!("{table} is not among the synced tables")))?;
        let (spec, mapping) = (&prepared.infos[i].spec, &prepared.mappings[i]);
        let spool = LinkSpool::path(&links.spool.dir, spec, *partition);
        let mut r = linker::apply(target, &spool, spec, mapping, *partition, D1_MAX_STATEMENT_BYTES).await?;
        // The run's manifest lists the files; the summary counts rows.
        r.files.clear();
        reports.entry(table.clone()).or_default().merge(r);
    }
    if !finished.is_empty() {
        let snapshot = {
            let mut c = checkpoint.lock().map_err(|_| Error::Internal("sync checkpoint poisoned".into()))?;
            for (table, partition) in &finished {
                record(&mut c, table, *partition, horizon)?;
            }
            c.clone()
        };
        store.write(&snapshot).await?;
    }
    Ok(reports)
}
