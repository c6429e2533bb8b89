//! What a sync checkpoint is valid for, as two fingerprints: the tables
//! and their D1 shape ([`fingerprint`]) and what the vectors look like in
//! Vectorize ([`vectorize_fingerprint`]). A load writes them into the
//! checkpoint it leaves; sync refuses a checkpoint whose fingerprints
//! differ from its own (`sync::accept`), and verify reads them.

use super::changes;
use crate::plan::Prepared;

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
