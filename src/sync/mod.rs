//! `pgflare sync`: one incremental run that brings D1 and Vectorize up to
//! a new snapshot of the source. In order:
//!
//! 1. take the runner's lease (in the target, [`store`]) and the source's
//!    advisory lock: only one runner at a time, a second one is told who
//!    runs ([`Outcome::Busy`]);
//! 2. read the checkpoint the load (or the last run) left in the target;
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

pub mod changes;
pub mod checkpoint;
pub mod deletes;
pub mod links;
pub mod ranges;
pub mod run;
pub mod run_files;
pub mod sink;
pub mod source_reads;
pub mod store;
pub mod sweep;

pub use run::{run_once, Outcome, SyncOptions, SyncSummary};

use crate::load::Prepared;

/// What a checkpoint is valid for: the tables, their D1 columns and keys,
/// the soft-delete columns, and a JSON metadata mapping (a changed
/// mapping changes every vector, which changes since the checkpoint would
/// not cover). It is taken from the configuration, not from whether
/// this run sends vectors; the rest of the Vectorize side is checked
/// apart ([`vectorize_fingerprint`]), so that checkpoints written before
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

/// Whether a checkpoint whose Vectorize side is `have` can go on with a
/// run whose vectors are `want` (both from [`vectorize_fingerprint`]); a
/// checkpoint without one predates it and is taken as it is.
pub fn check_vectorize(have: Option<&str>, want: &str, setting: &str) -> crate::error::Result<()> {
    let message = match have {
        None => return Ok(()),
        Some(h) if h == want || want == VECTORS_OFF => return Ok(()),
        Some(VECTORS_OFF) => {
            "the last load or sync run left Vectorize out (--vectorize off, or no index named), so the index \
             misses the changes that run carried, which changes since the checkpoint would not cover: run \
             `pgflare load --restart` with vectors on (it sends every vector again and resets the \
             checkpoint), or keep syncing with --vectorize off"
        }
        Some(_) => {
            "the checkpoint was written for another Vectorize mapping (vector, vector_id, vector_namespace, \
             vector_metadata, JSON metadata mapping, vector_metadata_indexes, [vectorize] dimensions or \
             metric) than pgflare.toml now has: vectors already in the index would keep their old id, \
             namespace, metadata or filterability, and changes since the checkpoint would not cover them. \
             Run `pgflare load --restart` with the new configuration (it sends every vector again and resets \
             the checkpoint; after new dimensions or metric, into a new index), or put the old mapping back"
        }
    };
    Err(crate::error::Error::Config { setting: setting.into(), message: message.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_goes_on_only_with_the_vectors_it_was_written_for() {
        let ok = |have: Option<&str>, want: &str| check_vectorize(have, want, "D1").is_ok();
        assert!(ok(None, "a"), "written before the mapping was recorded");
        assert!(ok(None, VECTORS_OFF));
        assert!(ok(Some("a"), "a"));
        assert!(ok(Some("a"), VECTORS_OFF), "a run without vectors can follow any");
        assert!(ok(Some(VECTORS_OFF), VECTORS_OFF));
        assert!(!ok(Some("a"), "b"), "another mapping");
        assert!(!ok(Some(VECTORS_OFF), "a"), "vectors after a run without them");
        let e =
            check_vectorize(Some(VECTORS_OFF), "a", "D1").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("--vectorize off") && e.contains("pgflare load --restart"), "{e}");
    }
}
