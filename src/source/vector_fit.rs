//! The Vectorize side of `inspect`'s scan: per vector column, the
//! dimensions its rows have (a `vector` column declared without one, as
//! LangChain's PGVector creates it, can hold 1536- and 768-dimension rows
//! side by side, and one index takes one dimension), how many vectors
//! there are against what one index holds, and with a configured
//! `vector_namespace`, how many namespaces against the index's limit.
//! [`survey`] reads the numbers; [`findings`] judges them, so the limits
//! are tested without millions of rows.

use super::conn::SourceConn;
use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;

use super::fit::{key_text, Finding, Severity};
use crate::batch::{quote_ident, ColumnSpec, TableSpec};
use crate::cloudflare::limits::*;
use crate::error::{Error, Result};
use crate::typemap::Kind;

/// How many rows have vectors of one dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DimensionCount {
    pub dims: u32,
    pub rows: u64,
}

/// What one vector column holds.
#[derive(Clone, Debug, Serialize)]
pub struct VectorSurvey {
    pub column: String,
    /// The dimension the column's type declares (`vector(1536)`), if any.
    pub declared: Option<u32>,
    /// Non-NULL vectors per dimension, most common first.
    pub dimensions: Vec<DimensionCount>,
    /// The configured `vector_namespace` column and its distinct values
    /// among rows with a vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<u64>,
    /// The dimension the index will have (`[vectorize] dimensions`, else
    /// the declared one), for judging the rows.
    #[serde(skip)]
    pub index_dims: Option<u32>,
    /// Up to five keys of rows not of the index's dimension.
    #[serde(skip)]
    pub other_examples: Vec<String>,
    /// The configuration already leaves those rows out (`on_invalid =
    /// "skip"` with a chosen dimension).
    #[serde(skip)]
    pub others_skipped: bool,
}

impl VectorSurvey {
    pub fn vectors(&self) -> u64 {
        self.dimensions.iter().map(|d| d.rows).sum()
    }

    /// The dimension the index takes: the configured or declared one, else
    /// the most common.
    fn wanted(&self) -> Option<u32> {
        self.index_dims.or(self.declared).or_else(|| self.dimensions.first().map(|d| d.dims))
    }
}

/// The vector columns of `t` to survey, with the namespace column and
/// index dimension the configuration gives (`vector` names the column
/// that feeds Vectorize, when configured).
pub struct VectorColumns<'a> {
    pub vector: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub dimensions: Option<u32>,
    /// `[vectorize] on_invalid = "skip"`.
    pub skip_invalid: bool,
}

/// Reads the dimensions (and namespaces) of every vector column of `t`.
/// A declared column costs a count; one without a dimension reads each
/// vector's header (`vector_dims`).
pub async fn survey(
    conn: &mut SourceConn,
    t: &TableSpec,
    cfg: &VectorColumns<'_>,
) -> Result<Vec<VectorSurvey>> {
    let mut out = Vec::new();
    let ctx = || format!("surveying the vectors of {}", t.qualified());
    for c in t.columns.iter().filter(|c| is_vector(c)) {
        let col = quote_ident(&c.name);
        let feeds = cfg.vector.is_none_or(|v| v == c.name);
        let namespace = cfg.namespace.filter(|_| feeds).and_then(|n| t.column(n)).map(|n| n.name.clone());
        let room = index_room(conn, t, &c.name, namespace.as_deref(), None).await?;
        let dimensions: Vec<DimensionCount> = match c.ty.dims {
            Some(d) => vec![DimensionCount { dims: d, rows: room.vectors }].into_iter().filter(|d| d.rows > 0).collect(),
            None => sqlx::query(AssertSqlSafe(format!(
                "SELECT vector_dims({col})::int8, count(*) FROM {} WHERE {col} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1",
                t.sql_name()
            )))
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db(ctx()))?
            .iter()
            .map(|r| DimensionCount { dims: r.get::<i64, _>(0) as u32, rows: r.get::<i64, _>(1) as u64 })
            .collect(),
        };
        let mut s = VectorSurvey {
            column: c.name.clone(),
            declared: c.ty.dims,
            dimensions,
            namespace,
            namespaces: room.namespaces,
            index_dims: cfg.dimensions.filter(|_| feeds && c.ty.dims.is_none()),
            other_examples: Vec::new(),
            others_skipped: false,
        };
        s.others_skipped = cfg.skip_invalid && s.index_dims.is_some();
        let other = s.wanted().filter(|w| s.dimensions.iter().any(|d| d.dims != *w));
        if let Some(want) = other {
            s.other_examples = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT {} FROM {} WHERE {col} IS NOT NULL AND vector_dims({col}) <> {want} LIMIT 5",
                key_text(t),
                t.sql_name()
            )))
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db(ctx()))?;
        }
        out.push(s);
    }
    Ok(out)
}

/// What one index would receive from a vector column: its vectors and,
/// with a namespace column, their distinct namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRoom {
    pub vectors: u64,
    pub namespaces: Option<u64>,
}

/// Counts the non-NULL vectors of `column` in `t` (rows matching `filter`,
/// a condition on `t`) and the distinct values of `namespace` among them,
/// in one pass that reads no vector (a NULL test needs no detoasting).
pub async fn index_room(
    conn: &mut SourceConn,
    t: &TableSpec,
    column: &str,
    namespace: Option<&str>,
    filter: Option<&str>,
) -> Result<IndexRoom> {
    let col = quote_ident(column);
    let distinct = match namespace {
        Some(n) => format!("count(DISTINCT {}) FILTER (WHERE {col} IS NOT NULL)", quote_ident(n)),
        None => "NULL::int8".into(),
    };
    let sql = format!(
        "SELECT count({col}), {distinct} FROM {}{}",
        t.sql_name(),
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let (vectors, namespaces): (i64, Option<i64>) = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .map_err(Error::db(format!("counting the vectors of {}", t.qualified())))?;
    Ok(IndexRoom { vectors: vectors.max(0) as u64, namespaces: namespaces.map(|n| n.max(0) as u64) })
}

fn is_vector(c: &ColumnSpec) -> bool {
    matches!(c.ty.kind, Kind::Vector | Kind::Halfvec) && !c.ty.array
}

/// What does not fit one Vectorize index: rows of another dimension than
/// the index's, more vectors than an index holds, more namespaces than it
/// allows.
pub fn findings(s: &VectorSurvey) -> Vec<Finding> {
    let mut out = Vec::new();
    let found =
        s.dimensions.iter().map(|d| format!("{} x {} dims", d.rows, d.dims)).collect::<Vec<_>>().join(", ");
    if let Some(want) = s.wanted() {
        let other: u64 = s.dimensions.iter().filter(|d| d.dims != want).map(|d| d.rows).sum();
        if other > 0 {
            out.push(Finding {
                check: "vector_dims_mixed",
                severity: if s.others_skipped { Severity::Note } else { Severity::Blocker },
                column: Some(s.column.clone()),
                limit: format!("one dimension per Vectorize index ({want}; found {found})"),
                rows: other,
                examples: s.other_examples.clone(),
                advice:
                    "one index holds vectors of one dimension: choose it with [vectorize] dimensions = N and \
                         on_invalid = \"skip\" (the others are left out and named in the load summary), or \
                         re-embed them with the same model, or load them into another index from a view \
                         filtered on vector_dims(column) = M",
            });
        }
    }
    let room = IndexRoom { vectors: s.vectors(), namespaces: s.namespaces };
    out.extend(index_findings(&s.column, s.namespace.as_deref(), &room));
    out
}

/// What does not fit one index of what a column would send it: more
/// vectors than an index holds, more namespaces than it allows (`namespace`
/// names the namespace column).
pub fn index_findings(column: &str, namespace: Option<&str>, room: &IndexRoom) -> Vec<Finding> {
    let mut out = Vec::new();
    if room.vectors > VECTORIZE_MAX_VECTORS_PER_INDEX {
        out.push(Finding {
            check: "vectorize_index_size",
            severity: Severity::Blocker,
            column: Some(column.to_string()),
            limit: format!("{VECTORIZE_MAX_VECTORS_PER_INDEX} vectors per Vectorize index"),
            rows: room.vectors,
            examples: Vec::new(),
            advice: "split the vectors over several indexes (e.g. one per tenant or per period, each loaded \
                     from a view with --table), or leave old rows out (soft_delete)",
        });
    }
    if let (Some(ns), Some(n)) = (namespace, room.namespaces) {
        if n > VECTORIZE_MAX_NAMESPACES_PER_INDEX {
            out.push(Finding {
                check: "vectorize_namespaces",
                severity: Severity::Blocker,
                column: Some(ns.to_string()),
                limit: format!(
                    "{VECTORIZE_MAX_NAMESPACES_PER_INDEX} namespaces per Vectorize index (Workers Paid; \
                     {VECTORIZE_MAX_NAMESPACES_PER_INDEX_FREE} on Free)"
                ),
                rows: n,
                examples: Vec::new(),
                advice:
                    "use a coarser namespace (e.g. a tenant group), or put the tenant in the metadata with \
                         a metadata index and filter on it instead of vector_namespace, or split the tenants \
                         over several indexes",
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey(declared: Option<u32>, dims: &[(u32, u64)], namespaces: Option<u64>) -> VectorSurvey {
        VectorSurvey {
            column: "embedding".into(),
            declared,
            dimensions: dims.iter().map(|&(dims, rows)| DimensionCount { dims, rows }).collect(),
            namespace: namespaces.map(|_| "tenant".into()),
            namespaces,
            index_dims: None,
            other_examples: vec!["id=7".into()],
            others_skipped: false,
        }
    }

    fn checks(s: &VectorSurvey) -> Vec<(&'static str, u64)> {
        findings(s).iter().map(|f| (f.check, f.rows)).collect()
    }

    #[test]
    fn mixed_dimensions_block_and_name_the_rows_of_the_other_dimension() {
        let s = survey(None, &[(1536, 2), (768, 1)], None);
        let f = findings(&s);
        assert_eq!(checks(&s), [("vector_dims_mixed", 1)]);
        assert!(f[0].limit.contains("1536; found 2 x 1536 dims, 1 x 768 dims"), "{}", f[0].limit);
        assert_eq!(f[0].examples, ["id=7"]);
        assert!(f[0].advice.contains("[vectorize] dimensions") && f[0].advice.contains("on_invalid"));
        // The configured dimension decides which rows are the others.
        let chosen = VectorSurvey { index_dims: Some(768), ..s };
        assert_eq!(checks(&chosen), [("vector_dims_mixed", 2)]);
        assert_eq!(findings(&chosen)[0].severity, Severity::Blocker);
        // ... and with on_invalid = "skip" the load leaves them out: a note.
        let skipped = VectorSurvey { others_skipped: true, ..chosen };
        assert_eq!(findings(&skipped)[0].severity, Severity::Note);
        assert!(checks(&survey(None, &[(768, 5)], None)).is_empty(), "one dimension fits");
        assert!(checks(&survey(Some(1536), &[(1536, 5)], None)).is_empty());
    }

    #[test]
    fn an_index_holds_a_bounded_number_of_vectors_and_namespaces() {
        let at = |vectors: u64, namespaces: u64| checks(&survey(Some(8), &[(8, vectors)], Some(namespaces)));
        assert!(at(VECTORIZE_MAX_VECTORS_PER_INDEX, VECTORIZE_MAX_NAMESPACES_PER_INDEX).is_empty());
        assert_eq!(
            at(VECTORIZE_MAX_VECTORS_PER_INDEX + 1, 1),
            [("vectorize_index_size", VECTORIZE_MAX_VECTORS_PER_INDEX + 1)]
        );
        assert_eq!(
            at(10, VECTORIZE_MAX_NAMESPACES_PER_INDEX + 1),
            [("vectorize_namespaces", VECTORIZE_MAX_NAMESPACES_PER_INDEX + 1)]
        );
    }
}
