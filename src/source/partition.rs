//! Splits a table into key ranges that workers read in parallel, from the
//! snapshot itself so the split is reproducible: integer and uuid keys are
//! cut evenly between min and max, other keys at quantiles of the first
//! primary-key column. The number of ranges follows the table's size, not
//! the number of workers, so the same snapshot gives the same files.

use super::conn::SourceConn;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::Row as _;

use crate::batch::{quote_ident, quote_literal, TableSpec};
use crate::error::{Error, Result};
use crate::typemap::Kind;

/// A half-open key range `[lower, upper)` of the first primary-key column;
/// `None` bounds are open. Bounds are SQL literals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub index: usize,
    pub lower: Option<String>,
    pub upper: Option<String>,
    /// An extra SQL condition on the rows of the range (the sync job's
    /// "changed since the checkpoint"); none for loads and archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

impl Partition {
    pub fn whole() -> Self {
        Partition { index: 0, lower: None, upper: None, filter: None }
    }

    /// The WHERE condition selecting this range, if it is not the whole table.
    pub fn predicate(&self, table: &TableSpec) -> Option<String> {
        let range = table.primary_key.first().map(|k| quote_ident(k)).and_then(|key| {
            match (&self.lower, &self.upper) {
                (None, None) => None,
                (Some(lo), None) => Some(format!("{key} >= {lo}")),
                (None, Some(hi)) => Some(format!("{key} < {hi}")),
                (Some(lo), Some(hi)) => Some(format!("{key} >= {lo} AND {key} < {hi}")),
            }
        });
        match (range, &self.filter) {
            (None, None) => None,
            (Some(r), None) => Some(r),
            (None, Some(f)) => Some(format!("({f})")),
            (Some(r), Some(f)) => Some(format!("{r} AND ({f})")),
        }
    }
}

/// How finely to split.
#[derive(Clone, Copy, Debug)]
pub struct SplitOptions {
    /// Aim for ranges of about this many bytes of table data.
    pub target_bytes: u64,
    pub max_partitions: usize,
}

/// Plans the ranges of one table, inside the snapshot.
pub async fn plan(
    conn: &mut SourceConn,
    table: &TableSpec,
    total_bytes: i64,
    opts: SplitOptions,
) -> Result<Vec<Partition>> {
    let wanted = ((total_bytes.max(0) as u64).div_ceil(opts.target_bytes.max(1)) as usize)
        .clamp(1, opts.max_partitions.max(1));
    let Some(key) = table.primary_key.first().and_then(|k| table.column(k)) else {
        return Ok(vec![Partition::whole()]);
    };
    if wanted == 1 {
        return Ok(vec![Partition::whole()]);
    }
    let ctx = || format!("planning partitions of {}", table.qualified());
    let col = quote_ident(&key.name);
    let name = table.sql_name();
    let bounds: Vec<String> = match (key.ty.kind, key.ty.array) {
        (Kind::Int2 | Kind::Int4 | Kind::Int8, false) => {
            let row =
                sqlx::query(AssertSqlSafe(format!("SELECT min({col})::int8, max({col})::int8 FROM {name}")))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(Error::db(ctx()))?;
            let (Some(lo), Some(hi)): (Option<i64>, Option<i64>) = (row.get(0), row.get(1)) else {
                return Ok(vec![Partition::whole()]);
            };
            even_split(lo as i128, hi as i128, wanted).into_iter().map(|b| b.to_string()).collect()
        }
        (Kind::Uuid, false) => {
            let row = sqlx::query(AssertSqlSafe(format!(
                // uuid has no min()/max() before Postgres 18; its text form
                // sorts the same way under the C collation.
                "SELECT min({col}::text COLLATE \"C\"), max({col}::text COLLATE \"C\") FROM {name}"
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db(ctx()))?;
            let (Some(lo), Some(hi)): (Option<String>, Option<String>) = (row.get(0), row.get(1)) else {
                return Ok(vec![Partition::whole()]);
            };
            let parse = |s: &str| {
                uuid::Uuid::parse_str(s).map(|u| u.as_u128()).map_err(|e| Error::Internal(e.to_string()))
            };
            let (lo, hi) = (parse(&lo)?, parse(&hi)?);
            even_split_u128(lo, hi, wanted)
                .into_iter()
                .map(|b| format!("'{}'::uuid", uuid::Uuid::from_u128(b)))
                .collect()
        }
        _ => {
            let fractions: Vec<String> =
                (1..wanted).map(|i| format!("{}", i as f64 / wanted as f64)).collect();
            let values: Option<Vec<String>> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT (percentile_disc(ARRAY[{}]::float8[]) WITHIN GROUP (ORDER BY {col}))::text[] FROM {name}",
                fractions.join(",")
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db(ctx()))?;
            let mut values = values.unwrap_or_default();
            values.dedup();
            values.into_iter().map(|v| format!("{}::{}", quote_literal(&v), key.pg_type)).collect()
        }
    };
    Ok(ranges(bounds))
}

/// `n - 1` cut points between lo and hi (inclusive), strictly increasing.
fn even_split(lo: i128, hi: i128, n: usize) -> Vec<i128> {
    let span = hi - lo + 1;
    let mut out: Vec<i128> =
        (1..n as i128).map(|i| lo + span * i / n as i128).filter(|b| *b > lo && *b <= hi).collect();
    out.dedup();
    out
}

fn even_split_u128(lo: u128, hi: u128, n: usize) -> Vec<u128> {
    let step = (hi - lo) / n as u128;
    let mut out: Vec<u128> = (1..n as u128).map(|i| lo + step * i).filter(|b| *b > lo && *b <= hi).collect();
    out.dedup();
    out
}

/// Turns ordered cut points into ranges covering everything.
fn ranges(bounds: Vec<String>) -> Vec<Partition> {
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut lower = None;
    for (index, b) in bounds.into_iter().enumerate() {
        out.push(Partition { index, lower: lower.take(), upper: Some(b.clone()), filter: None });
        lower = Some(b);
    }
    out.push(Partition { index: out.len(), lower, upper: None, filter: None });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_without_overlap() {
        let parts = ranges(vec!["10".into(), "20".into()]);
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[0].lower.as_deref(), parts[0].upper.as_deref()), (None, Some("10")));
        assert_eq!((parts[1].lower.as_deref(), parts[1].upper.as_deref()), (Some("10"), Some("20")));
        assert_eq!((parts[2].lower.as_deref(), parts[2].upper.as_deref()), (Some("20"), None));
        assert!(parts.iter().enumerate().all(|(i, p)| p.index == i));
    }

    #[test]
    fn even_splits_are_increasing_and_inside() {
        assert_eq!(even_split(1, 100, 4), vec![26, 51, 76]);
        assert!(even_split(5, 5, 4).is_empty());
        assert_eq!(even_split(1, 3, 8), vec![2, 3]);
        let u = even_split_u128(0, u128::MAX, 4);
        assert_eq!(u.len(), 3);
        assert!(u.windows(2).all(|w| w[0] < w[1]));
    }
}
