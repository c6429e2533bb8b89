//! What a load state and a sync checkpoint are valid for, as fingerprints:
//! the load's target, tables, D1 shape and vectors ([`load_fingerprint`]),
//! the tables and their D1 shape a checkpoint follows ([`fingerprint`]),
//! and what the vectors look like in Vectorize ([`vectorize_fingerprint`]).
//! A load writes them; a resumed load and sync refuse a state or checkpoint
//! whose fingerprint differs from their own (`sync::accept`).
//!
//! Each is hashed from a stable encoding ([`Stable`]: every field named,
//! length-prefixed, in a fixed order), so that renaming a Rust field or
//! deriving `Debug` differently changes nothing. pgflare 0.1 hashed
//! `Debug` text; those values are still accepted when read
//! ([`Fingerprint::matches`]) and replaced by the stable form on the next
//! write, so that upgrading pgflare does not invalidate a checkpoint.

use super::changes;
use crate::config::mapping::VectorMapping;
use crate::config::project::{Project, VectorizeSettings};
use crate::plan::{vectors, Prepared, Target};
use crate::sink::d1::links::{Link, Placeholder};
use crate::sink::d1::render::D1Mapping;
use crate::source::TableInfo;

/// A fingerprint to store ([`Fingerprint::current`]) and the form pgflare
/// 0.1 stored for the same settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub current: String,
    legacy: String,
}

impl Fingerprint {
    /// Whether a stored value was made from the same settings.
    pub fn matches(&self, stored: &str) -> bool {
        stored == self.current || stored == self.legacy
    }

    /// A value with no older form (tests).
    #[cfg(test)]
    pub fn same(value: &str) -> Fingerprint {
        Fingerprint { current: value.into(), legacy: value.into() }
    }

    /// Vectorize left out: the same value in both forms.
    fn off() -> Fingerprint {
        Fingerprint { current: VECTORS_OFF.into(), legacy: VECTORS_OFF.into() }
    }
}

#[cfg(test)]
impl From<&str> for Fingerprint {
    fn from(value: &str) -> Fingerprint {
        Fingerprint::same(value)
    }
}

/// The stable encoding: blake3 over a domain tag, then each item as u64 LE
/// length + bytes (a list: its count, then its items), so no two different
/// inputs encode alike.
struct Stable(blake3::Hasher);

impl Stable {
    fn new(what: &str) -> Stable {
        let mut s = Stable(blake3::Hasher::new());
        s.str("pgflare-fingerprint-v2");
        s.str(what);
        s
    }

    fn str(&mut self, s: &str) -> &mut Stable {
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }

    fn strs<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Stable {
        self.0.update(&(items.len() as u64).to_le_bytes());
        for s in items {
            self.str(s.as_ref());
        }
        self
    }

    fn opt(&mut self, s: Option<&str>) -> &mut Stable {
        match s {
            None => self.str("none"),
            Some(s) => self.str("some").str(s),
        }
    }

    fn finish(&self) -> String {
        format!("v2-{}", &self.0.finalize().to_hex()[..32])
    }

    /// A D1 table: name, (source, D1) column pairs, key, links.
    fn d1(&mut self, m: &D1Mapping) -> &mut Stable {
        self.str(&m.table);
        let pairs: Vec<String> = m.columns.iter().flat_map(|(s, d)| [s.clone(), d.clone()]).collect();
        self.strs(&pairs).strs(&m.key);
        self.0.update(&(m.links.len() as u64).to_le_bytes());
        for l in &m.links {
            self.link(l);
        }
        self
    }

    fn link(&mut self, l: &Link) -> &mut Stable {
        let set: Vec<String> = l.set.iter().map(usize::to_string).collect();
        let placeholder = match l.placeholder {
            Placeholder::Null => "null",
            Placeholder::Own => "own",
        };
        self.str(&l.name).str(&l.table).strs(&l.columns).str(&l.ref_table).strs(&l.ref_columns);
        self.strs(&set).str(placeholder)
    }

    /// A table's vectors: column, id, namespace, metadata columns (sorted:
    /// metadata is an object), JSON metadata mapping, dimension.
    fn vectors(&mut self, v: &VectorMapping) -> &mut Stable {
        let mut metadata = v.metadata.clone();
        metadata.sort();
        let json = serde_json::to_string(&v.json).unwrap_or_default();
        let dims = v.dims.map(|d| d.to_string());
        self.str(&v.vector).str(&v.id).opt(v.namespace.as_deref()).strs(&metadata).str(&json);
        self.opt(dims.as_deref());
        // Only when set, so fingerprints made before flags existed stay valid.
        if !v.flags.is_empty() {
            self.str("flags").str(&serde_json::to_string(&v.flags).unwrap_or_default());
        }
        self
    }
}

/// What a load state is valid for: the target (and where vectors go), per
/// table its D1 mapping and vectors, and for an index the metadata indexes
/// and the metric. Not the policy for bad rows: a load that failed on one
/// must resume with `skip`.
pub fn load_fingerprint(
    target: &Target,
    vectors_to: Option<&str>,
    infos: &[TableInfo],
    mappings: &[D1Mapping],
    plan: &vectors::VectorPlan,
    index: Option<&VectorizeSettings>,
) -> Fingerprint {
    let mut s = Stable::new("load");
    s.str(&target.describe()).opt(vectors_to);
    for (i, m) in infos.iter().zip(mappings) {
        s.str(&i.spec.qualified()).d1(m);
        match plan.mappings.0.get(&i.spec.qualified()) {
            Some(v) => s.str("vectors").vectors(v),
            None => s.str("no vectors"),
        };
    }
    if let Some(settings) = index {
        let mut indexes = plan.metadata_indexes.clone();
        indexes.sort();
        let names: Vec<String> = indexes.iter().flat_map(|(p, t)| [p.clone(), t.clone()]).collect();
        s.str("index").strs(&names).str(&settings.metric);
    }
    Fingerprint { current: s.finish(), legacy: legacy_load(target, vectors_to, infos, mappings, plan, index) }
}

/// What a checkpoint is valid for: the tables, their D1 columns and keys,
/// the soft-delete columns, and the JSON metadata mapping (a changed
/// mapping changes every vector, which changes since the checkpoint would
/// not cover). It is taken from the configuration, not from whether this
/// run sends vectors; the rest of the Vectorize side is checked apart
/// ([`vectorize_fingerprint`]).
pub fn fingerprint(prepared: &Prepared, project: &Project) -> Fingerprint {
    let mut s = Stable::new("checkpoint");
    for (info, m) in prepared.infos.iter().zip(&prepared.mappings) {
        let table = changes::mapping(project, &info.spec.schema, &info.spec.name);
        s.str(&info.spec.qualified()).str(&m.table);
        let pairs: Vec<String> = m.columns.iter().flat_map(|(a, b)| [a.clone(), b.clone()]).collect();
        s.strs(&pairs).strs(&m.key).opt(table.and_then(|m| m.soft_delete.as_deref()));
        match table.filter(|t| !t.vector_json.is_empty()) {
            Some(t) => {
                let json = serde_json::to_string(&t.vector_json).unwrap_or_default();
                s.str("json metadata").opt(t.vector.as_deref()).strs(&t.vector_metadata).str(&json)
            }
            None => s.str("no json metadata"),
        };
        // Flags change every vector's metadata, as a JSON mapping does.
        if let Some(t) = table.filter(|t| !t.vector_flags.is_empty()) {
            s.str("flags").str(&serde_json::to_string(&t.vector_flags).unwrap_or_default());
        }
    }
    Fingerprint { current: s.finish(), legacy: legacy_checkpoint(prepared, project) }
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
pub fn vectorize_fingerprint(prepared: &Prepared, project: &Project, sends: bool) -> Fingerprint {
    if !sends {
        return Fingerprint::off();
    }
    let mut s = Stable::new("vectorize");
    let mut tables: Vec<_> = prepared.vectors.mappings.0.iter().collect();
    tables.sort_by(|a, b| a.0.cmp(b.0));
    for (table, v) in tables {
        s.str(table).vectors(v);
    }
    let mut indexes = prepared.vectors.metadata_indexes.clone();
    indexes.sort();
    let names: Vec<String> = indexes.iter().flat_map(|(p, t)| [p.clone(), t.clone()]).collect();
    s.strs(&names).str(&project.vectorize.metric);
    Fingerprint { current: s.finish(), legacy: legacy_vectorize(prepared, project, sends) }
}

// pgflare 0.1's forms, from `Debug` text: kept unchanged so that states
// and checkpoints written by it are still accepted.

fn legacy_load(
    target: &Target,
    vectors_to: Option<&str>,
    infos: &[TableInfo],
    mappings: &[D1Mapping],
    plan: &vectors::VectorPlan,
    index: Option<&VectorizeSettings>,
) -> String {
    let vectors = &plan.mappings;
    let mut h = blake3::Hasher::new();
    h.update(target.describe().as_bytes());
    if let Some(v) = vectors_to {
        h.update(format!("\n{v}").as_bytes());
    }
    for (i, m) in infos.iter().zip(mappings) {
        h.update(format!("\n{}>{}:{:?}:{:?}", i.spec.qualified(), m.table, m.columns, m.key).as_bytes());
        // Rows are written differently when a table has links (tables
        // without keep the fingerprint of earlier versions).
        if !m.links.is_empty() {
            h.update(format!(":links{:?}", m.links).as_bytes());
        }
        // What lands in Vectorize, not the policy for bad rows: a load that
        // failed on one must resume with `skip`.
        if let Some(v) = vectors.0.get(&i.spec.qualified()) {
            h.update(
                format!(":{}:{}:{:?}:{:?}:{:?}", v.vector, v.id, v.namespace, v.metadata, v.dims).as_bytes(),
            );
            // The JSON metadata mapping (added later: only when there is one,
            // so states written before it stay valid).
            if !v.json.is_empty() {
                h.update(format!(":{:?}", v.json).as_bytes());
            }
        }
    }
    // Vectorize filters only on vectors written after their metadata index
    // exists, and ranks by the index's metric: ranges loaded before a change
    // would differ from the rest. Each only when set (the metric: when not
    // the default), so states written before they counted stay valid.
    if let Some(settings) = index {
        let mut indexes = plan.metadata_indexes.clone();
        indexes.sort();
        if !indexes.is_empty() {
            h.update(format!("\nmetadata indexes:{indexes:?}").as_bytes());
        }
        if settings.metric != crate::config::project::VectorizeSettings::default().metric {
            h.update(format!("\nmetric:{}", settings.metric).as_bytes());
        }
    }
    h.finalize().to_hex()[..32].to_string()
}

fn legacy_checkpoint(prepared: &Prepared, project: &Project) -> String {
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

fn legacy_vectorize(prepared: &Prepared, project: &Project, sends: bool) -> String {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Stable;

    fn encode(items: &[Vec<String>]) -> String {
        let mut s = Stable::new("test");
        for list in items {
            s.strs(list);
        }
        s.finish()
    }

    proptest! {
        /// Length prefixes keep boundaries: lists that differ anywhere
        /// (also only in where one string ends) hash differently.
        #[test]
        fn different_lists_encode_differently(
            a in prop::collection::vec(prop::collection::vec("[ab]{0,3}", 0..3), 0..3),
            b in prop::collection::vec(prop::collection::vec("[ab]{0,3}", 0..3), 0..3),
        ) {
            prop_assert_eq!(encode(&a) == encode(&b), a == b);
        }
    }

    #[test]
    fn the_stable_form_is_tagged_and_repeatable() {
        let one = encode(&[vec!["id".into(), "id".into()]]);
        assert!(one.starts_with("v2-") && one.len() == 35, "{one}");
        assert_eq!(one, encode(&[vec!["id".into(), "id".into()]]));
        assert_ne!(one, encode(&[vec!["idid".into()]]));
        assert_ne!(encode(&[vec![], vec!["x".into()]]), encode(&[vec!["x".into()], vec![]]));
    }
}
