//! Bucketed comparison of two sides of a table. Rows are spread over
//! buckets by a hash of their primary key (of the row digest itself when
//! there is no key); each side sums its row digests per bucket, and only
//! buckets whose sums differ are read again row by row. The cost of finding
//! differences therefore follows the number of differing buckets, and
//! memory holds only the rows of those buckets.
//!
//! When the differing buckets hold many rows (a sync behind by 1% of a
//! table's rows makes most of 4,096 buckets differ), a [`Refinement`]
//! splits each of them into finer parts first: one more pass sums digests
//! per part, at a few dozen bytes per part, so that only the rows of the
//! differing parts are kept with their values. A part of bucket `b` is a
//! bucket of `of * parts` buckets: the same hash modulo a multiple of
//! `of`, so its bucket in the first pass is `part % of`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use super::{key_bytes, row_digests, DigestSum, RowDigest};
use crate::error::Result;

pub const DEFAULT_BUCKETS: usize = 4096;

/// Per-bucket digest sums of one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    sums: Vec<DigestSum>,
}

/// The bucket a key (canonical key bytes) falls into.
pub fn bucket_of(key: &[u8], buckets: usize) -> usize {
    let h = blake3::hash(key);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) % buckets as u64) as usize
}

/// The row's identity for comparison: key bytes, or the digest when keyless.
pub fn identity(batch: &RecordBatch, key: &[usize], row: usize, digest: &RowDigest) -> Result<Vec<u8>> {
    if key.is_empty() {
        Ok(digest.to_vec())
    } else {
        key_bytes(batch, key, row)
    }
}

impl Buckets {
    pub fn new(n: usize) -> Self {
        Buckets { sums: vec![DigestSum::default(); n.max(1)] }
    }

    pub fn len(&self) -> usize {
        self.sums.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    pub fn add_batch(&mut self, batch: &RecordBatch, key: &[usize]) -> Result<()> {
        let n = self.sums.len();
        for (row, d) in row_digests(batch)?.iter().enumerate() {
            let id = identity(batch, key, row, d)?;
            self.sums[bucket_of(&id, n)].add(d);
        }
        Ok(())
    }

    /// Adds one row whose identity and digest the caller has worked out.
    pub fn add_row(&mut self, identity: &[u8], digest: &RowDigest) {
        let n = self.sums.len();
        self.sums[bucket_of(identity, n)].add(digest);
    }

    /// Rows summed into bucket `i`.
    pub fn rows(&self, i: usize) -> u64 {
        self.sums.get(i).map_or(0, |s| s.rows)
    }

    pub fn merge(&mut self, other: &Buckets) {
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            a.merge(b);
        }
    }

    pub fn total(&self) -> DigestSum {
        let mut t = DigestSum::default();
        for s in &self.sums {
            t.merge(s);
        }
        t
    }

    /// Buckets whose sums or counts differ.
    pub fn differing(&self, other: &Buckets) -> BTreeSet<usize> {
        (0..self.sums.len()).filter(|&i| self.sums[i] != other.sums[i]).collect()
    }
}

/// Rows in differing buckets past which they are split finer before
/// their rows are kept ([`refinement`]): each row kept costs up to a few
/// KiB (its fields' digests and shown values), a part's sum 40 bytes.
pub const REFINE_ROWS: u64 = 10_000;
/// Parts at most, over all the differing buckets of one table: their sums
/// stay within some 64 MiB per side whatever the table's size.
pub const MAX_PARTS: usize = 1 << 20;

/// A second, finer pass over some differing buckets of `of`: each is
/// split into parts, buckets of `n` (a multiple of `of`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refinement {
    pub of: usize,
    pub n: usize,
    pub within: Arc<BTreeSet<usize>>,
}

impl Refinement {
    /// The part of `identity` when its bucket (of `of`) is split, else None.
    pub fn part_of(&self, identity: &[u8]) -> Option<usize> {
        let part = bucket_of(identity, self.n);
        self.within.contains(&(part % self.of)).then_some(part)
    }

    /// What the split did, for a report's notes: `rows` in the split
    /// buckets, `differ` of the parts differing.
    pub fn describe(&self, rows: u64, differ: usize) -> String {
        format!(
            "{rows} rows in the {} differing key buckets: each was split into {} parts, \
             {differ} of which differ; only their rows were compared",
            self.within.len(),
            self.n / self.of
        )
    }
}

/// Rows in `buckets`, the larger count of the sides for each (what the
/// rows of those buckets would cost to keep).
pub fn rows_in(buckets: &BTreeSet<usize>, sides: &[&Buckets]) -> u64 {
    buckets.iter().map(|&b| sides.iter().map(|s| s.rows(b)).max().unwrap_or(0)).sum()
}

/// The refinement for `differing` buckets of `of` holding `rows` rows:
/// none when few enough rows to keep them all; else parts of about a
/// quarter of a row each (so a differing row's part seldom holds another
/// row), at most [`MAX_PARTS`] in all.
pub fn refinement(rows: u64, differing: &BTreeSet<usize>, of: usize) -> Option<Refinement> {
    if rows <= REFINE_ROWS || differing.is_empty() {
        return None;
    }
    let per_bucket = rows.div_ceil(differing.len() as u64).max(1);
    let cap = (MAX_PARTS / differing.len()).max(2);
    // A power of two at most `cap`, at least 2 (a split that splits).
    let parts =
        (per_bucket.saturating_mul(4) as usize).next_power_of_two().min(prev_power_of_two(cap)).max(2);
    Some(Refinement { of, n: of.checked_mul(parts)?, within: Arc::new(differing.clone()) })
}

fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// Per-part digest sums of one side: only the parts that hold rows.
pub type Parts = BTreeMap<usize, DigestSum>;

/// Parts whose sums or counts differ between two sides.
pub fn differing_parts(a: &Parts, b: &Parts) -> BTreeSet<usize> {
    a.keys().chain(b.keys()).filter(|k| a.get(k) != b.get(k)).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_lies_in_its_first_pass_bucket() {
        let within: BTreeSet<usize> = (0..4096).step_by(3).collect();
        let r = refinement(1_000_000, &within, 4096).expect("many rows");
        assert_eq!(r.n % 4096, 0);
        for i in 0u32..5_000 {
            let id = i.to_le_bytes();
            let first = bucket_of(&id, 4096);
            match r.part_of(&id) {
                Some(p) => assert_eq!((p % 4096, within.contains(&first)), (first, true)),
                None => assert!(!within.contains(&first), "id {i} in a split bucket got no part"),
            }
        }
    }

    #[test]
    fn parts_follow_the_rows_and_stay_capped() {
        let some: BTreeSet<usize> = (0..100).collect();
        assert_eq!(refinement(REFINE_ROWS, &some, 4096), None, "few rows: kept as they are");
        // 200 rows a bucket: parts of a quarter row.
        let r = refinement(20_000, &some, 4096).expect("refined");
        assert_eq!(r.n / 4096, 1024);
        // Every bucket differs in a huge table: parts capped.
        let all: BTreeSet<usize> = (0..4096).collect();
        let r = refinement(u64::MAX / 2, &all, 4096).expect("refined");
        assert_eq!(r.n / 4096 * all.len(), MAX_PARTS);
        // More differing buckets than MAX_PARTS allows per bucket: still a split.
        let wide: BTreeSet<usize> = (0..(MAX_PARTS * 2)).collect();
        assert_eq!(refinement(u64::MAX / 2, &wide, MAX_PARTS * 2).expect("refined").n / (MAX_PARTS * 2), 2);
    }

    #[test]
    fn differing_parts_include_parts_one_side_lacks() {
        let mut one = DigestSum::default();
        one.add(&[1; 32]);
        let a: Parts = [(1, one), (2, one)].into();
        let b: Parts = [(2, one), (3, one)].into();
        assert_eq!(differing_parts(&a, &b), BTreeSet::from([1, 3]));
    }
}
