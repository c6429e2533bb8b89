//! Finds, before anything is moved, every place a table's data will not fit
//! Cloudflare's limits: too many columns, vectors over Vectorize's
//! dimension limit, ids over 64 bytes, JSON over the 10 KiB metadata limit,
//! rows over D1's 100 KB statement size (pgflare then writes them in
//! pieces), values over D1's 2 MB value limit (which nothing can fix) and
//! bigints beyond 2^53, which D1's JSON answers round.
//! One scan per table counts them; examples are fetched only when found.

use super::conn::SourceConn;
use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;

use crate::batch::{quote_ident, TableSpec};
use crate::cloudflare::limits::*;
use crate::error::{Error, Result};
use crate::typemap::Kind;

/// Whether a finding stops a migration or only changes how it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// pgflare handles it (e.g. writes a long row in pieces).
    Note,
    /// The data cannot go to Cloudflare as it is.
    Blocker,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub limit: String,
    pub rows: u64,
    /// Up to five primary keys of offending rows.
    pub examples: Vec<String>,
    pub advice: &'static str,
}

/// The largest integer a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE: i64 = (1 << 53) - 1;

struct Check {
    name: &'static str,
    severity: Severity,
    column: Option<String>,
    limit: String,
    condition: String,
    advice: &'static str,
}

fn checks(t: &TableSpec) -> Vec<Check> {
    let mut out = Vec::new();
    let text = |c: &str| format!("octet_length({}::text)", quote_ident(c));
    for c in &t.columns {
        let col = quote_ident(&c.name);
        match (c.ty.kind, c.ty.array) {
            (Kind::Vector | Kind::Halfvec, false) if c.ty.dims.is_none_or(|d| d > VECTORIZE_MAX_DIMS) => out.push(Check {
                name: "vector_dims",
                severity: Severity::Blocker,
                column: Some(c.name.clone()),
                limit: format!("{VECTORIZE_MAX_DIMS} dimensions (Vectorize)"),
                condition: format!("vector_dims({col}) > {VECTORIZE_MAX_DIMS}"),
                advice: "reduce the embeddings' dimension (a smaller model, or truncation for Matryoshka models) before moving them to Vectorize",
            }),
            (Kind::Json | Kind::Jsonb, false) => out.push(Check {
                name: "metadata_size",
                severity: Severity::Blocker,
                column: Some(c.name.clone()),
                limit: format!("{VECTORIZE_MAX_METADATA_BYTES} bytes of Vectorize metadata"),
                condition: format!("{} > {VECTORIZE_MAX_METADATA_BYTES}", text(&c.name)),
                advice: "if this column becomes Vectorize metadata, keep only the filterable fields there and leave the rest in D1",
            }),
            _ => {}
        }
        if let (Kind::Int8, false) = (c.ty.kind, c.ty.array) {
            // D1 answers through JavaScript: its JSON rounds integers past
            // 2^53 (cloudflare-docs d1/worker-api/index.mdx, "Type
            // conversion"; d1/best-practices/import-export-data.mdx).
            out.push(Check {
                name: "d1_integer_precision",
                severity: Severity::Note,
                column: Some(c.name.clone()),
                limit: "±(2^53 - 1), the integers D1's JSON answers and exports keep exact".into(),
                condition: format!("{col} NOT BETWEEN -{MAX_SAFE} AND {MAX_SAFE}"),
                advice:
                    "pgflare keeps these exact in D1 (it writes SQL text and reads them back as text), but \
                         D1's JSON answers (a Worker's D1 binding, `wrangler d1 execute`, D1's export) and \
                         Vectorize metadata numbers round them to the nearest double: read them with \
                         CAST(col AS TEXT), or map the column to text for other readers",
            });
        }
        if !matches!(c.ty.kind, Kind::Vector | Kind::Halfvec) {
            out.push(Check {
                name: "d1_value_size",
                severity: Severity::Blocker,
                column: Some(c.name.clone()),
                limit: format!("{D1_MAX_VALUE_BYTES} bytes per D1 value"),
                condition: format!("{} > {D1_MAX_VALUE_BYTES}", text(&c.name)),
                advice: "D1 cannot store the value: split it into several rows or keep it in object storage (R2) and store a reference",
            });
        }
    }
    if t.primary_key.len() == 1 {
        out.push(Check {
            name: "vector_id_size",
            severity: Severity::Blocker,
            column: Some(t.primary_key[0].clone()),
            limit: format!("{VECTORIZE_MAX_ID_BYTES} bytes per Vectorize id"),
            condition: format!("{} > {VECTORIZE_MAX_ID_BYTES}", text(&t.primary_key[0])),
            advice: "use a shorter id for Vectorize (e.g. a hash of the key) and keep the mapping in D1",
        });
    }
    let row_size: Vec<String> = t
        .columns
        .iter()
        .filter(|c| !matches!(c.ty.kind, Kind::Vector | Kind::Halfvec))
        .map(|c| format!("coalesce({}, 0)", text(&c.name)))
        .collect();
    if !row_size.is_empty() {
        out.push(Check {
            name: "d1_statement_size",
            severity: Severity::Note,
            column: None,
            limit: format!("{D1_MAX_STATEMENT_BYTES} bytes per D1 SQL statement"),
            condition: format!("({}) > {}", row_size.join(" + "), D1_MAX_STATEMENT_BYTES - 1_000),
            advice: "pgflare writes such rows with an INSERT and then UPDATE ... || pieces; nothing to do",
        });
    }
    out
}

/// Runs every check on one table.
pub async fn check_table(conn: &mut SourceConn, t: &TableSpec) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    if t.columns.len() > D1_MAX_COLUMNS {
        findings.push(Finding {
            check: "d1_columns",
            severity: Severity::Blocker,
            column: None,
            limit: format!("{D1_MAX_COLUMNS} columns per D1 table"),
            rows: 0,
            examples: Vec::new(),
            advice: "move rarely used columns to a side table or into one JSON column",
        });
    }
    let checks = checks(t);
    let counts =
        checks.iter().map(|c| format!("count(*) FILTER (WHERE {})", c.condition)).collect::<Vec<_>>();
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {} FROM {}", counts.join(", "), t.sql_name())))
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db(format!("checking {} against Cloudflare's limits", t.qualified())))?;
    let key = key_text(t);
    for (i, c) in checks.into_iter().enumerate() {
        let rows: i64 = row.get(i);
        if rows == 0 {
            continue;
        }
        let examples: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {key} FROM {} WHERE {} LIMIT 5",
            t.sql_name(),
            c.condition
        )))
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(format!("finding example rows of {}", t.qualified())))?;
        findings.push(Finding {
            check: c.name,
            severity: c.severity,
            column: c.column,
            limit: c.limit,
            rows: rows as u64,
            examples,
            advice: c.advice,
        });
    }
    Ok(findings)
}

/// SQL for a row's key as examples show it: the key columns' text joined
/// with `, ` (the row's ctid without a key).
pub(crate) fn key_text(t: &TableSpec) -> String {
    if t.primary_key.is_empty() {
        "ctid::text".to_string()
    } else {
        t.primary_key
            .iter()
            .map(|k| format!("{}::text", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" || ', ' || ")
    }
}
