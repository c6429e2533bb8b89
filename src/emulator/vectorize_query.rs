//! The pure side of the emulated Vectorize: distance metrics and exact
//! (brute-force) top-k, metadata validation, metadata filters (the model
//! in [`crate::cloudflare::vectorize_filter`], shared with verify), and the
//! float32 encodings (little-endian BLOBs on disk, shortest round-trip
//! digits in JSON). No I/O here, so every rule has a unit test.
//!
//! Choices where Vectorize's documentation is silent (README lists them):
//! - scores are computed in f64 over the stored float32 values (the query
//!   vector is rounded to float32 first, as Vectorize stores it); a cosine
//!   against a zero vector scores 0;
//! - equal scores are ordered by id ascending (bytewise);
//! - a filter condition only sees a property whose value has the metadata
//!   index's type and was written after that index was created (Vectorize
//!   indexes only vectors upserted after the index exists. Source: cloudflare-docs
//!   `src/content/docs/vectorize/reference/metadata-filtering.mdx`: "Vectors upserted before a
//!   metadata index was created won't have their metadata contained in that index"); an absent or
//!   unindexed value matches no operator, `$ne`/`$nin` included, except
//!   `{"$eq": null}`, which matches exactly those;
//! - a filter value whose type differs from the index's type is refused
//!   (a silent no-match would hide the client's bug); arrays in metadata are
//!   stored but never filterable.

use std::cmp::Ordering;

use serde_json::Value;

pub use crate::cloudflare::vectorize_filter::{indexed_metadata, Filter, IndexType, Indexed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cosine,
    Euclidean,
    DotProduct,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "cosine" => Some(Metric::Cosine),
            "euclidean" => Some(Metric::Euclidean),
            "dot-product" => Some(Metric::DotProduct),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "euclidean",
            Metric::DotProduct => "dot-product",
        }
    }

    /// Similarities rank high first; a distance ranks low first.
    fn higher_is_closer(self) -> bool {
        self != Metric::Euclidean
    }
}

pub fn to_blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn from_blob(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The float32 values as JSON numbers with the shortest digits that read
/// back (as f64, then rounded to f32, or straight as f32) to the same bits.
pub fn values_json(values: &[f32]) -> Value {
    let mut buf = zmij::Buffer::new();
    Value::Array(
        values
            .iter()
            .map(|v| {
                buf.format_finite(*v)
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            })
            .collect(),
    )
}

/// A query vector ready to score stored BLOBs against.
pub struct Scorer {
    metric: Metric,
    query: Vec<f64>,
    norm: f64,
}

impl Scorer {
    pub fn new(metric: Metric, query: &[f32]) -> Scorer {
        let query: Vec<f64> = query.iter().map(|&v| f64::from(v)).collect();
        let norm = query.iter().map(|v| v * v).sum::<f64>().sqrt();
        Scorer { metric, query, norm }
    }

    /// The score of a stored vector (a little-endian float32 BLOB).
    pub fn score(&self, blob: &[u8]) -> f64 {
        let stored = blob.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        match self.metric {
            Metric::DotProduct => stored.zip(&self.query).map(|(s, q)| s * q).sum(),
            Metric::Euclidean => stored.zip(&self.query).map(|(s, q)| (s - q) * (s - q)).sum::<f64>().sqrt(),
            Metric::Cosine => {
                let (mut dot, mut sq) = (0.0, 0.0);
                for (s, q) in stored.zip(&self.query) {
                    dot += s * q;
                    sq += s * s;
                }
                let denom = self.norm * sq.sqrt();
                if denom == 0.0 {
                    0.0
                } else {
                    dot / denom
                }
            }
        }
    }
}

/// One scored candidate; `rowid` finds it again in the store.
#[derive(Debug, Clone)]
pub struct Hit {
    pub score: f64,
    pub id: String,
    pub rowid: i64,
}

/// The `k` closest hits, closest first, ties by id ascending.
pub fn top_k(mut hits: Vec<Hit>, metric: Metric, k: usize) -> Vec<Hit> {
    let order = |a: &Hit, b: &Hit| -> Ordering {
        let by_score =
            if metric.higher_is_closer() { b.score.total_cmp(&a.score) } else { a.score.total_cmp(&b.score) };
        by_score.then_with(|| a.id.cmp(&b.id))
    };
    if k == 0 {
        return Vec::new();
    }
    if hits.len() > k {
        hits.select_nth_unstable_by(k, order);
        hits.truncate(k);
    }
    hits.sort_by(order);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(metric: Metric, query: &[f32], data: &[(&str, [f32; 2])]) -> Vec<(String, f64)> {
        let s = Scorer::new(metric, query);
        let all = data
            .iter()
            .enumerate()
            .map(|(i, (id, v))| Hit { score: s.score(&to_blob(v)), id: id.to_string(), rowid: i as i64 })
            .collect();
        top_k(all, metric, 3).into_iter().map(|h| (h.id, h.score)).collect()
    }

    #[test]
    fn metrics_order_and_break_ties_by_id() {
        let data = [("d", [1.0, 0.0]), ("a", [0.0, 2.0]), ("c", [2.0, 0.0]), ("b", [3.0, 4.0])];
        let cos = hits(Metric::Cosine, &[1.0, 0.0], &data);
        assert_eq!(cos, vec![("c".into(), 1.0), ("d".into(), 1.0), ("b".into(), 0.6)]);
        let dot = hits(Metric::DotProduct, &[1.0, 1.0], &data);
        assert_eq!(dot, vec![("b".into(), 7.0), ("a".into(), 2.0), ("c".into(), 2.0)]);
        let euc = hits(Metric::Euclidean, &[0.0, 0.0], &data);
        assert_eq!(euc, vec![("d".into(), 1.0), ("a".into(), 2.0), ("c".into(), 2.0)]);
        assert_eq!(Scorer::new(Metric::Cosine, &[0.0, 0.0]).score(&to_blob(&[1.0, 1.0])), 0.0);
    }

    #[test]
    fn float32_json_round_trips_bit_for_bit() {
        let mut x: u32 = 0x1234_5678;
        let mut values =
            vec![0.1f32, 1.0 / 3.0, f32::MIN_POSITIVE, f32::MAX, -f32::MAX, 1e-45, -0.0, 16_777_217.0];
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let f = f32::from_bits(x);
            if f.is_finite() {
                values.push(f);
            }
        }
        let Value::Array(json) = values_json(&values) else { panic!("an array") };
        let text = serde_json::to_string(&json).expect("serializes");
        let back: Vec<f64> = serde_json::from_str(&text).expect("parses");
        for (v, b) in values.iter().zip(&back) {
            assert_eq!(v.to_bits(), (*b as f32).to_bits(), "{v:e} came back as {b:e}");
        }
        let direct: Vec<f32> = serde_json::from_str(&text).expect("parses as f32");
        assert!(values.iter().zip(&direct).all(|(v, d)| v.to_bits() == d.to_bits()));
        assert_eq!(serde_json::to_string(&values_json(&[0.1, 2.0])).expect("json"), "[0.1,2.0]");
        assert_eq!(from_blob(&to_blob(&values)), values);
    }
}
