//! Which vectors `verify` fetches to compare their values, and what that
//! proves. Ids are cheap and exact: `list` gives 1,000 per request, so
//! every missing and extra id is found. Values are dear: `get_by_ids`
//! answers 20 per request, and Cloudflare allows 1,200 requests per five
//! minutes, so fetching every vector of a million-vector index costs
//! 50,000 requests (hours of budget). The values are therefore fetched
//! where they can differ, and elsewhere in a uniform sample whose size is a
//! stated confidence:
//!
//! - **written since the last load**: every id `pgflare_vector_digests`
//!   (in D1) records, i.e. every vector sync sent, deleted or looked up
//!   since `load` last wrote the index (load forgets the records). These
//!   are the vectors that changed after the load confirmed its writes, so
//!   all of them are compared, whatever their number;
//! - **a uniform sample** of the others (written by the load, which waited
//!   until Vectorize applied them): `n` ids chosen by a hash of the id and
//!   the source snapshot, so each run samples other ids. With no difference
//!   among `n` sampled, fewer than `1 - 0.05^(1/n)` of the others differ at
//!   95% confidence (the binomial bound; drawn without replacement from a
//!   finite population the true bound is a little lower, so the statement
//!   errs on the safe side). 300 gives "fewer than 1%", in 15 requests.
//!
//! `--vector-values all` fetches every vector, as before this budget.
//!
//! Sources for the limits: Cloudflare's API limits page (1,200 requests
//! per five minutes per user, developers.cloudflare.com/fundamentals/api/
//! reference/limits/); Vectorize's REST reference for `list` (`count` up
//! to 1,000); 20 ids per `get_by_ids` is observed, not documented (see
//! ../shared/reference/cloudflare.md and `cloudflare::limits`).

use std::collections::{BinaryHeap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::RowDigest;
use crate::error::{Error, Result};
use crate::state::store::DIGEST_TABLE;

/// Sampled vectors by default: 95% confidence that fewer than 1% differ.
pub const DEFAULT_SAMPLE: usize = 300;

/// The confidence of the sampled part's statement.
pub const CONFIDENCE: f64 = 0.95;

/// `--vector-values`: every vector, or the recorded ones and a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueMode {
    All,
    Sample(usize),
}

impl std::str::FromStr for ValueMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "all" => Ok(ValueMode::All),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(ValueMode::Sample(n)),
                _ => Err(format!(
                    "'{s}' is neither `all` nor a sample size (a whole number of vectors, at least 1; \
                     {DEFAULT_SAMPLE} states 'fewer than 1% differ' at 95% confidence)"
                )),
            },
        }
    }
}

/// What the value comparison covered, for the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueCheck {
    /// Ids listed and compared with the source's (every one).
    pub ids_compared: u64,
    /// Vectors whose values were fetched and compared.
    pub values_compared: u64,
    /// Of those, the ones sync wrote since the last load (all compared).
    pub written_since_load: u64,
    /// Of those, the others whose rows changed since the last verify (all
    /// compared).
    #[serde(default)]
    pub changed_since_verify: u64,
    /// Of those, the uniform sample of the others.
    pub sampled: u64,
    /// How many others the sample was drawn from (0 = every vector compared).
    pub not_compared: u64,
    /// Sampled vectors that differed.
    pub sampled_differing: u64,
    /// At 95% confidence, fewer than this fraction of the vectors not
    /// compared differ (when the sample found none); `None` when every
    /// vector was compared or the sample found differences.
    pub differing_below: Option<f64>,
    /// Vectorize requests the comparison sent (list, get_by_ids, info).
    pub requests: u64,
}

impl ValueCheck {
    /// The report's sentence about it.
    pub fn sentence(&self) -> String {
        let head = format!(
            "ids: all {} compared; values: {} compared ({} written since the last load, {} changed since \
             the last verify, {} sampled), {} requests",
            self.ids_compared,
            self.values_compared,
            self.written_since_load,
            self.changed_since_verify,
            self.sampled,
            self.requests
        );
        if self.not_compared == 0 {
            return format!("{head}: every vector's values compared");
        }
        match self.differing_below {
            Some(p) => format!(
                "{head}: no difference in the {} sampled of {} vectors written by the load, so fewer than \
                 {} of them differ ({:.0}% confidence); `--vector-values all` compares every one",
                self.sampled,
                self.sampled + self.not_compared,
                percent(p),
                CONFIDENCE * 100.0
            ),
            None => format!(
                "{head}: {} of the {} sampled differ, so about {} of the {} vectors written by the load may \
                 differ: run with `--vector-values all` to find every one",
                self.sampled_differing,
                self.sampled,
                percent(self.sampled_differing as f64 / self.sampled.max(1) as f64),
                self.sampled + self.not_compared
            ),
        }
    }
}

fn percent(p: f64) -> String {
    match p * 100.0 {
        x if x >= 1.0 => format!("{x:.1}%"),
        x if x >= 0.01 => format!("{x:.2}%"),
        x => format!("{x:.4}%"),
    }
}

/// The largest fraction of differing vectors that a sample of `n` without
/// a difference leaves plausible at [`CONFIDENCE`]: `1 - (1 - c)^(1/n)`.
pub fn differing_below(n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    1.0 - (1.0 - CONFIDENCE).powf(1.0 / n as f64)
}

/// What the source pass needs to pick the vectors whose values are
/// fetched: the ids recorded as written since the last load, `--vector-values`
/// and the seed of the sample (the source snapshot).
#[derive(Debug)]
pub struct ValuePlan {
    pub recorded: HashSet<String>,
    /// Rows changed since the last verify ([`super::since`]): all compared too.
    pub changed: HashSet<String>,
    pub mode: ValueMode,
    pub seed: String,
}

/// The uniform sample, drawn while the source streams past: the `k` ids
/// with the smallest hash of the seed and the id (a uniform draw without
/// replacement, another one for every seed), each with its digest, and
/// how many ids it was drawn from. Memory holds `k` ids whatever the
/// table's size (all of them with `--vector-values all`).
#[derive(Debug)]
pub struct Sampler {
    k: usize,
    seed: String,
    kept: BinaryHeap<Ranked>,
    /// Ids offered, drawn or not.
    pub population: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    rank: [u8; 32],
    id: String,
    digest: RowDigest,
}

impl Sampler {
    pub fn new(mode: ValueMode, seed: &str) -> Self {
        let k = match mode {
            ValueMode::All => usize::MAX,
            ValueMode::Sample(n) => n,
        };
        Sampler { k, seed: seed.to_string(), kept: BinaryHeap::new(), population: 0 }
    }

    /// Offers one id (and the digest of its vector) to the sample.
    pub fn add(&mut self, id: &str, digest: RowDigest) {
        self.population += 1;
        let mut h = blake3::Hasher::new();
        h.update(self.seed.as_bytes()).update(&[0]).update(id.as_bytes());
        self.offer(Ranked { rank: *h.finalize().as_bytes(), id: id.to_string(), digest });
    }

    fn offer(&mut self, r: Ranked) {
        if self.kept.len() < self.k {
            self.kept.push(r);
        } else if self.kept.peek().is_some_and(|top| r.rank < top.rank) {
            self.kept.pop();
            self.kept.push(r);
        }
    }

    /// Another partition's sample, drawn with the same seed and `k`.
    pub fn merge(&mut self, other: Sampler) {
        self.population += other.population;
        other.kept.into_iter().for_each(|r| self.offer(r));
    }

    /// The sampled ids with their digests, and how many ids were not drawn.
    pub fn drawn(self) -> (Vec<(String, RowDigest)>, u64) {
        let not = self.population - self.kept.len() as u64;
        (self.kept.into_iter().map(|r| (r.id, r.digest)).collect(), not)
    }
}

/// The ids `pgflare_vector_digests` records in the D1 file at `path` (none
/// when the table is not there: no sync ran since the database was made).
pub fn recorded_ids(path: &Path) -> Result<HashSet<String>> {
    let ctx = format!("{}: reading the ids sync recorded in {DIGEST_TABLE}", path.display());
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(&ctx))?;
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [DIGEST_TABLE],
            |r| r.get(0),
        )
        .map_err(Error::sqlite(&ctx))?;
    if !exists {
        return Ok(HashSet::new());
    }
    let mut stmt = conn.prepare(&format!("SELECT id FROM {DIGEST_TABLE}")).map_err(Error::sqlite(&ctx))?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(Error::sqlite(&ctx))?;
    ids.collect::<std::result::Result<HashSet<_>, _>>().map_err(Error::sqlite(&ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn three_hundred_clean_samples_say_fewer_than_one_percent() {
        let p = differing_below(300);
        assert!(p > 0.0099 && p < 0.0100, "{p}");
        // The rule of three: about 3/n.
        assert!((differing_below(3000) * 3000.0 - 3.0).abs() < 0.01);
        assert_eq!(differing_below(0), 1.0);
        assert_eq!("all".parse::<ValueMode>(), Ok(ValueMode::All));
        assert_eq!("300".parse::<ValueMode>(), Ok(ValueMode::Sample(300)));
        for bad in ["0", "-3", "some", "1.5"] {
            let e = bad.parse::<ValueMode>().expect_err(bad);
            assert!(e.contains("neither `all` nor a sample size"), "{e}");
        }
    }

    #[test]
    fn the_sentence_states_the_bound_or_the_estimate() {
        let clean = ValueCheck {
            ids_compared: 20_000,
            values_compared: 350,
            written_since_load: 50,
            changed_since_verify: 0,
            sampled: 300,
            not_compared: 19_650,
            sampled_differing: 0,
            differing_below: Some(differing_below(300)),
            requests: 40,
        };
        let s = clean.sentence();
        assert!(s.contains("no difference in the 300 sampled of 19950"), "{s}");
        assert!(s.contains("fewer than 0.99%") && s.contains("95% confidence"), "{s}");
        let dirty = ValueCheck { sampled_differing: 3, differing_below: None, ..clean };
        let s = dirty.sentence();
        assert!(s.contains("3 of the 300 sampled differ") && s.contains("about 1.0%"), "{s}");
    }

    fn draw(ids: &[String], mode: ValueMode, seed: &str, parts: usize) -> (Vec<String>, u64) {
        let mut samplers: Vec<Sampler> = (0..parts.max(1)).map(|_| Sampler::new(mode, seed)).collect();
        for (i, id) in ids.iter().enumerate() {
            samplers[i % parts.max(1)].add(id, [0; 32]);
        }
        let mut all = Sampler::new(mode, seed);
        samplers.into_iter().for_each(|s| all.merge(s));
        let (drawn, not) = all.drawn();
        let mut ids: Vec<String> = drawn.into_iter().map(|(id, _)| id).collect();
        ids.sort();
        (ids, not)
    }

    #[test]
    fn every_id_is_sampled_about_equally_often() {
        let ids: Vec<String> = (0..200).map(|i| format!("doc-{i}")).collect();
        let mut hits = vec![0u32; ids.len()];
        let runs = 2000;
        for seed in 0..runs {
            let (sampled, _) = draw(&ids, ValueMode::Sample(20), &format!("snap-{seed}"), 3);
            for id in sampled {
                hits[id[4..].parse::<usize>().expect("index")] += 1;
            }
        }
        // Each id is drawn with probability 20/200 per run: 200 of 2000
        // expected, standard deviation about 13.4; 6 of them is far out.
        for (i, h) in hits.iter().enumerate() {
            assert!((120..=280).contains(h), "doc-{i} sampled {h} times of {runs}");
        }
    }

    proptest! {
        // The bound is what its formula says: a share p of differing
        // vectors leaves a clean sample of n with probability 5%.
        #[test]
        fn the_bound_leaves_a_clean_sample_five_percent_of_the_time(n in 1u64..100_000) {
            let p = differing_below(n);
            let clean = (1.0 - p).powf(n as f64);
            prop_assert!((clean - 0.05).abs() < 1e-9, "n {n}: p {p}, clean {clean}");
            prop_assert!(differing_below(n + 1) < p);
        }

        // The sample is the same however the source is split into
        // partitions, holds min(k, n) distinct ids, and counts the rest.
        #[test]
        fn the_sample_does_not_depend_on_the_partitions(
            n_ids in 0usize..400,
            parts in 1usize..9,
            k in 1usize..500,
            seed in "[a-z0-9]{0,8}",
        ) {
            let ids: Vec<String> = (0..n_ids).map(|i| format!("v{i}")).collect();
            let (one, not_one) = draw(&ids, ValueMode::Sample(k), &seed, 1);
            let (split, not_split) = draw(&ids, ValueMode::Sample(k), &seed, parts);
            prop_assert_eq!(&one, &split);
            prop_assert_eq!(not_one, not_split);
            prop_assert_eq!(one.len(), k.min(n_ids));
            let distinct: HashSet<&String> = one.iter().collect();
            prop_assert_eq!(distinct.len(), one.len());
            prop_assert_eq!(one.len() as u64 + not_one, n_ids as u64);
            let (all, none) = draw(&ids, ValueMode::All, &seed, parts);
            prop_assert_eq!((all.len(), none), (n_ids, 0));
        }
    }
}
