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
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::error::{Error, Result};

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

/// A sink that sums a table's rows into shared per-bucket digests.
pub struct BucketSinks {
    pub buckets: usize,
    pub result: Arc<Mutex<HashMap<String, Buckets>>>,
}

/// A sink that remembers the rows of the wanted buckets.
pub struct CollectSinks {
    pub buckets: usize,
    pub wanted: Arc<HashMap<String, BTreeSet<usize>>>,
    pub result: Arc<Mutex<HashMap<String, RowMap>>>,
}

struct BucketSink {
    table: Arc<TableSpec>,
    key: Vec<usize>,
    local: Buckets,
    result: Arc<Mutex<HashMap<String, Buckets>>>,
}

struct CollectSink {
    table: Arc<TableSpec>,
    key: Vec<usize>,
    buckets: usize,
    wanted: BTreeSet<usize>,
    seen: u64,
    local: RowMap,
    result: Arc<Mutex<HashMap<String, RowMap>>>,
}

fn poisoned() -> Error {
    Error::Internal("a comparison worker panicked".into())
}

impl SinkFactory for BucketSinks {
    fn open(&self, table: &Arc<TableSpec>, _partition: usize) -> Result<Box<dyn BatchSink>> {
        Ok(Box::new(BucketSink {
            table: table.clone(),
            key: table.key_indices(),
            local: Buckets::new(self.buckets),
            result: self.result.clone(),
        }))
    }
}

impl BatchSink for BucketSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.local.add_batch(&batch.batch, &self.key)
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let rows = self.local.total().rows;
        let mut all = self.result.lock().map_err(|_| poisoned())?;
        all.entry(self.table.qualified())
            .or_insert_with(|| Buckets::new(self.local.len()))
            .merge(&self.local);
        Ok(SinkReport { rows, ..SinkReport::default() })
    }
}

impl SinkFactory for CollectSinks {
    fn open(&self, table: &Arc<TableSpec>, _partition: usize) -> Result<Box<dyn BatchSink>> {
        Ok(Box::new(CollectSink {
            table: table.clone(),
            key: table.key_indices(),
            buckets: self.buckets,
            wanted: self.wanted.get(&table.qualified()).cloned().unwrap_or_default(),
            seen: 0,
            local: RowMap::new(),
            result: self.result.clone(),
        }))
    }
}

impl BatchSink for CollectSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let partition = batch.partition;
        let base = self.seen;
        collect_rows(&batch.batch, &self.key, self.buckets, &self.wanted, &mut self.local, |row| {
            format!("partition {partition} row {}", base + row as u64)
        })?;
        self.seen += batch.batch.num_rows() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let mut all = self.result.lock().map_err(|_| poisoned())?;
        all.entry(self.table.qualified()).or_default().extend(self.local);
        Ok(SinkReport { rows: self.seen, ..SinkReport::default() })
    }
}
