//! The Supabase side of a query shape, exactly: Postgres evaluates each
//! query's filter (its own operators, `&&`, `@>`, `=`, on the column's
//! type) and the top k among the admitted rows is computed client-side.
//! pgvector's distance operators would give the same order, but the
//! pgvector build of the local test stack cannot run them on every CPU
//! (README), and one streamed read serves every query at once.
//!
//! Filter values become typed literals through Postgres itself
//! (`jsonb_populate_record` of the table's row type), so a value means
//! what the service's bound parameter means; a value the column's type
//! refuses is that query's error, not the run's. One read of the table
//! carries, per row, a text of `0`/`1`, one character per distinct filter.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::AsArray;
use serde_json::{json, Value};
use sqlx::AssertSqlSafe;

use super::input::QueryVec;
use crate::batch::collect::Collector;
use crate::batch::{quote_ident, ColumnSpec, TableBatch, TableSpec};
use crate::config::mapping::VectorMapping;
use crate::config::queries::{FilterOp, QueryShape};
use crate::error::Result;
use crate::sink::vectorize::ndjson::{vector_at, Line, LineWriter};
use crate::source::conn::SourceConn;
use crate::source::wal::rows::push_literal;
use crate::verify::parity::TopK;

/// The name of the computed column the exact read adds.
pub const PASS_COLUMN: &str = "__pgflare_admitted";

/// The SQL condition of one query's filters, with its values as typed
/// literals; `Err` is the message Postgres gave for a value.
pub async fn condition(
    conn: &mut SourceConn,
    spec: &TableSpec,
    shape: &QueryShape,
    filter: &serde_json::Map<String, Value>,
) -> Result<std::result::Result<Option<String>, String>> {
    let mut parts = Vec::new();
    for f in &shape.filters {
        let Some(col) = spec.column(&f.column) else { continue };
        let value = filter.get(&f.column).cloned().unwrap_or(Value::Null);
        let c = quote_ident(&f.column);
        let sql = match f.op {
            FilterOp::In => {
                let mut lits = Vec::new();
                for v in value.as_array().into_iter().flatten() {
                    match literal(conn, spec, col, v).await? {
                        Ok(l) => lits.push(l),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                match lits.is_empty() {
                    true => "false".to_string(),
                    false => format!("{c} IN ({})", lits.join(", ")),
                }
            }
            op => {
                let l = match literal(conn, spec, col, &value).await? {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(e)),
                };
                let sym = match op {
                    FilterOp::Eq => "=",
                    FilterOp::Ne => "<>",
                    FilterOp::Lt => "<",
                    FilterOp::Lte => "<=",
                    FilterOp::Gt => ">",
                    FilterOp::Gte => ">=",
                    FilterOp::Overlap => "&&",
                    FilterOp::Contains | FilterOp::In => "@>",
                };
                format!("{c} {sym} {l}")
            }
        };
        parts.push(format!("({sql})"));
    }
    Ok(Ok((!parts.is_empty()).then(|| parts.join(" AND "))))
}

/// `value` as a literal of `col`'s type, made by Postgres from JSON.
async fn literal(
    conn: &mut SourceConn,
    spec: &TableSpec,
    col: &ColumnSpec,
    value: &Value,
) -> Result<std::result::Result<String, String>> {
    let sql = format!(
        "SELECT (jsonb_populate_record(NULL::{}, $1::jsonb)).{}::text",
        spec.sql_name(),
        quote_ident(&col.name)
    );
    let arg = json!({ col.name.clone(): value }).to_string();
    let text: std::result::Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(arg).fetch_one(&mut *conn).await;
    Ok(match text {
        Ok(Some(t)) => {
            let mut out = String::new();
            push_literal(&mut out, &t, &col.pg_type);
            Ok(out)
        }
        Ok(None) => Err(format!("the filter value {value} for `{}` is null", col.name)),
        Err(e) => Err(format!("the filter value {value} is not a {} (`{}`): {e}", col.pg_type, col.name)),
    })
}

/// The distinct conditions, and per query the position of its condition
/// (`None`: no filter, every row is admitted).
pub fn distinct(conditions: &[Option<String>]) -> (Vec<String>, Vec<Option<usize>>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut list = Vec::new();
    let at = conditions
        .iter()
        .map(|c| {
            c.as_deref().map(|c| {
                *seen.entry(c).or_insert_with(|| {
                    list.push(c.to_string());
                    list.len() - 1
                })
            })
        })
        .collect();
    (list, at)
}

/// The computed column: one `0`/`1` per distinct condition (NULL counts as 0).
pub fn admitted_sql(conditions: &[String]) -> String {
    let bits: Vec<String> =
        conditions.iter().map(|c| format!("(CASE WHEN {c} THEN '1' ELSE '0' END)")).collect();
    let expr = if bits.is_empty() { "''::text".to_string() } else { bits.join(" || ") };
    format!("({expr}) AS {}", quote_ident(PASS_COLUMN))
}

/// `spec` with the computed column added last.
pub fn read_spec(spec: &TableSpec) -> TableSpec {
    let mut s = spec.clone();
    s.columns.push(ColumnSpec {
        name: PASS_COLUMN.into(),
        pg_type: "text".into(),
        ty: crate::typemap::ColumnType::scalar(crate::typemap::Kind::Text),
        nullable: false,
        cast: None,
    });
    s
}

/// Per partition: each query's best k among the rows its condition
/// admits, and how many rows it admits.
pub struct ExactSink {
    writer: LineWriter,
    pass: usize,
    at: Arc<Vec<Option<usize>>>,
    pub top: TopK,
    pub admitted: Vec<usize>,
}

impl ExactSink {
    pub fn new(
        spec: &TableSpec,
        mapping: &VectorMapping,
        at: Arc<Vec<Option<usize>>>,
        top: TopK,
    ) -> Result<ExactSink> {
        let writer = LineWriter::new(spec, mapping)?.for_comparison();
        let n = at.len();
        Ok(ExactSink { writer, pass: spec.columns.len() - 1, at, top, admitted: vec![0; n] })
    }
}

impl Collector for ExactSink {
    type Out = Vec<(TopK, Vec<usize>)>;

    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let pass = batch.batch.column(self.pass).as_string::<i32>().clone();
        let mut line = String::new();
        for row in 0..batch.batch.num_rows() {
            let (Line::Written, Some(v)) = vector_at(&self.writer, &batch.batch, row, &mut line)? else {
                continue;
            };
            let bits = pass.value(row).as_bytes();
            let at = &self.at;
            let admits = |q: usize| at[q].is_none_or(|b| bits.get(b) == Some(&b'1'));
            for (q, n) in self.admitted.iter_mut().enumerate() {
                *n += usize::from(admits(q));
            }
            self.top.offer_where(&v, &admits);
        }
        Ok(())
    }

    fn merge_into(self, out: &mut Self::Out) -> u64 {
        out.push((self.top, self.admitted));
        0
    }
}

/// Per query: its exact top k (id, score), and the rows its filter admits.
pub fn merge(parts: Vec<(TopK, Vec<usize>)>, template: TopK) -> (Vec<Vec<(String, f64)>>, Vec<usize>) {
    let n = template.queries.len();
    let mut top = template;
    let mut admitted = vec![0usize; n];
    for (t, a) in parts {
        top.merge(t);
        admitted.iter_mut().zip(a).for_each(|(x, y)| *x += y);
    }
    (top.results(), admitted)
}

/// The query vectors as [`TopK`] wants them.
pub fn query_list(queries: &[&QueryVec]) -> Arc<Vec<(String, Vec<f32>)>> {
    Arc::new(queries.iter().map(|q| (q.id.clone(), q.vector.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_shared_and_bits_follow_them() {
        let c = |s: &str| Some(s.to_string());
        let (list, at) = distinct(&[c("a"), None, c("b"), c("a")]);
        assert_eq!(list, ["a", "b"]);
        assert_eq!(at, [Some(0), None, Some(1), Some(0)]);
        assert_eq!(
            admitted_sql(&list),
            "((CASE WHEN a THEN '1' ELSE '0' END) || (CASE WHEN b THEN '1' ELSE '0' END)) AS \"__pgflare_admitted\""
        );
        assert_eq!(admitted_sql(&[]), "(''::text) AS \"__pgflare_admitted\"");
    }
}
