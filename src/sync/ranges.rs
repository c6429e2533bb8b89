//! Key buckets that D1 can read one by one. The hard-delete sweep compares
//! per-bucket digests of the source's keys with those of D1's; to make its
//! cost follow the number of *changed* buckets, D1's side is not read
//! every run: it is the source's sums saved at the end of the last run
//! (after which D1's keys equal the source's), kept in
//! `pgflare_sync_state`. A bucket is a key range D1 selects with its
//! primary-key index: the first three characters of a uuid (4096
//! buckets), or an integer key shifted right. Only differing buckets are
//! read back from D1. Other keys (text, composite) use the full sweep.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeBinaryBuilder, Int16Array, Int32Array, Int64Array};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::store::D1Access;
use crate::batch::{quote_ident, TableSpec};
use crate::error::{Error, Result};
use crate::sink::d1::value::{d1_value, D1Value};
use crate::typemap::Kind;
use crate::verify::digest::DigestSum;

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

    /// The SQL condition selecting bucket `label` on D1 column `key`, in a
    /// form its primary-key index serves.
    pub fn condition(&self, key: &str, label: &str) -> Result<String> {
        let k = quote_ident(key);
        match self {
            // uuid text is [0-9a-f-], all below '~'.
            Scheme::Prefix { .. } => {
                let lo = crate::batch::quote_literal(label);
                let hi = crate::batch::quote_literal(&format!("{label}~"));
                Ok(format!("({k} >= {lo} AND {k} < {hi})"))
            }
            Scheme::Shift { shift } => {
                let b: i64 = label.parse().map_err(|_| Error::Internal(format!("bucket label {label:?}")))?;
                let lo = (b as i128) << shift;
                let hi = (b as i128 + 1) << shift;
                Ok(format!("({k} >= {lo} AND {k} < {hi})"))
            }
        }
    }
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

/// D1's keys in the buckets `labels`, as a one-column batch of `key`'s type.
pub async fn d1_keys(
    d1: &D1Access,
    d1_table: &str,
    key: &TableSpec,
    scheme: &Scheme,
    labels: &[String],
) -> Result<RecordBatch> {
    let col = key.columns.first().ok_or_else(|| Error::Internal("a key without columns".into()))?;
    let mut values: Vec<Value> = Vec::new();
    // A few hundred ranges per statement stay well under D1's limits.
    for chunk in labels.chunks(200) {
        let cond =
            chunk.iter().map(|l| scheme.condition(&col.name, l)).collect::<Result<Vec<_>>>()?.join(" OR ");
        let sql =
            format!("SELECT {} AS k FROM {} WHERE {cond}", quote_ident(&col.name), quote_ident(d1_table));
        for r in d1.select(&format!("reading keys of changed buckets of {d1_table}"), &sql, &[]).await? {
            values.push(r.get("k").cloned().unwrap_or(Value::Null));
        }
    }
    let array: ArrayRef = match col.ty.kind {
        Kind::Uuid => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(values.len(), 16);
            for v in &values {
                let u =
                    v.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()).ok_or_else(|| Error::Config {
                        setting: format!("D1 table {d1_table}, column {}", col.name),
                        message: format!(
                            "holds {v}, which is not a uuid pgflare wrote; run `pgflare verify`"
                        ),
                    })?;
                b.append_value(u.as_bytes())?;
            }
            Arc::new(b.finish())
        }
        kind => {
            let ints = values
                .iter()
                .map(|v| {
                    v.as_i64().ok_or_else(|| Error::Config {
                        setting: format!("D1 table {d1_table}, column {}", col.name),
                        message: format!("holds {v}, which is not an integer; run `pgflare verify`"),
                    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ColumnSpec;

    fn key(kind: Kind, pg: &str) -> TableSpec {
        let ty = crate::typemap::ColumnType::scalar(kind);
        TableSpec {
            schema: "public".into(),
            name: "t".into(),
            columns: vec![ColumnSpec {
                name: "id".into(),
                pg_type: pg.into(),
                ty,
                nullable: false,
                cast: None,
            }],
            primary_key: vec!["id".into()],
        }
    }

    #[test]
    fn uuid_keys_bucket_by_prefix_and_select_by_range() {
        let s = Scheme::choose(&key(Kind::Uuid, "uuid"), None).expect("scheme");
        assert_eq!(s, Scheme::Prefix { chars: 3 });
        let mut b = FixedSizeBinaryBuilder::new(16);
        b.append_value(uuid::Uuid::parse_str("a3f00000-0000-4000-8000-000000000000").expect("u").as_bytes())
            .expect("a");
        let a = b.finish();
        assert_eq!(s.label(&a, 0).as_deref(), Some("a3f"));
        assert_eq!(s.condition("id", "a3f").expect("c"), "(\"id\" >= 'a3f' AND \"id\" < 'a3f~')");
    }

    #[test]
    fn integer_keys_get_about_4096_buckets() {
        let s = Scheme::choose(&key(Kind::Int8, "bigint"), Some((1, 20_000))).expect("scheme");
        let Scheme::Shift { shift } = s else { panic!("shift") };
        assert_eq!(shift, 3, "20,000 keys / 4096 -> 8 per bucket");
        let a = Int64Array::from(vec![17i64, -1]);
        assert_eq!(s.label(&a, 0).as_deref(), Some("2"));
        assert_eq!(s.label(&a, 1).as_deref(), Some("-1"), "negative keys floor");
        assert_eq!(s.condition("id", "2").expect("c"), "(\"id\" >= 16 AND \"id\" < 24)");
        assert_eq!(s.condition("id", "-1").expect("c"), "(\"id\" >= -8 AND \"id\" < 0)");
        assert!(Scheme::choose(&key(Kind::Text, "text"), None).is_none());
    }

    #[test]
    fn saved_sums_round_trip() {
        let mut sums = Sums::new();
        let mut d = DigestSum::default();
        d.add(&[7u8; 32]);
        sums.insert("a3f".into(), d);
        let saved = Saved::new(&Scheme::Prefix { chars: 3 }, &sums);
        let back: Saved = serde_json::from_str(&serde_json::to_string(&saved).expect("json")).expect("parse");
        assert_eq!(back.sums(), sums);
    }
}
