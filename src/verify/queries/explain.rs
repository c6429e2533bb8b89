//! One query's two answers compared: recall@k, rank agreement, and for
//! every id where they part the reason, found by looking at what the index
//! holds for it (through the one model of Vectorize's filter,
//! [`crate::cloudflare::vectorize_filter`]): not in the index, another
//! namespace, a property missing, an array, unindexed, another value than
//! the source's, a string cut to 64 bytes, a score tie at the k-th, or
//! else the approximate search. Pure: the caller fetched everything.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::cloud::Plan;
use super::report::{Miss, MissReason, MissSide};
use crate::cloudflare::vectorize::StoredVector;
use crate::cloudflare::vectorize_filter::{lookup, Filter, Indexed, INDEXED_STRING_BYTES};

/// What one query saw on both sides.
pub struct Seen<'a> {
    pub k: usize,
    /// Exact top k from the source, best first.
    pub exact: &'a [(String, f64)],
    /// Cloudflare's final answer (after post-filters), best first.
    pub got: &'a [(String, f64)],
    /// Vectorize's merged matches before post-filters.
    pub candidates: &'a [(String, f64)],
    pub plan: &'a Plan,
    /// Vectorize refused the query: its message.
    pub error: Option<&'a str>,
    /// What the index holds for the ids looked at (missed and extra ones).
    pub stored: &'a HashMap<String, StoredVector>,
    pub indexes: &'a BTreeMap<String, Indexed>,
    /// Returned ids D1 holds.
    pub in_d1: &'a HashSet<String>,
    /// Returned ids the source filter admits.
    pub admitted: &'a HashSet<String>,
    /// The k-th exact score and the tolerance for a tie.
    pub tie: Option<(f64, f64)>,
    /// Exact scores of returned ids (computed from the source).
    pub exact_scores: &'a HashMap<String, f64>,
}

/// Recall, rank agreement and the misses of one query.
pub fn compare(s: &Seen) -> (f64, f64, Vec<Miss>) {
    let got: HashMap<&str, usize> = s.got.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let exact: HashMap<&str, usize> =
        s.exact.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let (mut common, mut same) = (0usize, 0usize);
    let mut misses = Vec::new();
    for (i, (id, score)) in s.exact.iter().enumerate() {
        match got.get(id.as_str()) {
            Some(j) => {
                common += 1;
                same += usize::from(*j == i);
            }
            None => misses.push(missed(s, id, *score)),
        }
    }
    for (id, _) in s.got {
        if !s.in_d1.contains(id) {
            misses.push(miss(
                id,
                MissSide::Extra,
                MissReason::NotInD1,
                "Vectorize returned it; D1 has no such row".into(),
            ));
        } else if !exact.contains_key(id.as_str()) {
            misses.push(extra(s, id));
        }
    }
    let denom = s.exact.len().min(s.k);
    let recall = if denom == 0 {
        if s.got.is_empty() {
            1.0
        } else {
            0.0
        }
    } else {
        common as f64 / denom as f64
    };
    let rank = if common == 0 { f64::from(u8::from(denom == 0)) } else { same as f64 / common as f64 };
    (recall, rank, misses)
}

fn miss(id: &str, side: MissSide, reason: MissReason, detail: String) -> Miss {
    Miss { id: id.to_string(), side, reason, detail }
}

/// Why an id of the exact answer is not in Cloudflare's.
fn missed(s: &Seen, id: &str, score: f64) -> Miss {
    let m = |reason, detail: String| miss(id, MissSide::Missed, reason, detail);
    if let Some(e) = s.error {
        return m(MissReason::FilterRefused, e.to_string());
    }
    let Some(stored) = s.stored.get(id) else {
        return m(MissReason::NotInIndex, "get_by_ids does not return it".into());
    };
    if let Some(ns) = &s.plan.namespace {
        if stored.namespace.as_deref() != Some(ns.as_str()) {
            let held = stored.namespace.as_deref().unwrap_or("(none)");
            return m(
                MissReason::OtherNamespace,
                format!("the query asks namespace {ns:?}; the vector is in {held:?}"),
            );
        }
    }
    if !s.plan.unflagged.is_empty() {
        return m(
            MissReason::UnindexedProperty,
            format!(
                "no flag property for {:?} (not in vector_metadata_flags): Vectorize was not asked",
                s.plan.unflagged
            ),
        );
    }
    let metadata = stored.metadata.as_ref().and_then(Value::as_object);
    let reasons: Vec<Option<(MissReason, String)>> =
        s.plan.filters.iter().map(|f| f.as_ref().and_then(|f| fails(f, metadata, s.indexes))).collect();
    if let Some(Some((reason, detail))) = (!reasons.iter().any(Option::is_none)).then(|| reasons[0].clone()) {
        return m(reason, detail);
    }
    if !s.plan.post.is_empty() && !s.candidates.iter().any(|(c, _)| c == id) {
        return m(
            MissReason::BeyondTopK,
            format!("not among the {} matches asked for before the post-filter", s.candidates.len()),
        );
    }
    tie_or_approximate(s, id, score, MissSide::Missed)
}

/// Why Cloudflare returned an id the exact answer does not have.
fn extra(s: &Seen, id: &str) -> Miss {
    let m = |reason, detail: String| miss(id, MissSide::Extra, reason, detail);
    if !s.admitted.contains(id) {
        let metadata = s.stored.get(id).and_then(|v| v.metadata.as_ref()).and_then(Value::as_object);
        let cut =
            s.plan.filters.iter().flatten().filter_map(Value::as_object).flat_map(|f| f.keys()).find(|p| {
                metadata
                    .and_then(|m| lookup(m, p))
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.len() > INDEXED_STRING_BYTES)
            });
        return match cut {
            Some(p) => m(
                MissReason::TruncatedProperty,
                format!("`{p}` is longer than 64 bytes: the metadata index compares its first 64 bytes only"),
            ),
            None => m(MissReason::FilterAdmitsOther, "the source filter does not admit this row".into()),
        };
    }
    let score = s.exact_scores.get(id).copied().unwrap_or(f64::NAN);
    tie_or_approximate(s, id, score, MissSide::Extra)
}

fn tie_or_approximate(s: &Seen, id: &str, score: f64, side: MissSide) -> Miss {
    match s.tie {
        Some((kth, tol)) if (score - kth).abs() <= tol => miss(
            id,
            side,
            MissReason::TieAtK,
            format!("score {score:.7} is within {tol:.1e} of the k-th ({kth:.7}): either order is right"),
        ),
        _ => miss(
            id,
            side,
            MissReason::Approximate,
            format!("passes the filter with score {score:.7} (k-th {:.7}); the index's approximate search left it out, or a write was not applied yet", s.tie.map_or(f64::NAN, |t| t.0)),
        ),
    }
}

/// The reason a stored vector fails one Vectorize filter object (`None`: it passes).
fn fails(
    filter: &Value,
    metadata: Option<&Map<String, Value>>,
    indexes: &BTreeMap<String, Indexed>,
) -> Option<(MissReason, String)> {
    let parsed = match Filter::parse(filter, indexes) {
        Ok(f) => f,
        Err(e) => return Some((MissReason::UnindexedProperty, e)),
    };
    // Written after every index (the model's sequence numbers): whether an
    // index predates a vector is not visible from outside Vectorize.
    if parsed.matches(metadata, i64::MAX) {
        return None;
    }
    let Value::Object(conds) = filter else { return None };
    for (p, cond) in conds {
        let one = Value::Object(Map::from_iter([(p.clone(), cond.clone())]));
        let passes = Filter::parse(&one, indexes).is_ok_and(|f| f.matches(metadata, i64::MAX));
        if passes {
            continue;
        }
        return Some(match metadata.and_then(|m| lookup(m, p)) {
            None => (
                MissReason::PropertyMissing,
                format!("`{p}` is absent from the vector's metadata; the filter asks {cond}"),
            ),
            Some(Value::Array(_)) => (
                MissReason::ArrayProperty,
                format!("`{p}` holds an array; Vectorize filters no arrays (no containment operator)"),
            ),
            Some(v)
                if indexes.get(p).is_some_and(|i| {
                    crate::cloudflare::vectorize_filter::json_type(v) != i.index_type.as_str()
                }) =>
            {
                (
                    MissReason::UnindexedProperty,
                    format!(
                        "`{p}` holds a {}; its metadata index is {}",
                        crate::cloudflare::vectorize_filter::json_type(v),
                        indexes[p].index_type.as_str()
                    ),
                )
            }
            Some(v) => (MissReason::PropertyDiffers, format!("`{p}` holds {v}; the filter asks {cond}")),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::vectorize_filter::IndexType;
    use serde_json::json;

    fn stored(id: &str, metadata: Value, ns: Option<&str>) -> StoredVector {
        StoredVector {
            id: id.into(),
            values: vec![],
            metadata: Some(metadata),
            namespace: ns.map(str::to_string),
        }
    }

    fn list(ids: &[(&str, f64)]) -> Vec<(String, f64)> {
        ids.iter().map(|(i, s)| (i.to_string(), *s)).collect()
    }

    #[test]
    fn each_miss_gets_the_reason_the_index_shows() {
        let indexes = BTreeMap::from([
            ("tags_api".to_string(), Indexed { index_type: IndexType::Boolean, created_seq: 0 }),
            ("title".to_string(), Indexed { index_type: IndexType::String, created_seq: 0 }),
        ]);
        let plan = Plan {
            namespace: None,
            filters: vec![Some(json!({"tags_api": true}))],
            post: vec![],
            unflagged: vec![],
        };
        let exact = list(&[("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6), ("e", 0.5)]);
        let got = list(&[("a", 0.9), ("x", 0.55), ("y", 0.5)]);
        let long = "t".repeat(70);
        let stored: HashMap<String, StoredVector> = [
            stored("b", json!({}), None),
            stored("c", json!({"tags_api": ["x"]}), None),
            stored("d", json!({"tags_api": false}), None),
            stored("e", json!({"tags_api": true}), None),
            stored("y", json!({"tags_api": true, "title": long}), None),
        ]
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect();
        let in_d1: HashSet<String> = ["a", "y"].iter().map(|s| s.to_string()).collect();
        let admitted: HashSet<String> = ["a"].iter().map(|s| s.to_string()).collect();
        let seen = Seen {
            k: 5,
            exact: &exact,
            got: &got,
            candidates: &got,
            plan: &plan,
            error: None,
            stored: &stored,
            indexes: &indexes,
            in_d1: &in_d1,
            admitted: &admitted,
            tie: Some((0.5, 1e-6)),
            exact_scores: &HashMap::new(),
        };
        let (recall, rank, misses) = compare(&seen);
        assert_eq!((recall, rank), (0.2, 1.0));
        let reasons: Vec<(&str, MissReason)> = misses.iter().map(|m| (m.id.as_str(), m.reason)).collect();
        assert_eq!(
            reasons,
            [
                ("b", MissReason::PropertyMissing),
                ("c", MissReason::ArrayProperty),
                ("d", MissReason::PropertyDiffers),
                ("e", MissReason::TieAtK),
                ("x", MissReason::NotInD1),
                ("y", MissReason::FilterAdmitsOther),
            ]
        );
        let refused = Seen { error: Some("no metadata index"), ..seen };
        assert!(compare(&refused)
            .2
            .iter()
            .filter(|m| m.side == MissSide::Missed)
            .all(|m| m.reason == MissReason::FilterRefused));
    }
}
