//! Bucketed comparison of two sides of a table. Rows are spread over
//! buckets by a hash of their primary key (of the row digest itself when
//! there is no key); each side sums its row digests per bucket, and only
//! buckets whose sums differ are read again row by row. The cost of finding
//! differences therefore follows the number of differing buckets, and
//! memory holds only the rows of those buckets.

use std::collections::BTreeSet;

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
