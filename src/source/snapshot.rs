//! One consistent point in time shared by every worker, as `pg_dump -j`
//! does it: the coordinator opens a REPEATABLE READ transaction and exports
//! its snapshot; each worker opens its own transaction and adopts it with
//! `SET TRANSACTION SNAPSHOT`. The coordinator's transaction stays open
//! until the job is done, which keeps the snapshot importable.

use super::conn::SourceConn;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::connect::Source;
use crate::error::{Error, Result};

/// Where the data was read, recorded in manifests and reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// `pg_export_snapshot()`; valid only while the job runs.
    pub id: String,
    /// `pg_current_snapshot()`: xmin:xmax:xip list, for reasoning about
    /// which transactions the data includes.
    pub txid_snapshot: String,
    /// The ids of `txid_snapshot`'s in-progress list that are transactions
    /// of other databases of the cluster: they cannot have written this
    /// database's rows (see [`super::in_progress`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_progress_elsewhere: Vec<u64>,
    /// Those that are this database's and had no subtransaction (Postgres
    /// 16+), so that their rows carry their own id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_progress_without_subtransactions: Vec<u64>,
    /// `pg_current_wal_lsn()` when the snapshot was taken (None on a standby).
    pub wal_lsn: Option<String>,
    /// Server clock at the snapshot, UTC.
    pub taken_at: String,
    pub server_version: String,
}

/// The coordinator's open transaction holding the exported snapshot.
pub struct Snapshot {
    conn: SourceConn,
    pub info: SnapshotInfo,
}

const SESSION_SETUP: &str =
    "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET lock_timeout = 0";

impl Snapshot {
    pub async fn export(source: &Source) -> Result<Snapshot> {
        Self::export_from(source, None).await
    }

    /// [`Snapshot::export`] of the data as snapshot `import` sees it (a
    /// replication slot's exported snapshot, see
    /// [`super::wal::slot::create_slot`]): the coordinator adopts it and
    /// exports it again, so that the workers join a snapshot that lives as
    /// long as the coordinator's transaction, not the slot's session.
    pub async fn export_from(source: &Source, import: Option<&str>) -> Result<Snapshot> {
        let mut conn = source.connect().await?;
        sqlx::raw_sql(SESSION_SETUP).execute(&mut conn).await.map_err(Error::db("setting up the session"))?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(Error::db("starting the snapshot transaction"))?;
        if let Some(id) = import {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(Error::Internal(format!("unexpected snapshot id {id:?}")));
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{id}'")))
                .execute(&mut conn)
                .await
                .map_err(Error::db("adopting the replication slot's snapshot"))?;
        }
        let row = sqlx::query(
            "SELECT pg_export_snapshot(), pg_current_snapshot()::text,
                    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
                    to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    current_setting('server_version')",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(Error::db("exporting a snapshot (pg_export_snapshot)"))?;
        let txid_snapshot: String = row.get(1);
        // After the snapshot: the first statement above fixed it.
        let placed = super::in_progress::place(&mut conn, &txid_snapshot).await?;
        let info = SnapshotInfo {
            id: row.get(0),
            txid_snapshot,
            in_progress_elsewhere: placed.elsewhere,
            in_progress_without_subtransactions: placed.without_subtransactions,
            wal_lsn: row.get(2),
            taken_at: row.get(3),
            server_version: row.get(4),
        };
        Ok(Snapshot { conn, info })
    }

    /// The coordinator's connection, inside the snapshot (for planning).
    pub fn conn(&mut self) -> &mut SourceConn {
        &mut self.conn
    }

    /// Ends the coordinator's transaction.
    pub async fn release(mut self) -> Result<()> {
        sqlx::raw_sql("COMMIT")
            .execute(&mut self.conn)
            .await
            .map_err(Error::db("ending the snapshot transaction"))?;
        Ok(())
    }
}

/// Opens a worker connection that sees exactly the snapshot `id`.
pub async fn join(source: &Source, id: &str) -> Result<SourceConn> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::Internal(format!("unexpected snapshot id {id:?}")));
    }
    let mut conn = source.connect().await?;
    let sql = format!(
        "{SESSION_SETUP}; BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.map_err(|e| Error::Source {
        message: format!("a worker could not adopt snapshot {id}: {}", crate::error::pg_message(&e)),
        hint: "connect directly (Supabase: port 5432), not through a transaction-mode pooler (port 6543), \
               which sends each statement to a different server connection"
            .into(),
    })?;
    Ok(conn)
}
