//! The drill-down that keeps values. [`super::pass`]'s `Collect` pass keeps
//! the rows of differing buckets as digests and shown text, enough for a
//! report; a job that writes the differences somewhere (reconcile writes
//! Cloudflare's rows back into Postgres) needs the values themselves. A
//! [`Kept`] holds the rows of chosen buckets as Arrow, each found by its
//! identity (the key bytes of the bucket engine), with its digest in the
//! compared form. Memory follows the rows of the differing buckets, not
//! the table.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;

use super::buckets::{bucket_of, identity};
use super::pass::D1Shape;
use super::{field_digest, key_display, row_digests, RowDigest};
use crate::batch::collect::{Collector, Collectors};
use crate::batch::{TableBatch, TableSpec};
use crate::error::{Error, Result};

/// One kept row: where it is among the kept batches, its digest and field
/// digests in the compared form, and its key as a person reads it.
#[derive(Clone, Debug)]
pub struct KeptRow {
    pub digest: RowDigest,
    pub fields: Vec<RowDigest>,
    pub key: String,
    batch: usize,
    row: usize,
}

/// The rows of one side's chosen buckets, by identity: their digests, and
/// what the caller chose to keep of their values (the key columns, say:
/// memory per row stays small however wide the rows are).
#[derive(Default)]
pub struct Kept {
    batches: Vec<RecordBatch>,
    pub rows: HashMap<Vec<u8>, KeptRow>,
}

impl Kept {
    /// Keeps the rows of `batch` whose identity falls into `wanted` (of
    /// `n` buckets). `compared` is the rows in the form both sides are
    /// compared in (digests and identity are taken from it); `batch`
    /// (the same rows, any columns) is what is kept of their values.
    pub fn absorb(
        &mut self,
        batch: &RecordBatch,
        compared: &RecordBatch,
        key: &[usize],
        n: usize,
        wanted: &BTreeSet<usize>,
    ) -> Result<()> {
        if batch.num_rows() != compared.num_rows() {
            return Err(Error::Internal("a kept batch and its compared form differ in rows".into()));
        }
        let digests = row_digests(compared)?;
        let mut mask = Vec::with_capacity(digests.len());
        let mut picked = Vec::new();
        for (row, d) in digests.iter().enumerate() {
            let id = identity(compared, key, row, d)?;
            let keep = wanted.contains(&bucket_of(&id, n));
            mask.push(keep);
            if keep {
                let fields =
                    compared.columns().iter().map(|c| field_digest(c, row)).collect::<Result<_>>()?;
                picked.push((id, *d, fields, key_display(compared, key, row)));
            }
        }
        if picked.is_empty() {
            return Ok(());
        }
        let at = self.batches.len();
        self.batches.push(filter_record_batch(batch, &BooleanArray::from(mask))?);
        for (row, (id, digest, fields, key)) in picked.into_iter().enumerate() {
            self.rows.insert(id, KeptRow { digest, fields, key, batch: at, row });
        }
        Ok(())
    }

    pub fn merge(&mut self, other: Kept) {
        let offset = self.batches.len();
        self.batches.extend(other.batches);
        self.rows.extend(other.rows.into_iter().map(|(id, mut r)| {
            r.batch += offset;
            (id, r)
        }));
    }

    /// The kept rows whose identity `pick` chooses, as batches (none for
    /// a batch with no chosen row).
    pub fn select(&self, pick: impl Fn(&[u8]) -> bool) -> Result<Vec<RecordBatch>> {
        let mut masks: Vec<Vec<bool>> = self.batches.iter().map(|b| vec![false; b.num_rows()]).collect();
        let mut any = vec![false; self.batches.len()];
        for (id, r) in &self.rows {
            if pick(id) {
                masks[r.batch][r.row] = true;
                any[r.batch] = true;
            }
        }
        let mut out = Vec::new();
        for ((b, mask), any) in self.batches.iter().zip(masks).zip(any) {
            if any {
                out.push(filter_record_batch(b, &BooleanArray::from(mask))?);
            }
        }
        Ok(out)
    }
}

/// Keeps, per source table, the rows of `wanted` buckets compared in the
/// D1 shape of `shapes`, their key columns kept.
pub struct KeepSink {
    shape: D1Shape,
    spec: Arc<TableSpec>,
    key: Vec<usize>,
    n: usize,
    wanted: Arc<BTreeSet<usize>>,
    local: Kept,
    seen: u64,
}

/// Sinks that keep the rows of the `wanted` buckets (of `n`) of the
/// tables of `shapes` (by qualified source name) into `out`.
pub fn keep_sinks(
    shapes: Arc<HashMap<String, D1Shape>>,
    n: usize,
    wanted: Arc<HashMap<String, Arc<BTreeSet<usize>>>>,
    out: Arc<std::sync::Mutex<HashMap<String, Kept>>>,
) -> Collectors<KeepSink> {
    Collectors::new(out, move |table, _| {
        let name = table.qualified();
        let shape =
            shapes.get(&name).cloned().ok_or_else(|| Error::Internal(format!("no D1 shape for {name}")))?;
        Ok(KeepSink {
            key: shape.table.spec.key_indices(),
            shape,
            spec: table.clone(),
            n,
            wanted: wanted.get(&name).cloned().unwrap_or_default(),
            local: Kept::default(),
            seen: 0,
        })
    })
}

impl Collector for KeepSink {
    type Out = HashMap<String, Kept>;

    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        self.seen += batch.batch.num_rows() as u64;
        let b = self.shape.project(&batch.batch, &self.spec)?;
        self.local.absorb(&b.project(&self.key)?, &b, &self.key, self.n, &self.wanted)
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        out.entry(self.shape.source.clone()).or_default().merge(self.local);
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(ids: &[i64], texts: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("t", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(texts.to_vec()))],
        )
        .expect("batch")
    }

    #[test]
    fn only_the_wanted_buckets_are_kept_and_selected_by_identity() {
        let n = 8;
        let b = batch(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]);
        let ids: Vec<Vec<u8>> =
            (0..10).map(|r| identity(&b, &[0], r, &row_digests(&b).expect("d")[r]).expect("id")).collect();
        let wanted: BTreeSet<usize> = [bucket_of(&ids[2], n), bucket_of(&ids[7], n)].into();
        let mut kept = Kept::default();
        kept.absorb(&b, &b, &[0], n, &wanted).expect("absorb");
        let mut other = Kept::default();
        other.absorb(&batch(&[11], &["k"]), &batch(&[11], &["k"]), &[0], n, &(0..n).collect()).expect("all");
        kept.merge(other);
        let expect: usize = ids.iter().filter(|id| wanted.contains(&bucket_of(id, n))).count() + 1;
        assert_eq!(kept.rows.len(), expect, "the rows of the wanted buckets, and the merged one");
        assert_eq!(kept.rows[&ids[2]].key, "id=3");
        let chosen =
            kept.select(|id| id == ids[7].as_slice() || kept.rows[id].key == "id=11").expect("select");
        let got: Vec<i64> = chosen
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().expect("ids").values().to_vec())
            .collect();
        assert_eq!(got, vec![8, 11], "one row from each kept batch, in order");
        assert!(kept.select(|_| false).expect("none").is_empty(), "no empty batches");
    }
}
