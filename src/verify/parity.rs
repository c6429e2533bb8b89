//! Similarity-query parity: do queries against Vectorize return what the
//! source would? N query vectors are chosen deterministically from the
//! source (the ids with the smallest blake3 of their text), the exact top-k
//! for each is computed by streaming every source vector once (brute force
//! in f64 over the float32 values, with the index's metric), and the same
//! queries are sent to Vectorize. Reported per query: recall@k, rank
//! agreement, the largest score difference, and returned ids D1 lacks.
//!
//! The exact side is computed here rather than with pgvector's operators:
//! they would give the same order, but the pgvector build of the local
//! test stack cannot run them on every CPU (see the README), and streaming
//! keeps the cost to one read of the vector column.

use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use super::report::{QueryParity, QueryResult};
use crate::batch::collect::{Collector, Collectors};
use crate::batch::TableBatch;
use crate::config::mapping::VectorMappings;
use crate::digest::vector::Vector;
use crate::error::Result;
use crate::sink::vectorize::ndjson::LineWriter;

/// A distance metric as Vectorize names it; scores as Vectorize reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Cosine,
    Euclidean,
    DotProduct,
}

impl Metric {
    pub fn parse(s: &str) -> Metric {
        match s {
            "euclidean" => Metric::Euclidean,
            "dot-product" => Metric::DotProduct,
            _ => Metric::Cosine,
        }
    }

    /// Vectorize's score: cosine similarity, euclidean distance, dot product.
    pub fn score(self, a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        match self {
            Metric::DotProduct => dot,
            Metric::Euclidean => {
                a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>().sqrt()
            }
            Metric::Cosine => {
                let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                if na == 0.0 || nb == 0.0 {
                    0.0
                } else {
                    dot / (na * nb)
                }
            }
        }
    }

    /// A key that sorts best first (smaller is better).
    pub fn rank_key(self, score: f64) -> f64 {
        match self {
            Metric::Euclidean => score,
            _ => -score,
        }
    }
}

/// Keeps the N ids with the smallest blake3 of their text: a deterministic
/// choice of query vectors that does not depend on read order.
#[derive(Default)]
pub struct Chooser {
    n: usize,
    heap: BinaryHeap<Candidate>,
}

/// A query candidate, ordered by (hash, id) only.
struct Candidate {
    hash: [u8; 32],
    id: String,
    values: Vec<f32>,
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        (self.hash, &self.id) == (o.hash, &o.id)
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.hash, &self.id).cmp(&(o.hash, &o.id))
    }
}

impl Chooser {
    pub fn new(n: usize) -> Self {
        Chooser { n, heap: BinaryHeap::new() }
    }

    pub fn offer(&mut self, v: &Vector) {
        let c =
            Candidate { hash: *blake3::hash(v.id.as_bytes()).as_bytes(), id: v.id.clone(), values: vec![] };
        if self.heap.len() < self.n || self.heap.peek().is_some_and(|top| c < *top) {
            self.push(Candidate { values: v.values.clone(), ..c });
        }
    }

    fn push(&mut self, c: Candidate) {
        if self.heap.len() >= self.n {
            self.heap.pop();
        }
        self.heap.push(c);
    }

    pub fn merge(&mut self, other: Chooser) {
        for c in other.heap {
            if self.heap.len() < self.n || self.heap.peek().is_some_and(|top| c < *top) {
                self.push(c);
            }
        }
    }

    /// The chosen (id, vector), in id-hash order.
    pub fn chosen(self) -> Vec<(String, Vec<f32>)> {
        self.heap.into_sorted_vec().into_iter().map(|c| (c.id, c.values)).collect()
    }
}

/// Per query, the best `k` (rank key, id, score) seen so far.
pub struct TopK {
    pub metric: Metric,
    pub k: usize,
    pub queries: Arc<Vec<(String, Vec<f32>)>>,
    /// Max-heaps on the rank key: the worst kept on top.
    pub best: Vec<BinaryHeap<(OrdF64, String)>>,
}

/// An f64 with a total order (NaN last), for heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrdF64(pub f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl TopK {
    pub fn new(metric: Metric, k: usize, queries: Arc<Vec<(String, Vec<f32>)>>) -> Self {
        let best = queries.iter().map(|_| BinaryHeap::new()).collect();
        TopK { metric, k, queries, best }
    }

    pub fn offer(&mut self, v: &Vector) {
        self.offer_where(v, &|_| true)
    }

    /// Offers `v` to the queries `admits` (by position) lets it into.
    pub fn offer_where(&mut self, v: &Vector, admits: &dyn Fn(usize) -> bool) {
        for (i, (q, heap)) in self.queries.iter().zip(self.best.iter_mut()).enumerate() {
            if q.1.len() != v.values.len() || !admits(i) {
                continue;
            }
            let key = OrdF64(self.metric.rank_key(self.metric.score(&q.1, &v.values)));
            // Ties broken by id, as the emulator does, so the order is total.
            if heap.len() < self.k {
                heap.push((key, v.id.clone()));
            } else if heap.peek().is_some_and(|top| (key, &v.id) < (top.0, &top.1)) {
                heap.pop();
                heap.push((key, v.id.clone()));
            }
        }
    }

    pub fn merge(&mut self, other: TopK) {
        for (mine, theirs) in self.best.iter_mut().zip(other.best) {
            for (key, id) in theirs {
                if mine.len() < self.k {
                    mine.push((key, id));
                } else if mine.peek().is_some_and(|top| (key, &id) < (top.0, &top.1)) {
                    mine.pop();
                    mine.push((key, id));
                }
            }
        }
    }

    /// Per query, (id, score) best first.
    pub fn results(self) -> Vec<Vec<(String, f64)>> {
        let metric = self.metric;
        self.best
            .into_iter()
            .map(|h| {
                h.into_sorted_vec()
                    .into_iter()
                    .map(|(key, id)| (id, if metric == Metric::Euclidean { key.0 } else { -key.0 }))
                    .collect()
            })
            .collect()
    }
}

/// What a pass over the source collects: query candidates, or top-k lists.
pub enum Collecting {
    Choose(Chooser),
    Rank(TopK),
}

/// One partition's parity pass over the vector table.
pub struct ParitySink {
    writer: Option<LineWriter>,
    local: Collecting,
}

/// Sinks that run a parity pass (what `make` opens) over the vector table;
/// every partition's collection lands in `result`.
pub fn parity_sinks(
    mappings: VectorMappings,
    make: Arc<dyn Fn() -> Collecting + Send + Sync>,
    result: Arc<Mutex<Vec<Collecting>>>,
) -> Collectors<ParitySink> {
    Collectors::new(result, move |table, _| {
        let writer = mappings
            .get(table)
            .map(|m| LineWriter::new(table, m).map(LineWriter::for_comparison))
            .transpose()?;
        Ok(ParitySink { writer, local: make() })
    })
}

impl Collector for ParitySink {
    type Out = Vec<Collecting>;

    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let Some(w) = &self.writer else { return Ok(()) };
        let local = &mut self.local;
        crate::sink::vectorize::ndjson::each_vector(w, batch, &mut |v| match local {
            Collecting::Choose(c) => c.offer(&v),
            Collecting::Rank(t) => t.offer(&v),
        })
    }

    fn merge_into(self, out: &mut Vec<Collecting>) -> u64 {
        out.push(self.local);
        0
    }
}

/// Compares one query's exact top-k with Vectorize's answer.
pub fn compare_query(
    id: &str,
    exact: &[(String, f64)],
    got: &[(String, f64)],
    k: usize,
    in_d1: &dyn Fn(&str) -> bool,
) -> QueryResult {
    let exact_rank: HashMap<&str, (usize, f64)> =
        exact.iter().enumerate().map(|(i, (id, s))| (id.as_str(), (i, *s))).collect();
    let mut common = 0usize;
    let mut same_rank = 0usize;
    let mut max_diff = 0.0f64;
    for (i, (gid, score)) in got.iter().take(k).enumerate() {
        if let Some((r, s)) = exact_rank.get(gid.as_str()) {
            common += 1;
            same_rank += usize::from(*r == i);
            max_diff = max_diff.max((s - score).abs());
        }
    }
    let denom = k.min(exact.len()).max(1);
    QueryResult {
        id: id.to_string(),
        recall: common as f64 / denom as f64,
        rank_agreement: if common == 0 { 0.0 } else { same_rank as f64 / common as f64 },
        max_score_diff: max_diff,
        missing_in_d1: got.iter().filter(|(g, _)| !in_d1(g)).map(|(g, _)| g.clone()).collect(),
    }
}

/// The parity summary over all queries.
pub fn summarize(k: usize, threshold: f64, queries: Vec<QueryResult>) -> QueryParity {
    let n = queries.len().max(1) as f64;
    let mean = queries.iter().map(|q| q.recall).sum::<f64>() / n;
    let min = queries.iter().map(|q| q.recall).fold(1.0, f64::min);
    let no_orphans = queries.iter().all(|q| q.missing_in_d1.is_empty());
    QueryParity {
        k,
        threshold,
        mean_recall: mean,
        min_recall: min,
        passed: mean >= threshold && no_orphans,
        queries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, values: &[f32]) -> Vector {
        Vector { id: id.into(), values: values.to_vec(), namespace: None, metadata: serde_json::Value::Null }
    }

    #[test]
    fn exact_top_k_and_the_comparison() {
        let q = Arc::new(vec![("q".to_string(), vec![1.0f32, 0.0])]);
        let mut t = TopK::new(Metric::Cosine, 2, q.clone());
        for (id, x) in [("a", [1.0, 0.1]), ("b", [0.0, 1.0]), ("c", [1.0, 0.0]), ("d", [1.0, 0.5])] {
            t.offer(&v(id, &x));
        }
        let r = t.results();
        assert_eq!(r[0].iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["c", "a"]);
        assert!((r[0][0].1 - 1.0).abs() < 1e-12);
        let got = vec![("c".to_string(), 1.0), ("d".to_string(), 0.89)];
        let res = compare_query("q", &r[0], &got, 2, &|id| id != "d");
        assert_eq!((res.recall, res.rank_agreement), (0.5, 1.0));
        assert_eq!(res.missing_in_d1, ["d"]);
        let e = TopK::new(Metric::Euclidean, 1, q);
        let mut e = e;
        e.offer(&v("far", &[5.0, 5.0]));
        e.offer(&v("near", &[1.0, 0.5]));
        assert_eq!(e.results()[0][0].0, "near");
        assert!(!summarize(2, 0.95, vec![res]).passed);
    }

    #[test]
    fn the_choice_of_queries_does_not_depend_on_order() {
        let vs: Vec<Vector> = (0..50).map(|i| v(&format!("id{i}"), &[i as f32])).collect();
        let mut a = Chooser::new(5);
        vs.iter().for_each(|x| a.offer(x));
        let mut b = Chooser::new(5);
        let mut c = Chooser::new(5);
        vs.iter().rev().take(25).for_each(|x| b.offer(x));
        vs.iter().take(25).for_each(|x| c.offer(x));
        b.merge(c);
        assert_eq!(a.chosen(), b.chosen());
    }
}
