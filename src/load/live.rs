//! What a load leaves out because it is not live (soft-deleted, or below
//! a soft-deleted parent: see `plan::live`), and the foreign-key checks
//! that keep D1 from refusing a row halfway through: before anything is
//! written, the tables whose conditions follow a cycle of several tables
//! only once around are checked for rows whose parent is not written; and
//! when D1 still refuses a row on a foreign key, the source is asked which
//! rows those are, so the error names the table, the key and the rows.

use sqlx::Row as _;

use super::Prepared;
use crate::batch::{quote_ident, TableSpec};
use crate::error::{Error, Result};
use crate::plan::live::{LiveRows, OrphanCheck};
use crate::source::{Snapshot, TableInfo};

/// Rows of one table left out of the targets.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeftOut {
    pub soft_deleted: u64,
    pub hidden_by_parent: u64,
}

/// Counts the rows of `spec` that are soft-deleted, and those below a
/// soft-deleted parent, at the snapshot.
pub async fn left_out(snapshot: &mut Snapshot, live: &LiveRows, spec: &TableSpec) -> Result<LeftOut> {
    let (soft, hidden) = (live.soft_deleted(spec), live.hidden_by_parent(spec));
    if soft.is_none() && hidden.is_none() {
        return Ok(LeftOut::default());
    }
    let sql = format!(
        "SELECT count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}) FROM {}",
        soft.as_deref().unwrap_or("false"),
        hidden.as_deref().unwrap_or("false"),
        spec.sql_name()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(snapshot.conn())
        .await
        .map_err(Error::db(format!("counting the soft-deleted rows of {}", spec.qualified())))?;
    let n = |i: usize| row.get::<i64, _>(i).max(0) as u64;
    Ok(LeftOut { soft_deleted: n(0), hidden_by_parent: n(1) })
}

/// Live rows whose foreign-key parent is not written, found by one check.
struct Orphans {
    table: String,
    check: OrphanCheck,
    rows: u64,
    examples: Vec<String>,
}

/// Refuses the load, before anything is written, when a table whose
/// live-row condition follows a multi-table cycle only once around has a
/// live row whose parent is not live.
pub async fn check_parents(snapshot: &mut Snapshot, prepared: &Prepared) -> Result<()> {
    for (info, (_, d1)) in prepared.infos.iter().zip(&prepared.d1) {
        if !prepared.live.cut_short(&info.spec) {
            continue;
        }
        if let Some(found) = orphans(snapshot, &prepared.live, info, d1).await?.into_iter().next() {
            return Err(refusal(&found, None));
        }
    }
    Ok(())
}

/// `err`, or when it is D1 refusing a row on a foreign key and the source
/// shows which rows (of the tables `tables` of the wave being written), an
/// error naming them.
pub async fn explain_refusal(
    snapshot: &mut Snapshot,
    prepared: &Prepared,
    tables: &[usize],
    err: Error,
) -> Error {
    if !err.to_string().contains("FOREIGN KEY constraint failed") {
        return err;
    }
    for &i in tables {
        let (Some(info), Some((_, d1))) = (prepared.infos.get(i), prepared.d1.get(i)) else { continue };
        match orphans(snapshot, &prepared.live, info, d1).await {
            Ok(found) if !found.is_empty() => return refusal(&found[0], Some(&err)),
            _ => {}
        }
    }
    err
}

/// The foreign keys of `info` that D1 has (their columns go to D1) whose
/// parent row is not written for some live row.
async fn orphans(
    snapshot: &mut Snapshot,
    live: &LiveRows,
    info: &TableInfo,
    d1: &crate::config::mapping::D1Table,
) -> Result<Vec<Orphans>> {
    let spec = &info.spec;
    let key = spec
        .primary_key
        .iter()
        .map(|k| format!("'{}=' || coalesce({}::text, 'NULL')", k.replace('\'', "''"), quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" || ', ' || ");
    let key = if key.is_empty() { "ctid::text".to_string() } else { key };
    let mut out = Vec::new();
    for check in live.orphans(spec) {
        if check.columns.iter().any(|c| d1.d1_name(c).is_none()) {
            continue;
        }
        let filter = match live.live(spec) {
            Some(l) => format!("({l}) AND ({})", check.condition),
            None => check.condition.clone(),
        };
        let ctx = || format!("checking the foreign key {} of {}", check.foreign_key, spec.qualified());
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE {filter}",
            spec.sql_name()
        )))
        .fetch_one(snapshot.conn())
        .await
        .map_err(Error::db(ctx()))?;
        if rows == 0 {
            continue;
        }
        let examples: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {key} FROM {} WHERE {filter} LIMIT 5",
            spec.sql_name()
        )))
        .fetch_all(snapshot.conn())
        .await
        .map_err(Error::db(ctx()))?;
        out.push(Orphans { table: spec.qualified(), check, rows: rows as u64, examples });
    }
    Ok(out)
}

fn refusal(o: &Orphans, refused: Option<&Error>) -> Error {
    let what = match refused {
        Some(e) => format!(
            "D1 refused a row on a foreign key ({}).\n",
            e.to_string().lines().next().unwrap_or_default()
        ),
        None => String::new(),
    };
    Error::Source {
        message: format!(
            "{what}{}: {} live rows reference a row of {} that is not written (foreign key {} ({})), e.g. {}; \
             D1 enforces foreign keys and refuses them",
            o.table,
            o.rows,
            o.check.parent,
            o.check.foreign_key,
            o.check.columns.join(", "),
            o.examples.join("; ")
        ),
        hint: "the parent rows are missing from the source (a foreign key Postgres does not check: NOT VALID, \
               or rows written with triggers off) or are soft-deleted further up a cycle of foreign keys than \
               pgflare follows (once around): fix those rows in the source (delete them, soft-delete them or \
               point them at a live parent), or leave the foreign key's columns out of D1 (d1_columns)"
            .into(),
    }
}
