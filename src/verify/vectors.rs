//! Source against Vectorize. Each source row is turned into the vector
//! `pgflare load` sends (the same [`LineWriter`], so ids, float32 values,
//! metadata and namespace are exactly what a faithful load wrote), and
//! both sides are digested with the canonical vector digest
//! (`pgflare-vector-v1`, [`vector_digest`]). The index is enumerated with
//! `list` and fetched with `get_by_ids`; ids whose digests differ are
//! looked at again with the source's values: other values (with the
//! largest element difference, within `--float-tolerance` counted equal),
//! or other metadata / namespace (with the keys that differ).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::report::{DiffKind, Difference, FieldDiff, TargetKind, TargetReport, MAX_LISTED};
use super::value_check::{Sampler, ValueMode, ValuePlan};
use crate::batch::collect::{Collector, Collectors};
use crate::batch::TableBatch;
use crate::config::mapping::VectorMappings;
use crate::digest::buckets::{bucket_of, Buckets};
use crate::digest::shown::shorten;
use crate::digest::vector::{canonical, vector_digest, Vector};
use crate::digest::RowDigest;
use crate::error::Result;
use crate::sink::vectorize::ndjson::vector_at;
use crate::sink::vectorize::ndjson::{Line, LineWriter};

/// What the source expects in Vectorize, per table. Pass 1 ([`Gather::Expect`])
/// sums the ids into key buckets (compared with `list`'s without holding
/// either side's ids), keeps the digests of the vectors sync recorded and
/// draws the sample; the closer look ([`Gather::Drill`]) keeps whole
/// vectors of some ids and the ids of the buckets whose sums differ.
pub struct Expected {
    /// Vectors the source expects, in every bucket (compared or not).
    pub count: u64,
    pub ids: Buckets,
    /// Digests of the vectors compared in full: sync recorded them, or
    /// their rows changed since the last verify (`changed_only` of them).
    pub recorded: HashMap<String, RowDigest>,
    pub changed_only: u64,
    pub sample: Sampler,
    pub vectors: HashMap<String, Vector>,
    pub bucket_ids: HashSet<String>,
    pub skipped: Skipped,
}

impl Expected {
    /// Nothing gathered, over `n` key buckets.
    pub fn empty(n: usize) -> Self {
        Expected::new(n, None)
    }

    /// Empty, with `n` key buckets and (in pass 1) `plan`'s sample.
    fn new(n: usize, plan: Option<&ValuePlan>) -> Self {
        Expected {
            count: 0,
            ids: Buckets::new(n),
            recorded: HashMap::new(),
            changed_only: 0,
            sample: plan.map_or(Sampler::new(ValueMode::Sample(0), ""), |p| Sampler::new(p.mode, &p.seed)),
            vectors: HashMap::new(),
            bucket_ids: HashSet::new(),
            skipped: Skipped::default(),
        }
    }

    /// Pass 1 for one source vector: its id summed into its bucket, its
    /// digest kept when its values are compared in full, or offered to the
    /// sample. Ids outside the compared buckets are only counted.
    fn expect(&mut self, plan: &ValuePlan, (n, compared): &(usize, BTreeSet<usize>), v: Vector) {
        self.count += 1;
        if !in_sample(&v.id, *n, compared) {
            return;
        }
        self.ids.add_row(v.id.as_bytes(), &id_digest(&v.id));
        let digest = vector_digest(&v);
        match (plan.recorded.contains(&v.id), plan.changed.contains(&v.id)) {
            (false, false) => self.sample.add(&v.id, digest),
            (recorded, _) => {
                self.changed_only += u64::from(!recorded);
                self.recorded.insert(v.id, digest);
            }
        }
    }

    /// The closer look for one source vector: its id when it falls into a
    /// differing bucket (of `n`), the whole vector when it is wanted.
    fn drill(&mut self, ids: &HashSet<String>, buckets: &BTreeSet<usize>, n: usize, v: Vector) {
        if buckets.contains(&bucket_of(v.id.as_bytes(), n)) {
            self.bucket_ids.insert(v.id.clone());
        }
        if ids.contains(&v.id) {
            self.vectors.insert(v.id.clone(), v);
        }
    }

    fn merge(&mut self, other: Expected) {
        self.count += other.count;
        self.ids.merge(&other.ids);
        self.recorded.extend(other.recorded);
        self.changed_only += other.changed_only;
        self.sample.merge(other.sample);
        self.vectors.extend(other.vectors);
        self.bucket_ids.extend(other.bucket_ids);
        self.skipped.merge(other.skipped);
    }
}

/// The digest an id adds to its bucket's sum on either side: the sums say
/// whether both sides hold the same ids, whatever their order.
pub fn id_digest(id: &str) -> RowDigest {
    let mut h = blake3::Hasher::new();
    h.update(b"pgflare-vector-id-v1\0").update(id.as_bytes());
    *h.finalize().as_bytes()
}

/// What one source pass gathers for the Vectorize comparison.
#[derive(Clone)]
pub enum Gather {
    /// Pass 1: id sums, the recorded vectors' digests, the sample.
    Expect(Arc<ValuePlan>),
    /// The closer look: the vectors of `ids` (to compare field by field)
    /// and every id in `buckets` (to name the missing and extra ones).
    Drill { ids: Arc<HashSet<String>>, buckets: Arc<BTreeSet<usize>> },
}

/// Source rows with a vector that Vectorize would refuse: all counted,
/// the first [`MAX_LISTED`] by key kept with their reasons, and every id
/// (so a vector the index still holds for one is not taken for an extra).
#[derive(Default)]
pub struct Skipped {
    pub count: u64,
    pub listed: BTreeMap<String, String>,
    pub ids: HashSet<String>,
}

impl Skipped {
    fn add(&mut self, key: String, id: Option<String>, reason: String) {
        self.count += 1;
        self.ids.extend(id);
        self.listed.insert(key, reason);
        if self.listed.len() > MAX_LISTED {
            self.listed.pop_last();
        }
    }

    fn merge(&mut self, other: Skipped) {
        self.count += other.count;
        self.ids.extend(other.ids);
        self.listed.extend(other.listed);
        while self.listed.len() > MAX_LISTED {
            self.listed.pop_last();
        }
    }

    /// The listed ones as report differences.
    pub fn differences(&self) -> Vec<Difference> {
        self.listed
            .iter()
            .map(|(key, reason)| Difference {
                reason: Some(reason.clone()),
                ..Difference::bare(DiffKind::Skipped, key.clone())
            })
            .collect()
    }
}

/// The vectors one partition of the source should have in Vectorize.
pub struct ExpectSink {
    writer: Option<LineWriter>,
    table: String,
    gather: Gather,
    sample: Arc<(usize, BTreeSet<usize>)>,
    local: Expected,
}

/// Sinks that gather, per vector table, what `gather` asks for, and the
/// rows the rules leave out. `sample`: the key buckets (of `sample.0`)
/// compared, outside which ids are not counted.
pub fn expect_sinks(
    mappings: VectorMappings,
    gather: Gather,
    sample: Arc<(usize, BTreeSet<usize>)>,
    result: Arc<Mutex<HashMap<String, Expected>>>,
) -> Collectors<ExpectSink> {
    Collectors::new(result, move |table, _| {
        let writer = mappings
            .get(table)
            .map(|m| LineWriter::new(table, m).map(LineWriter::for_comparison))
            .transpose()?;
        Ok(ExpectSink {
            writer,
            table: table.qualified(),
            gather: gather.clone(),
            sample: sample.clone(),
            local: Expected::new(
                sample.0,
                match &gather {
                    Gather::Expect(plan) => Some(plan),
                    Gather::Drill { .. } => None,
                },
            ),
        })
    })
}

impl Collector for ExpectSink {
    type Out = HashMap<String, Expected>;

    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let Some(w) = &self.writer else { return Ok(()) };
        let (local, sample) = (&mut self.local, &*self.sample);
        let mut line = String::new();
        for row in 0..batch.batch.num_rows() {
            match (vector_at(w, &batch.batch, row, &mut line)?, &self.gather) {
                ((Line::Written, Some(v)), Gather::Expect(plan)) => local.expect(plan, sample, v),
                ((Line::Written, Some(v)), Gather::Drill { ids, buckets }) => {
                    local.drill(ids, buckets, sample.0, v)
                }
                // Expected in Vectorize, but the rules leave it out: say so.
                ((Line::Invalid(r), _), Gather::Expect(_)) => {
                    let id = w.id_of(&batch.batch, row);
                    if id.as_deref().is_none_or(|id| in_sample(id, sample.0, &sample.1)) {
                        let key = id.as_ref().map(|id| format!("id={id}")).unwrap_or(r.key.clone());
                        local.skipped.add(key, id, r.describe());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        match out.entry(self.table) {
            Entry::Vacant(v) => {
                v.insert(self.local);
            }
            Entry::Occupied(mut o) => o.get_mut().merge(self.local),
        }
        0
    }
}

/// Whether an id falls into the sampled buckets.
pub fn in_sample(id: &str, buckets: usize, sampled: &BTreeSet<usize>) -> bool {
    sampled.len() >= buckets || sampled.contains(&bucket_of(id.as_bytes(), buckets))
}

/// Compares one source vector with the stored one; `None` when equal
/// (within `tolerance` for values).
pub fn difference(s: &Vector, t: &Vector, tolerance: f64) -> Option<Difference> {
    let same_values = s.values.len() == t.values.len()
        && s.values.iter().zip(&t.values).all(|(a, b)| {
            a.to_bits() == b.to_bits() || ((a - b).abs() as f64) <= tolerance && tolerance > 0.0
        });
    if !same_values {
        let max = (s.values.len() == t.values.len()).then(|| {
            s.values.iter().zip(&t.values).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max)
        });
        return Some(Difference {
            kind: DiffKind::VectorValues,
            key: format!("id={}", s.id),
            fields: vec![],
            max_abs_diff: max,
            reason: None,
        });
    }
    let mut fields = Vec::new();
    if s.namespace != t.namespace {
        let show = |n: &Option<String>| n.clone().unwrap_or_else(|| "(none)".into());
        fields.push(FieldDiff {
            field: "namespace".into(),
            source: show(&s.namespace),
            target: show(&t.namespace),
        });
    }
    let empty = serde_json::Map::new();
    let (sm, tm) = (s.metadata.as_object().unwrap_or(&empty), t.metadata.as_object().unwrap_or(&empty));
    let keys: std::collections::BTreeSet<&String> = sm.keys().chain(tm.keys()).collect();
    for k in keys {
        let (a, b) = (sm.get(k), tm.get(k));
        let shown =
            |v: Option<&Value>| v.map(|v| shorten(&canonical(v))).unwrap_or_else(|| "(absent)".into());
        if a.map(canonical) != b.map(canonical) {
            fields.push(FieldDiff { field: format!("metadata.{k}"), source: shown(a), target: shown(b) });
        }
    }
    (!fields.is_empty()).then(|| Difference {
        kind: DiffKind::Metadata,
        key: format!("id={}", s.id),
        fields,
        max_abs_diff: None,
        reason: None,
    })
}

/// The report of one table against the index. `found` holds every
/// difference but skipped ones, of which `skipped` has the count and the
/// first listed.
pub fn report(
    index: &str,
    location: &str,
    source_count: u64,
    target_count: u64,
    mut found: Vec<Difference>,
    skipped: &Skipped,
    sampled: f64,
) -> TargetReport {
    let mut counts: BTreeMap<DiffKind, u64> = BTreeMap::new();
    found.iter().for_each(|d| *counts.entry(d.kind).or_default() += 1);
    if skipped.count > 0 {
        counts.insert(DiffKind::Skipped, skipped.count);
    }
    found.extend(skipped.differences());
    found.sort_by(|a, b| a.key.cmp(&b.key).then(a.kind.cmp(&b.kind)));
    found.truncate(MAX_LISTED);
    TargetReport {
        kind: TargetKind::Vectorize,
        location: location.to_string(),
        name: index.to_string(),
        source_rows: source_count,
        target_rows: target_count,
        buckets: 0,
        buckets_differing: 0,
        counts,
        differences: found,
        pending_sync: 0,
        sampled,
        notes: Vec::new(),
        values: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(values: Vec<f32>, metadata: Value) -> Vector {
        Vector { id: "a".into(), values, namespace: None, metadata }
    }

    #[test]
    fn the_digest_sees_one_bit_and_ignores_key_order_and_number_spelling() {
        let base = v(vec![0.5, -1.0], serde_json::json!({"b": 1, "a": "x"}));
        let same = v(vec![0.5, -1.0], serde_json::from_str(r#"{"a":"x","b":1.0}"#).expect("json"));
        assert_eq!(vector_digest(&base), vector_digest(&same));
        let flipped = v(vec![f32::from_bits(0.5f32.to_bits() ^ 1), -1.0], base.metadata.clone());
        assert_ne!(vector_digest(&base), vector_digest(&flipped));
        assert_eq!(
            vector_digest(&v(vec![1.0], Value::Null)),
            vector_digest(&v(vec![1.0], serde_json::json!({})))
        );
        let d = difference(&base, &flipped, 0.0).expect("differs");
        assert_eq!(d.kind, DiffKind::VectorValues);
        assert!(d.max_abs_diff.expect("max") > 0.0 && d.max_abs_diff.expect("max") < 1e-6);
        assert!(difference(&base, &flipped, 1e-6).is_none(), "within tolerance");
        let other = v(vec![0.5, -1.0], serde_json::json!({"a": "y", "b": 1}));
        let d = difference(&base, &other, 0.0).expect("metadata");
        assert_eq!(
            (d.kind, d.fields[0].field.as_str(), d.fields[0].source.as_str()),
            (DiffKind::Metadata, "metadata.a", "\"x\"")
        );
    }
}
