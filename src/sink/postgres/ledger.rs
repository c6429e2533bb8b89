//! What a `restore --target postgres` has finished, kept in the target
//! itself (schema `pgflare_restore`), because only there can it commit in
//! the same transaction as the rows: each archive file is copied in one
//! transaction that also records the file, so after a kill at any moment a
//! file is either in with its record or not in at all, and a rerun copies
//! exactly the files without one. `run` names the archive (the blake3 of
//! its manifest), so a rerun with another archive is refused instead of
//! mixing two. A finished restore drops the schema.

use std::collections::HashSet;

use sqlx::Row;

use crate::batch::quote_literal;
use crate::error::{Error, Result};
use crate::source::SourceConn;

/// The schema that holds the ledger while a restore is unfinished.
pub const SCHEMA: &str = "pgflare_restore";

/// The archive an unfinished restore in this target was copying, if any.
pub async fn unfinished(conn: &mut SourceConn) -> Result<Option<String>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('pgflare_restore.run') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("looking for an unfinished restore (pgflare_restore.run)"))?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT archive FROM pgflare_restore.run LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("reading pgflare_restore.run"))
}

/// Creates the ledger for `archive`; runs inside the transaction that
/// creates the tables, so the two exist together or not at all.
pub fn create_sql(archive: &str) -> String {
    format!(
        "CREATE SCHEMA {SCHEMA};
         CREATE TABLE {SCHEMA}.run (archive text PRIMARY KEY, started_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE {SCHEMA}.files (
             table_name text NOT NULL, file text NOT NULL, rows bigint NOT NULL, blake3 text NOT NULL,
             done_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, file));
         INSERT INTO {SCHEMA}.run (archive) VALUES ({});",
        quote_literal(archive)
    )
}

/// `(table, file)` pairs already copied.
pub async fn done(conn: &mut SourceConn) -> Result<HashSet<(String, String)>> {
    let rows = sqlx::query("SELECT table_name, file FROM pgflare_restore.files")
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("reading which files an earlier restore copied (pgflare_restore.files)"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Records a copied file; runs in the file's COPY transaction.
pub fn record_sql(table: &str, file: &str, rows: u64, blake3: &str) -> String {
    format!(
        "INSERT INTO {SCHEMA}.files (table_name, file, rows, blake3) VALUES ({}, {}, {rows}, {})",
        quote_literal(table),
        quote_literal(file),
        quote_literal(blake3)
    )
}

/// Drops the ledger once the restore finished.
pub fn drop_sql() -> String {
    format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
}
