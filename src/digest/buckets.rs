//! Bucketed comparison of two sides of a table. Rows are spread over
//! buckets by a hash of their primary key (of the row digest itself when
//! there is no key); each side sums its row digests per bucket, and only
//! buckets whose sums differ are read again row by row. The cost of finding
//! differences therefore follows the number of differing buckets, and
//! memory holds only the rows of those buckets.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

use super::{key_bytes, key_display, row_digests, DigestSum, RowDigest};
use crate::batch::collect::{Collector, Collectors};
use crate::batch::TableBatch;
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

/// One row of a differing bucket, remembered for the drill-down.
#[derive(Clone, Debug)]
pub struct SeenRow {
    pub digest: RowDigest,
    pub key: String,
    /// Where the row lives on its side (e.g. `file.parquet row 17`).
    pub location: String,
}

/// The rows of the selected buckets, by identity.
pub type RowMap = HashMap<Vec<u8>, SeenRow>;

/// Adds the rows of `batch` that fall into `wanted` buckets to `map`;
/// `location(row)` says where each row lives.
pub fn collect_rows(
    batch: &RecordBatch,
    key: &[usize],
    buckets: usize,
    wanted: &BTreeSet<usize>,
    map: &mut RowMap,
    location: impl Fn(usize) -> String,
) -> Result<()> {
    for (row, d) in row_digests(batch)?.into_iter().enumerate() {
        let id = identity(batch, key, row, &d)?;
        if wanted.contains(&bucket_of(&id, buckets)) {
            let key = if key.is_empty() {
                format!("row digest {}", hex::encode(&d[..8]))
            } else {
                key_display(batch, key, row)
            };
            map.insert(id, SeenRow { digest: d, key, location: location(row) });
        }
    }
    Ok(())
}

/// Sums a partition's rows into per-bucket digests, merged by table.
pub struct BucketSink {
    table: String,
    key: Vec<usize>,
    local: Buckets,
}

/// Sinks that sum every table's rows into `result`, by qualified name.
pub fn bucket_sinks(buckets: usize, result: Arc<Mutex<HashMap<String, Buckets>>>) -> Collectors<BucketSink> {
    Collectors::new(result, move |table, _| {
        Ok(BucketSink { table: table.qualified(), key: table.key_indices(), local: Buckets::new(buckets) })
    })
}

impl Collector for BucketSink {
    type Out = HashMap<String, Buckets>;

    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.local.add_batch(&batch.batch, &self.key)
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        let rows = self.local.total().rows;
        out.entry(self.table).or_insert_with(|| Buckets::new(self.local.len())).merge(&self.local);
        rows
    }
}

/// Remembers a partition's rows that fall into the wanted buckets.
pub struct CollectSink {
    table: String,
    key: Vec<usize>,
    buckets: usize,
    wanted: BTreeSet<usize>,
    seen: u64,
    local: RowMap,
}

/// Sinks that keep the rows of the `wanted` buckets of each table.
pub fn collect_sinks(
    buckets: usize,
    wanted: Arc<HashMap<String, BTreeSet<usize>>>,
    result: Arc<Mutex<HashMap<String, RowMap>>>,
) -> Collectors<CollectSink> {
    Collectors::new(result, move |table, _| {
        Ok(CollectSink {
            table: table.qualified(),
            key: table.key_indices(),
            buckets,
            wanted: wanted.get(&table.qualified()).cloned().unwrap_or_default(),
            seen: 0,
            local: RowMap::new(),
        })
    })
}

impl Collector for CollectSink {
    type Out = HashMap<String, RowMap>;

    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let partition = batch.partition;
        let base = self.seen;
        collect_rows(&batch.batch, &self.key, self.buckets, &self.wanted, &mut self.local, |row| {
            format!("partition {partition} row {}", base + row as u64)
        })?;
        self.seen += batch.batch.num_rows() as u64;
        Ok(())
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        out.entry(self.table).or_default().extend(self.local);
        self.seen
    }
}
