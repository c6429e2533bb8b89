//! Finding what differs between an archive of Cloudflare and the live
//! Postgres, with the bucket engine verify uses ([`crate::digest`]). Both
//! sides are compared in D1's form ([`crate::d1::read::target_form`]), so
//! what only D1's lossy rules changed (NaN stored as NULL, -0.0 as 0) is
//! not taken for a write. Pass 1 sums row digests per key bucket on both
//! sides (the archive's Parquet files; the source at one snapshot, live
//! rows only); pass 2 keeps, on both sides, the rows of the differing
//! buckets as Arrow ([`crate::digest::keep`]). Rows only the archive has
//! are inserts, rows whose digests differ updates (the archive's values),
//! rows only Postgres has deletes (their keys).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;

use crate::batch::collect::take;
use crate::batch::TableSpec;
use crate::config::mapping::D1Table;
use crate::d1::read::target_form;
use crate::digest::buckets::Buckets;
use crate::digest::keep::{keep_sinks, Kept};
use crate::digest::pass::{source_sinks, D1Shape, Pass, Side};
use crate::error::Result;
use crate::progress::Progress;
use crate::source::archive::file_batches;
use crate::source::archive::manifest::ManifestTable;
use crate::source::{read_all, Partition, ReadOptions, Source, TableJob};

/// Keys listed per kind of change; the rest are counted.
pub const LISTED: usize = 10;

/// One table to compare: the archive's view of it and the live key ranges.
pub struct Compared<'m> {
    pub table: &'m ManifestTable,
    /// The archive's columns (those Cloudflare holds), the source's names
    /// and types: what is read from Postgres too.
    pub spec: Arc<TableSpec>,
    /// Key ranges of the live table, live rows only.
    pub parts: Vec<Partition>,
    /// Qualified names of the tables its foreign keys reference.
    pub parents: Vec<String>,
    /// Which rows of the live table count (pgflare.toml's soft deletes,
    /// along foreign keys), as a condition on the table (by its SQL name).
    pub live: Option<String>,
    /// The table's own soft-delete column, and whether it is a boolean.
    pub soft: Option<(String, bool)>,
}

impl Compared<'_> {
    fn shape(&self) -> D1Shape {
        let d1 = D1Table {
            name: self.spec.name.clone(),
            spec: (*self.spec).clone(),
            source_columns: self.spec.columns.iter().map(|c| c.name.clone()).collect(),
            primary_key: self.spec.primary_key.clone(),
        };
        D1Shape::new(&self.spec, &d1)
    }
}

/// What must change in one Postgres table for it to hold the archive's rows.
#[derive(Default)]
pub struct Changes {
    pub table: String,
    /// The identities (key bytes) of the archive's rows to insert or
    /// update: [`super::apply`] reads them from the archive again as it
    /// writes, so memory holds keys and digests, not rows.
    pub upserts: Arc<HashSet<Vec<u8>>>,
    /// The keys (key columns) of the Postgres rows to delete.
    pub deletes: Vec<RecordBatch>,
    pub inserts: u64,
    pub updates: u64,
    pub deleted: u64,
    /// The first keys of each kind (sorted), as a person reads them.
    pub first: BTreeMap<&'static str, Vec<String>>,
    /// Per column, how many updated rows change it.
    pub columns: BTreeMap<String, u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.inserts + self.updates + self.deleted == 0
    }
}

/// Compares every table of `tables` between the archive in `dir` and the
/// source at `snapshot_id`.
pub async fn compare(
    src: &Source,
    snapshot_id: &str,
    dir: &Path,
    tables: &[Compared<'_>],
    read: ReadOptions,
    progress: &Progress,
) -> Result<Vec<Changes>> {
    let n = crate::digest::buckets::DEFAULT_BUCKETS;
    let shapes: Arc<HashMap<String, D1Shape>> =
        Arc::new(tables.iter().map(|t| (t.spec.qualified(), t.shape())).collect());
    let jobs = |label: &str, only: &dyn Fn(&str) -> bool| -> Vec<TableJob> {
        tables
            .iter()
            .filter(|t| only(&t.spec.qualified()))
            .map(|t| TableJob {
                table: t.spec.clone(),
                partitions: t.parts.clone(),
                progress: progress.rows(&format!("{label} {}", t.spec.name), Some(t.table.rows)),
            })
            .collect()
    };

    // Pass 1: bucket sums on both sides.
    let sums = Arc::new(Mutex::new(HashMap::new()));
    let sinks = Arc::new(source_sinks(shapes.clone(), n, Pass::Sum, sums.clone()));
    read_all(src, snapshot_id, jobs("postgres", &|_| true), sinks, read).await?;
    let sums: HashMap<String, Side> = take(&sums)?;
    let mut wanted: HashMap<String, Arc<BTreeSet<usize>>> = HashMap::new();
    for t in tables {
        let name = t.spec.qualified();
        let archived = archive_sums(dir, t, n)?;
        let empty = Buckets::new(n);
        let live = sums.get(&name).and_then(|s| s.buckets.as_ref()).unwrap_or(&empty);
        let diff = live.differing(&archived);
        if !diff.is_empty() {
            wanted.insert(name, Arc::new(diff));
        }
    }

    // Pass 2: the rows of the differing buckets, on both sides.
    let kept = Arc::new(Mutex::new(HashMap::new()));
    if !wanted.is_empty() {
        let sinks = Arc::new(keep_sinks(shapes, n, Arc::new(wanted.clone()), kept.clone()));
        read_all(src, snapshot_id, jobs("drill-down", &|name| wanted.contains_key(name)), sinks, read)
            .await?;
    }
    let mut live: HashMap<String, Kept> = take(&kept)?;
    let mut out = Vec::new();
    for t in tables {
        let name = t.spec.qualified();
        let changes = match wanted.get(&name) {
            Some(w) => {
                let archived = archive_rows(dir, t, n, w)?;
                classify(&name, &t.spec, &archived, &live.remove(&name).unwrap_or_default())?
            }
            None => Changes { table: name, ..Changes::default() },
        };
        out.push(changes);
    }
    Ok(out)
}

fn archive_sums(dir: &Path, t: &Compared, n: usize) -> Result<Buckets> {
    let mut b = Buckets::new(n);
    let key = t.spec.key_indices();
    for i in 0..t.table.files.len() {
        file_batches(dir, t.table, i, |batch| b.add_batch(&target_form(&batch)?, &key))?;
    }
    Ok(b)
}

fn archive_rows(dir: &Path, t: &Compared, n: usize, wanted: &BTreeSet<usize>) -> Result<Kept> {
    let mut kept = Kept::default();
    let key = t.spec.key_indices();
    for i in 0..t.table.files.len() {
        file_batches(dir, t.table, i, |batch| {
            let compared = target_form(&batch)?;
            kept.absorb(&compared.project(&key)?, &compared, &key, n, wanted)
        })?;
    }
    Ok(kept)
}

/// Sorts the kept rows of both sides into inserts, updates and deletes.
fn classify(name: &str, spec: &TableSpec, archived: &Kept, live: &Kept) -> Result<Changes> {
    let mut c = Changes { table: name.to_string(), ..Changes::default() };
    let mut first: BTreeMap<&'static str, BTreeSet<Shown>> = BTreeMap::new();
    let mut note = |kind: &'static str, key: &str| {
        let keys = first.entry(kind).or_default();
        keys.insert(Shown(key.to_string()));
        if keys.len() > LISTED {
            keys.pop_last();
        }
    };
    let mut upsert = HashSet::new();
    for (id, a) in &archived.rows {
        match live.rows.get(id) {
            None => {
                c.inserts += 1;
                note("insert", &a.key);
                upsert.insert(id.clone());
            }
            Some(s) if s.digest != a.digest => {
                c.updates += 1;
                note("update", &a.key);
                upsert.insert(id.clone());
                for (col, (x, y)) in spec.columns.iter().zip(a.fields.iter().zip(&s.fields)) {
                    if x != y {
                        *c.columns.entry(col.name.clone()).or_default() += 1;
                    }
                }
            }
            Some(_) => {}
        }
    }
    let mut delete = BTreeSet::new();
    for (id, s) in &live.rows {
        if !archived.rows.contains_key(id) {
            c.deleted += 1;
            note("delete", &s.key);
            delete.insert(id.clone());
        }
    }
    c.upserts = Arc::new(upsert);
    c.deletes = live.select(|id| delete.contains(id))?;
    c.first = first.into_iter().map(|(k, v)| (k, v.into_iter().map(|k| k.0).collect())).collect();
    Ok(c)
}

/// A key as shown (`id=11`), ordered as people read numbers: `id=2`
/// before `id=11` (runs of digits compare by value).
#[derive(PartialEq, Eq)]
struct Shown(String);

impl Ord for Shown {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        natural(&self.0, &other.0)
    }
}

impl PartialOrd for Shown {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    let runs = |s: &str| -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for ch in s.chars() {
            let digit = ch.is_ascii_digit();
            match out.last_mut() {
                Some((d, run)) if *d == digit => run.push(ch),
                _ => out.push((digit, ch.to_string())),
            }
        }
        out
    };
    let (x, y) = (runs(a), runs(b));
    for ((dx, rx), (dy, ry)) in x.iter().zip(&y) {
        let o = match (dx, dy) {
            // By value: fewer significant digits first, then the digits.
            (true, true) => {
                let (tx, ty) = (rx.trim_start_matches('0'), ry.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty)).then_with(|| rx.len().cmp(&ry.len()))
            }
            _ => rx.cmp(ry),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::natural;
    use proptest::prelude::*;

    #[test]
    fn keys_sort_as_numbers_read() {
        let mut keys = vec!["id=100", "id=11", "id=2", "id=011", "a=1, b=10", "a=1, b=9"];
        keys.sort_by(|a, b| natural(a, b));
        assert_eq!(keys, vec!["a=1, b=9", "a=1, b=10", "id=2", "id=11", "id=011", "id=100"]);
    }

    proptest! {
        #[test]
        fn numbers_sort_by_value_and_the_order_is_total(a in 0u64.., b in 0u64.., s in "[a-z=, ]{0,6}") {
            let (x, y) = (format!("{s}{a}"), format!("{s}{b}"));
            prop_assert_eq!(natural(&x, &y), a.cmp(&b));
            prop_assert_eq!(natural(&x, &y), natural(&y, &x).reverse());
            prop_assert_eq!(natural(&x, &x), std::cmp::Ordering::Equal);
        }
    }
}
