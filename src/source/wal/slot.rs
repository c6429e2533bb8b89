//! The replication slot and publication `sync --follow` reads through, and
//! the checks before either is created: the server writes logical WAL
//! (`wal_level`), the role may replicate, every table carries its key in
//! the WAL (replica identity), and the URL is not a pooler (PgBouncer and
//! Supavisor do not pass the replication protocol through).
//!
//! pgflare names both after `--slot` and owns them: the publication's
//! table list is set to the configured tables each time the follower
//! starts, and `sync --drop-slot` removes both. A publication published
//! to a table without a replica identity would make Postgres refuse that
//! table's UPDATEs and DELETEs *in the application*, so such a table is
//! refused before anything is created.

use std::str::FromStr;
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationConfig, SslMode, TlsConfig};
use sqlx::Row as _;

use super::super::conn::SourceConn;
use super::super::connect::Source;
use crate::batch::{quote_ident, TableSpec};
use crate::error::{Error, Result};

/// The longest name Postgres keeps (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// Checks `--slot`: Postgres allows lower-case letters, digits and `_`.
pub fn check_slot_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(Error::Config {
            setting: "--slot".into(),
            message: format!(
                "{name:?} is not a replication slot name: use 1 to {MAX_NAME} lower-case letters, digits \
                 and underscores (e.g. pgflare_d1)"
            ),
        }),
    }
}

/// A slot as `pg_replication_slots` shows it.
#[derive(Clone, Debug)]
pub struct SlotState {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub confirmed_flush: Option<Lsn>,
    /// Backend pid of the session streaming from it, if any.
    pub active_pid: Option<i32>,
    /// WAL the slot keeps on the server's disk, in bytes.
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost` (Postgres 13+).
    pub wal_status: Option<String>,
}

pub async fn slot_state(conn: &mut SourceConn, slot: &str) -> Result<Option<SlotState>> {
    let row = sqlx::query(
        "SELECT plugin::text, database::text, confirmed_flush_lsn::text, active_pid, \
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(Error::db(format!("reading replication slot {slot}")))?;
    Ok(row.map(|r| SlotState {
        plugin: r.get(0),
        database: r.get(1),
        confirmed_flush: r.get::<Option<String>, _>(2).and_then(|s| Lsn::parse(&s).ok()),
        active_pid: r.get(3),
        retained_bytes: r.get(4),
        wal_status: r.get(5),
    }))
}

/// Refuses what would make following fail or harm the source: a pooler,
/// `wal_level` below logical, a role without REPLICATION, and tables whose
/// updates and deletes would not carry their key.
pub async fn check_ready(src: &Source, conn: &mut SourceConn, tables: &[&TableSpec]) -> Result<()> {
    refuse_pooler(src)?;
    let row = sqlx::query(
        "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db("reading wal_level and the role's REPLICATION attribute"))?;
    let (wal_level, may): (String, bool) = (row.get(0), row.get(1));
    if wal_level != "logical" {
        return Err(Error::Source {
            message: format!("the source's wal_level is {wal_level}: logical replication needs `logical`"),
            hint:
                "ALTER SYSTEM SET wal_level = logical; then restart Postgres (Supabase sets it already), or \
                   sync by polling with --once / --every"
                    .into(),
        });
    }
    if !may {
        return Err(Error::Source {
            message: "the role of the URL may not replicate (no REPLICATION attribute)".into(),
            hint:
                "ALTER ROLE <user> WITH REPLICATION (Supabase's `postgres` role has it), or sync by polling \
                   with --once / --every"
                    .into(),
        });
    }
    for t in tables {
        check_identity(conn, t).await?;
    }
    Ok(())
}

/// A table's UPDATEs and DELETEs must carry its primary key: replica
/// identity DEFAULT with a primary key, FULL, or an index holding the key.
async fn check_identity(conn: &mut SourceConn, t: &TableSpec) -> Result<()> {
    let row = sqlx::query(
        "SELECT c.relreplident::text, \
                (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_index i \
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                  WHERE i.indrelid = c.oid AND i.indisreplident) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(&t.schema)
    .bind(&t.name)
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the replica identity of {}", t.qualified())))?;
    let (ident, index): (String, Option<Vec<String>>) = (row.get(0), row.get(1));
    let refuse = |why: String| {
        Error::Source {
        message: format!("table {}: {why}, so its UPDATEs and DELETEs cannot be followed", t.qualified()),
        hint: format!(
            "give it a primary key, or ALTER TABLE {} REPLICA IDENTITY FULL (or USING INDEX on a unique index \
             holding the key); a publication on a table without one makes Postgres refuse the application's \
             UPDATEs and DELETEs, so pgflare created nothing. Or sync by polling with --once / --every",
            t.sql_name()
        ),
    }
    };
    match ident.as_str() {
        "d" if t.primary_key.is_empty() => {
            Err(refuse("has no primary key and replica identity DEFAULT".into()))
        }
        "n" => Err(refuse("has REPLICA IDENTITY NOTHING".into())),
        "i" if !t.primary_key.iter().all(|k| index.as_ref().is_some_and(|ix| ix.contains(k))) => {
            Err(refuse(format!(
                "has a replica identity index ({}) without its primary key",
                index.unwrap_or_default().join(", ")
            )))
        }
        _ if t.primary_key.is_empty() => Err(refuse("has no primary key to apply changes by".into())),
        _ => Ok(()),
    }
}

/// Refuses a URL that points at a pooler, before anything connects.
pub fn refuse_pooler(src: &Source) -> Result<()> {
    match pooler(src) {
        None => Ok(()),
        Some(why) => Err(Error::Source {
            message: format!("sync --follow needs the replication protocol, and {} {why}", src.server()),
            hint: "use the direct connection (on Supabase: db.<project>.supabase.co port 5432, which needs \
                   IPv6 or the IPv4 add-on), or sync by polling with --once / --every, which works through \
                   poolers"
                .into(),
        }),
    }
}

/// Why the URL looks like a pooler, if it does: Supabase's pooler host or
/// its transaction-mode port.
fn pooler(src: &Source) -> Option<&'static str> {
    use super::super::connect::{SUPABASE_POOLER_HOST, SUPABASE_TRANSACTION_PORT};
    let e = src.endpoint();
    if e.host.to_ascii_lowercase().ends_with(SUPABASE_POOLER_HOST) {
        Some("is Supabase's pooler (Supavisor)")
    } else if !e.socket && e.port == SUPABASE_TRANSACTION_PORT {
        Some("is on port 6543, Supabase's transaction pooler")
    } else {
        None
    }
}

/// Whether publication `name` exists.
pub async fn publication_exists(conn: &mut SourceConn, name: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db(format!("looking for publication {name}")))
}

/// Creates the publication, or sets its tables to `tables` (pgflare owns it).
pub async fn ensure_publication(conn: &mut SourceConn, name: &str, tables: &[&TableSpec]) -> Result<()> {
    let list = tables.iter().map(|t| t.sql_name()).collect::<Vec<_>>().join(", ");
    let exists = publication_exists(conn, name).await?;
    let sql = match exists {
        true => format!("ALTER PUBLICATION {} SET TABLE {list}", quote_ident(name)),
        false => format!(
            "CREATE PUBLICATION {} FOR TABLE {list} WITH (publish = 'insert, update, delete, truncate')",
            quote_ident(name)
        ),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(Error::db(format!("{} publication {name}", if exists { "updating" } else { "creating" })))?;
    Ok(())
}

/// What `CREATE_REPLICATION_SLOT` answered.
#[derive(Clone, Debug)]
pub struct CreatedSlot {
    pub consistent_point: Lsn,
    /// The exported snapshot: the data as of `consistent_point`, importable
    /// while the session that created the slot stays open and idle.
    pub snapshot: Option<String>,
}

/// The replication connection's settings for `slot` (the URL's host,
/// port, user, password, database and TLS mode).
pub fn replication_config(src: &Source, slot: &str, publication: &str) -> Result<ReplicationConfig> {
    let url = url::Url::parse(src.raw_url()).map_err(|e| Error::Config {
        setting: "--database-url".into(),
        message: format!("cannot read the URL for replication: {e}"),
    })?;
    let dec = |s: &str| percent_decode(s);
    let query = |k: &str| url.query_pairs().find(|(q, _)| q == k).map(|(_, v)| v.into_owned());
    let host = query("host").unwrap_or_else(|| url.host_str().unwrap_or("localhost").to_string());
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = query("port").and_then(|p| p.parse().ok()).or(url.port()).unwrap_or(5432);
    let user = match url.username() {
        "" => query("user").unwrap_or_else(|| "postgres".into()),
        u => dec(u),
    };
    let password = url.password().map(dec).or_else(|| query("password")).unwrap_or_default();
    let database = match url.path().trim_start_matches('/') {
        "" => query("dbname").unwrap_or_else(|| user.clone()),
        d => dec(d),
    };
    let ca = query("sslrootcert").map(std::path::PathBuf::from);
    let mode = query("sslmode").unwrap_or_else(|| "prefer".into());
    let mut tls = match mode.as_str() {
        "disable" | "allow" => TlsConfig::disabled(),
        "require" => TlsConfig::require(),
        "verify-ca" => TlsConfig::verify_ca(ca),
        "verify-full" => TlsConfig::verify_full(ca),
        _ => TlsConfig { mode: SslMode::Prefer, ..TlsConfig::disabled() },
    };
    if host.starts_with('/') {
        tls = TlsConfig::disabled();
    }
    Ok(ReplicationConfig::new(host, user, password, database, slot, publication)
        .with_port(port)
        .with_tls(tls)
        .with_application_name("pgflare follow")
        .with_status_interval(Duration::from_secs(2))
        .with_wakeup_interval(Duration::from_secs(1)))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Creates `slot` (pgoutput) on a replication session; with `export`, the
/// session is returned open so that its snapshot stays importable (drop it
/// once every reader imported the snapshot).
pub async fn create_slot(
    cfg: ReplicationConfig,
    wait: Duration,
    export: bool,
) -> Result<(CreatedSlot, pgwire_replication::ReplicationClient)> {
    let slot = cfg.slot.clone();
    let failed = |e: pgwire_replication::PgWireError| {
        replication_error(&format!("creating replication slot {slot}"), e)
    };
    let mut client = bounded(
        wait,
        "opening a replication connection",
        pgwire_replication::ReplicationClient::connect_gated(cfg),
    )
    .await?
    .map_err(failed)?;
    // The form Postgres 10 to 18 all accept: 15 added a parenthesised
    // option list and keeps this one "for compatibility" (docs,
    // protocol-replication.html, CREATE_REPLICATION_SLOT). Its answer's
    // columns: slot_name, consistent_point, snapshot_name, output_plugin.
    let sql = format!(
        "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}",
        quote_ident(&slot),
        if export { "EXPORT_SNAPSHOT" } else { "NOEXPORT_SNAPSHOT" }
    );
    let rows =
        bounded(wait, "creating the replication slot", client.simple_query(&sql)).await?.map_err(failed)?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("CREATE_REPLICATION_SLOT returned no row".into()))?;
    let text =
        |i: usize| row.get(i).and_then(|v| v.as_ref()).map(|b| String::from_utf8_lossy(b).into_owned());
    let point = text(1)
        .ok_or_else(|| Error::Internal("CREATE_REPLICATION_SLOT returned no consistent point".into()))?;
    let consistent_point =
        Lsn::parse(&point).map_err(|e| Error::Internal(format!("consistent point {point:?}: {e}")))?;
    Ok((CreatedSlot { consistent_point, snapshot: text(2) }, client))
}

/// Drops the slot (if it exists and no session streams from it) and the
/// publication. Returns what it dropped.
pub async fn drop_slot(conn: &mut SourceConn, slot: &str) -> Result<Vec<String>> {
    let mut dropped = Vec::new();
    if let Some(s) = slot_state(conn, slot).await? {
        if let Some(pid) = s.active_pid {
            return Err(Error::Source {
                message: format!(
                    "replication slot {slot} is in use by backend pid {pid} (a running sync --follow)"
                ),
                hint: "stop the follower first (SIGTERM), then drop the slot".into(),
            });
        }
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(slot)
            .execute(&mut *conn)
            .await
            .map_err(Error::db(format!("dropping replication slot {slot}")))?;
        dropped.push(format!("replication slot {slot}"));
    }
    if publication_exists(conn, slot).await? {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP PUBLICATION {}", quote_ident(slot))))
            .execute(&mut *conn)
            .await
            .map_err(Error::db(format!("dropping publication {slot}")))?;
        dropped.push(format!("publication {slot}"));
    }
    Ok(dropped)
}

/// A replication-protocol failure as pgflare's error: what was being done
/// and the server's words (the crate's text never holds the password).
pub fn replication_error(doing: &str, e: pgwire_replication::PgWireError) -> Error {
    Error::Source {
        message: format!("{doing}: {}", crate::redact::redact_text(&e.to_string())),
        hint:
            "check that the URL is the direct connection (not a pooler), that the role has REPLICATION, and \
               that pg_hba.conf allows `replication` connections from this host"
                .into(),
    }
}

/// `fut` within `wait`, or an error naming what did not answer.
pub async fn bounded<T>(wait: Duration, doing: &str, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(wait, fut).await.map_err(|_| Error::Source {
        message: format!("no answer from Postgres within {} while {doing}", crate::timeouts::human(wait)),
        hint: "check the host and port (a firewall that drops packets looks like this); raise --connect-timeout \
               or --statement-timeout for a slow network"
            .into(),
    })
}

/// An LSN as Postgres writes it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Result<Lsn> {
    Lsn::from_str(s).map_err(|e| Error::Internal(format!("LSN {s:?}: {e}")))
}
