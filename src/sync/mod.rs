//! `pgflare sync`: one incremental run that brings D1 and Vectorize up to
//! a new snapshot of the source. In order:
//!
//! 1. take the runner's lease (in the target, [`store`]) and the source's
//!    advisory lock: only one runner at a time, a second one is told who
//!    runs ([`Outcome::Busy`]);
//! 2. read the checkpoint the load (or the last run) left in the target,
//!    and refuse it when this run differs from it in what changes since
//!    it would not cover ([`accept`]);
//! 3. export a snapshot and upsert every row written since the
//!    checkpoint's horizon ([`changes`]), range by range, each range
//!    recorded once D1 committed and Vectorize applied it ([`sink`]), with
//!    vectors re-sent only when their line changed; foreign keys on a
//!    cycle set once every range is in ([`links`]);
//! 4. delete rows soft-deleted since ([`deletes`]) and rows gone from the
//!    source ([`sweep`]), children before parents;
//! 5. move the checkpoint to the new snapshot.
//!
//! A run stopped at any point (SIGKILL included) leaves the checkpoint at
//! its last recorded range; the next run redoes only what was not recorded.

pub mod accept;
pub mod changes;
pub mod checkpoint;
pub mod deletes;
pub mod held;
pub mod links;
pub mod ranges;
pub mod run;
pub mod run_files;
pub mod sink;
pub mod source_reads;
pub mod store;
pub mod summary;
pub mod sweep;

pub use run::{run_once, Outcome, SyncOptions};
pub use summary::SyncSummary;

use crate::load::Prepared;

/// What a checkpoint is valid for: the tables, their D1 columns and keys,
/// the soft-delete columns, and a JSON metadata mapping (a changed
/// mapping changes every vector, which changes since the checkpoint would
/// not cover). It is taken from the configuration, not from whether
/// this run sends vectors; the rest of the Vectorize side is checked
/// apart ([`vectorize_fingerprint`], [`accept`]), so that checkpoints written before
/// it stay valid: this value must not change for an unchanged config.
pub fn fingerprint(prepared: &Prepared, project: &crate::config::project::Project) -> String {
    let mut h = blake3::Hasher::new();
    for (info, m) in prepared.infos.iter().zip(&prepared.mappings) {
        let table = changes::mapping(project, &info.spec.schema, &info.spec.name);
        let soft = table.and_then(|m| m.soft_delete.clone());
        h.update(
            format!("{}>{}:{:?}:{:?}:{:?}\n", info.spec.qualified(), m.table, m.columns, m.key, soft)
                .as_bytes(),
        );
        // Only with a JSON mapping, so checkpoints written before it stay valid.
        if let Some(t) = table.filter(|t| !t.vector_json.is_empty()) {
            h.update(
                format!("vectors:{:?}:{:?}:{:?}\n", t.vector, t.vector_metadata, t.vector_json).as_bytes(),
            );
        }
    }
    h.finalize().to_hex()[..32].to_string()
}

/// [`checkpoint::Checkpoint::vectorize`] of a load or run that left
/// Vectorize out.
pub const VECTORS_OFF: &str = "off";

/// What the vectors a run sends look like in Vectorize, for
/// [`checkpoint::Checkpoint::vectorize`]: per table its vector column,
/// id, namespace, metadata columns and JSON metadata mapping, dimension;
/// the metadata indexes (only vectors written after one was created are
/// filterable on it) and the metric. [`VECTORS_OFF`] when `sends` is false.
/// Kept apart from [`fingerprint`], whose value older checkpoints hold.
pub fn vectorize_fingerprint(
    prepared: &Prepared,
    project: &crate::config::project::Project,
    sends: bool,
) -> String {
    if !sends {
        return VECTORS_OFF.into();
    }
    let mut h = blake3::Hasher::new();
    let mut tables: Vec<_> = prepared.vectors.mappings.0.iter().collect();
    tables.sort_by(|a, b| a.0.cmp(b.0));
    for (table, v) in tables {
        // Metadata is an object: the order of its columns changes nothing.
        let mut metadata = v.metadata.clone();
        metadata.sort();
        h.update(
            format!(
                "{table}:{}:{}:{:?}:{metadata:?}:{:?}:{:?}\n",
                v.vector, v.id, v.namespace, v.json, v.dims
            )
            .as_bytes(),
        );
    }
    let mut indexes = prepared.vectors.metadata_indexes.clone();
    indexes.sort();
    h.update(format!("indexes:{indexes:?}\nmetric:{}\n", project.vectorize.metric).as_bytes());
    h.finalize().to_hex()[..32].to_string()
}
