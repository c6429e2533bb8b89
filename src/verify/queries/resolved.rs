//! One `[[queries]]` shape resolved against the catalog and the mapping,
//! and the Postgres read both the query sampling ([`super`]) and the
//! per-shape replay ([`super::shapes_run`]) need: rows by vector id. In a
//! file of its own so that the two use it without needing each other.

use std::collections::HashMap;

use sqlx::AssertSqlSafe;

use crate::batch::quote_ident;
use crate::config::mapping::VectorMapping;
use crate::config::queries::QueryShape;
use crate::error::{Error, Result};
use crate::source::TableInfo;

/// One shape resolved against the catalog and the mapping.
pub(super) struct Resolved<'a> {
    pub(super) shape: &'a QueryShape,
    pub(super) info: &'a TableInfo,
    pub(super) vm: &'a VectorMapping,
    /// The D1 table and its names of the vector id and context columns.
    pub(super) d1_table: String,
    pub(super) d1_id: String,
    pub(super) d1_context: Vec<String>,
    /// D1 names of the post-filtered columns.
    pub(super) d1_post: HashMap<String, String>,
}

/// Rows of `spec` by vector id: each asked column through `form` (a
/// format with `{}` for the quoted column), as text.
pub(super) async fn rows_by_id(
    conn: &mut crate::source::conn::SourceConn,
    spec: &crate::batch::TableSpec,
    id_col: &str,
    ids: &[String],
    cols: &[String],
    form: &str,
) -> Result<HashMap<String, Vec<Option<String>>>> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let exprs: Vec<String> = cols.iter().map(|c| form.replace("{}", &quote_ident(c))).collect();
    let id = format!("CAST({} AS text)", quote_ident(id_col));
    let select = if exprs.is_empty() { String::new() } else { format!(", {}", exprs.join(", ")) };
    let sql = format!("SELECT {id}{select} FROM {} WHERE {id} = ANY($1)", spec.sql_name());
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(ids.to_vec())
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(format!("reading query rows of {}", spec.qualified())))?;
    for row in rows {
        use sqlx::Row as _;
        let id: String = row.try_get(0).map_err(Error::db("reading a query row's id".to_string()))?;
        let vals = (1..=cols.len()).map(|i| row.try_get::<Option<String>, _>(i).ok().flatten()).collect();
        out.insert(id, vals);
    }
    Ok(out)
}
