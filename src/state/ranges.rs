//! Key buckets that D1 can read one by one. The hard-delete sweep compares
//! per-bucket digests of the source's keys with those of D1's; to make its
//! cost follow the number of *changed* buckets, D1's side is not read
//! every run: it is the source's sums saved at the end of the last run
//! (after which D1's keys equal the source's), kept in
//! `pgflare_sync_state`. A bucket is a key range D1 selects with its
//! primary-key index: the first three characters of a uuid (4096
//! buckets), or an integer key shifted right. Only differing buckets are
//! read back from D1. Other keys (text, composite) use the full sweep.
//!
//! The read of differing buckets is one statement whose text does not grow
//! with the number of buckets: their ranges come as one JSON parameter that
//! `json_each` turns into rows joined with the table, so SQLite still reads
//! each range from the primary-key index while the statement stays within
//! D1's expression depth, statement length and program size. (Joining the
//! ranges' conditions with `OR` built an expression as deep as the list
//! was long, which D1 refuses past 100.) Reads are grouped so that each
//! answer holds about [`KEYS_PER_READ`] keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeBinaryBuilder, Int16Array, Int32Array, Int64Array};
use arrow::record_batch::RecordBatch;
use rusqlite::types::Value as SqlValue;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::batch::{quote_ident, TableSpec};
use crate::digest::DigestSum;
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::sink::d1::exact::{decode, exact_column};
use crate::sink::d1::value::{d1_value, D1Value};
use crate::typemap::Kind;

/// How a key maps to its bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scheme {
    /// The first `chars` characters of the key's text (uuids).
    Prefix { chars: usize },
    /// The integer key shifted right by `shift` bits.
    Shift { shift: u32 },
}

/// Per-bucket key digests (label -> sum, row count included).
pub type Sums = BTreeMap<String, DigestSum>;

impl Scheme {
    /// The scheme for a one-column uuid or integer key; `min`/`max` are
    /// the integer key's bounds in the source. `None`: use the full sweep.
    pub fn choose(key: &TableSpec, bounds: Option<(i64, i64)>) -> Option<Scheme> {
        let [col] = key.columns.as_slice() else { return None };
        match (col.ty.kind, col.ty.array) {
            (Kind::Uuid, false) => Some(Scheme::Prefix { chars: 3 }),
            (Kind::Int2 | Kind::Int4 | Kind::Int8, false) => {
                let (lo, hi) = bounds.unwrap_or((0, 0));
                let span = (hi as i128 - lo as i128).max(1) as u128;
                // About 4096 buckets over today's keys.
                let shift = (128 - (span / 4096).leading_zeros()).min(62);
                Some(Scheme::Shift { shift })
            }
            _ => None,
        }
    }

    /// The bucket label of `col[row]`.
    pub fn label(&self, col: &dyn arrow::array::Array, row: usize) -> Option<String> {
        match (self, d1_value(col, row)) {
            (Scheme::Prefix { chars }, D1Value::Text(t)) => Some(t.chars().take(*chars).collect()),
            (Scheme::Shift { shift }, D1Value::Integer(i)) => Some((i >> shift).to_string()),
            _ => None,
        }
    }

    /// The key range `[lo, hi)` of bucket `label`, as the JSON values D1
    /// compares the key column with.
    pub fn range(&self, label: &str) -> Result<(Value, Value)> {
        match self {
            // uuid text is [0-9a-f-], all below '~'.
            Scheme::Prefix { .. } => Ok((json!(label), json!(format!("{label}~")))),
            Scheme::Shift { shift } => {
                let b: i64 = label.parse().map_err(|_| Error::Internal(format!("bucket label {label:?}")))?;
                let lo = (b as i128) << shift;
                let hi = (b as i128 + 1) << shift;
                // Only the last bucket's end (2^63) is past i64; as a u64 it
                // reads back as a REAL above every key, which compares right.
                let int = |v: i128| i64::try_from(v).map(Value::from).unwrap_or_else(|_| json!(v as u64));
                Ok((int(lo), int(hi)))
            }
        }
    }
}

/// Keys one read of differing buckets should return at most (by the
/// buckets' row counts; a single bigger bucket is read alone).
pub const KEYS_PER_READ: u64 = 10_000;
/// Buckets in one read at most: the JSON parameter then stays far below
/// D1's 2,000,000 bytes per value (a range is at most ~45 bytes).
pub const BUCKETS_PER_READ: usize = 4096;

/// The statement reading the keys of the ranges given as `?1`, a JSON
/// array of `[lo, hi]`. The key is answered in exact form
/// ([`crate::sink::d1::exact`]): D1's JSON rounds integers beyond 2^53,
/// and a rounded key names another row (the range bounds are exact: they
/// travel inside a JSON text that SQLite parses).
pub fn keys_in_ranges_sql(d1_table: &str, key: &str) -> String {
    let k = quote_ident(key);
    format!(
        "SELECT {} AS k FROM json_each(?1) AS r JOIN {} AS t ON t.{k} >= r.value ->> 0 AND t.{k} < r.value ->> 1",
        exact_column(Some("t"), key),
        quote_ident(d1_table)
    )
}

/// `buckets` (label, expected rows) grouped into reads of about
/// [`KEYS_PER_READ`] keys and at most [`BUCKETS_PER_READ`] buckets.
pub fn read_groups(buckets: &[(String, u64)]) -> Vec<&[(String, u64)]> {
    let mut out = Vec::new();
    let (mut start, mut rows) = (0, 0u64);
    for (i, (_, n)) in buckets.iter().enumerate() {
        if i > start && (rows + n > KEYS_PER_READ || i - start >= BUCKETS_PER_READ) {
            out.push(&buckets[start..i]);
            (start, rows) = (i, 0);
        }
        rows += n;
    }
    if start < buckets.len() {
        out.push(&buckets[start..]);
    }
    out
}

/// What is saved per table: the scheme and D1's sums as of the last run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub scheme: Scheme,
    /// label -> [rows, digest hex].
    pub sums: BTreeMap<String, (u64, String)>,
}

impl Saved {
    pub fn new(scheme: &Scheme, sums: &Sums) -> Saved {
        Saved {
            scheme: scheme.clone(),
            sums: sums.iter().map(|(k, s)| (k.clone(), (s.rows, s.hex()))).collect(),
        }
    }

    pub fn sums(&self) -> Sums {
        self.sums
            .iter()
            .filter_map(|(k, (rows, h))| {
                let mut s = DigestSum::from_hex(h)?;
                s.rows = *rows;
                Some((k.clone(), s))
            })
            .collect()
    }
}

fn row_name(table: &str) -> String {
    format!("buckets:{table}")
}

pub async fn load(d1: &D1Access, table: &str) -> Result<Option<Saved>> {
    let rows = d1
        .select(
            "reading the saved key buckets",
            "SELECT value FROM pgflare_sync_state WHERE name = ?1",
            &[json!(row_name(table))],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get("value"))
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str(t).ok()))
}

pub async fn save(d1: &D1Access, table: &str, saved: &Saved) -> Result<()> {
    let text = serde_json::to_string(saved).map_err(|e| Error::Internal(e.to_string()))?;
    d1.select(
        "saving the key buckets",
        "INSERT INTO pgflare_sync_state (name, value, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        &[json!(row_name(table)), json!(text), json!(super::checkpoint::now())],
    )
    .await?;
    Ok(())
}

/// Forgets every table's saved buckets (a fresh load replaced D1's rows).
pub async fn forget(d1: &D1Access) -> Result<()> {
    d1.execute("forgetting saved key buckets", "DELETE FROM pgflare_sync_state WHERE name LIKE 'buckets:%';")
        .await
}

/// D1's keys in the buckets `buckets` (label, expected rows), as a
/// one-column batch of `key`'s type.
pub async fn d1_keys(
    d1: &D1Access,
    d1_table: &str,
    key: &TableSpec,
    scheme: &Scheme,
    buckets: &[(String, u64)],
) -> Result<RecordBatch> {
    let col = key.columns.first().ok_or_else(|| Error::Internal("a key without columns".into()))?;
    let sql = keys_in_ranges_sql(d1_table, &col.name);
    let mut values: Vec<Value> = Vec::new();
    for group in read_groups(buckets) {
        let ranges = group
            .iter()
            .map(|(l, _)| scheme.range(l).map(|(lo, hi)| json!([lo, hi])))
            .collect::<Result<Vec<_>>>()?;
        let param = Value::Array(ranges).to_string();
        let what = format!("reading keys of changed buckets of {d1_table}");
        for r in d1.select(&what, &sql, &[Value::String(param)]).await? {
            values.push(r.get("k").cloned().unwrap_or(Value::Null));
        }
    }
    let odd = |v: &str, what: &str| Error::Config {
        setting: format!("D1 table {d1_table}, column {}", col.name),
        message: format!("holds {v}, which is not {what} pgflare wrote; run `pgflare verify`"),
    };
    let values = values
        .iter()
        .map(|v| decode(v).map_err(|found| odd(&found, "a key")))
        .collect::<Result<Vec<SqlValue>>>()?;
    let array: ArrayRef = match col.ty.kind {
        Kind::Uuid => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(values.len(), 16);
            for v in &values {
                let u = match v {
                    SqlValue::Text(s) => uuid::Uuid::parse_str(s).ok(),
                    _ => None,
                };
                let u = u.ok_or_else(|| odd(&sql_text(v), "a uuid"))?;
                b.append_value(u.as_bytes())?;
            }
            Arc::new(b.finish())
        }
        kind => {
            let ints = values
                .iter()
                .map(|v| match v {
                    SqlValue::Integer(i) => Ok(*i),
                    other => Err(odd(&sql_text(other), "an integer")),
                })
                .collect::<Result<Vec<i64>>>()?;
            match kind {
                Kind::Int2 => Arc::new(Int16Array::from(ints.iter().map(|&i| i as i16).collect::<Vec<_>>())),
                Kind::Int4 => Arc::new(Int32Array::from(ints.iter().map(|&i| i as i32).collect::<Vec<_>>())),
                _ => Arc::new(Int64Array::from(ints)),
            }
        }
    };
    Ok(RecordBatch::try_new(key.arrow_schema(), vec![array])?)
}

/// A value as SQL would write it, for messages.
fn sql_text(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(t) => format!("'{}'", t.replace('\'', "''")),
        SqlValue::Blob(b) => format!("a BLOB of {} bytes", b.len()),
    }
}

#[cfg(test)]
mod tests;
