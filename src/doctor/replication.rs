//! The checks of what a sync by logical replication needs from the source,
//! and of what replication slots already cost it: the role may create
//! slots (REPLICATION, or superuser), a slot is free, and no logical slot
//! of this database holds back more WAL than [`RETAINED_WAL_WARNING`]
//! (a slot nobody reads keeps every WAL segment since its position: the
//! source's disk fills until the slot is dropped; Postgres's "Replication
//! Slots" docs warn of exactly this). `wal_level` itself is read with the
//! server's settings ([`super::postgres`]).

use sqlx::Row as _;

use super::{Area, Check};
use crate::error::Error;
use crate::source::SourceConn;

/// A slot holding back more WAL than this gets a warning.
pub const RETAINED_WAL_WARNING: i64 = 1 << 30;

/// A logical slot of this database, as `pg_replication_slots` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub name: String,
    pub plugin: String,
    pub active: bool,
    /// WAL bytes kept for it (None on a standby, or when it has no position).
    pub retained: Option<i64>,
    /// `wal_status` (Postgres 13+): reserved, extended, unreserved, lost.
    pub wal_status: Option<String>,
}

pub async fn checks(conn: &mut SourceConn) -> crate::Result<Vec<Check>> {
    let row = sqlx::query(
        "SELECT r.rolsuper, r.rolreplication, current_setting('max_replication_slots')::int4,
                (SELECT count(*)::int4 FROM pg_replication_slots)
           FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db("reading the role's replication privilege"))?;
    let (superuser, replication): (bool, bool) = (row.get(0), row.get(1));
    let (max_slots, used): (i32, i32) = (row.get(2), row.get(3));
    let slots = logical_slots(conn).await?;
    Ok(vec![privilege(superuser, replication), room(max_slots, used), retained(&slots, RETAINED_WAL_WARNING)])
}

async fn logical_slots(conn: &mut SourceConn) -> crate::Result<Vec<Slot>> {
    // wal_status is Postgres 13+; pg_current_wal_lsn() fails on a standby.
    let status = match sqlx::query_scalar::<_, i32>("SELECT current_setting('server_version_num')::int4")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db("reading the server version"))?
    {
        v if v >= 130_000 => "s.wal_status::text",
        _ => "NULL::text",
    };
    let sql = format!(
        "SELECT s.slot_name::text, coalesce(s.plugin::text, ''), s.active,
                CASE WHEN pg_is_in_recovery() OR s.restart_lsn IS NULL THEN NULL
                     ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::int8 END,
                {status}
           FROM pg_replication_slots s
          WHERE s.slot_type = 'logical' AND s.database = current_database()
          ORDER BY 1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("reading the replication slots"))?;
    Ok(rows
        .iter()
        .map(|r| Slot {
            name: r.get(0),
            plugin: r.get(1),
            active: r.get(2),
            retained: r.get(3),
            wal_status: r.get(4),
        })
        .collect())
}

fn privilege(superuser: bool, replication: bool) -> Check {
    let c = Check::named(
        "postgres.replication_privilege",
        Area::Postgres,
        "the role may create replication slots (for syncs by logical replication)",
    );
    match (superuser, replication) {
        (true, _) => c.info("yes: superuser"),
        (false, true) => c.info("yes: REPLICATION"),
        (false, false) => c.info(
            "no: `pgflare sync --once/--every` finds changes by transaction id and does not need it; \
             `sync --follow` needs ALTER ROLE <this role> REPLICATION (on Supabase the postgres role has it)",
        ),
    }
}

fn room(max: i32, used: i32) -> Check {
    let c = Check::named("postgres.replication_slot_room", Area::Postgres, "a replication slot is free");
    if used < max {
        c.info(format!("{used} of max_replication_slots = {max} in use"))
    } else {
        c.info(format!(
            "all {max} replication slots are in use: `sync --follow` needs max_replication_slots raised \
             (a restart) or an unused slot dropped"
        ))
    }
}

/// Warns of every logical slot that holds back more than `limit` bytes of
/// WAL or has lost its WAL.
pub fn retained(slots: &[Slot], limit: i64) -> Check {
    let c = Check::named(
        "postgres.replication_slots",
        Area::Postgres,
        "no replication slot holds back the source's WAL",
    );
    if slots.is_empty() {
        return c.ok("no logical replication slot in this database");
    }
    let shown = |s: &Slot| {
        let kept = s.retained.map(human).unwrap_or_else(|| "unknown".into());
        let state = if s.active { "active" } else { "inactive" };
        format!("{} ({}, {state}, keeps {kept} of WAL)", s.name, s.plugin)
    };
    let heavy: Vec<&Slot> = slots
        .iter()
        .filter(|s| s.retained.is_some_and(|r| r > limit) || s.wal_status.as_deref() == Some("lost"))
        .collect();
    let all: Vec<String> = slots.iter().map(shown).collect();
    if heavy.is_empty() {
        return c.ok(all.join("; "));
    }
    let names: Vec<String> = heavy.iter().map(|s| shown(s)).collect();
    c.warning(
        format!(
            "{} hold back more than {} of WAL or lost it: a slot nobody reads fills the source's disk",
            names.join("; "),
            human(limit)
        ),
        "start the slot's reader again, or drop the slot: SELECT pg_drop_replication_slot('<name>')",
    )
}

fn human(bytes: i64) -> String {
    indicatif::HumanBytes(bytes.max(0) as u64).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn slot(name: &str, active: bool, retained: Option<i64>, status: Option<&str>) -> Slot {
        Slot {
            name: name.into(),
            plugin: "pgoutput".into(),
            active,
            retained,
            wal_status: status.map(str::to_string),
        }
    }

    #[test]
    fn a_slot_over_the_limit_or_lost_is_warned_of_by_name_with_the_fix() {
        assert_eq!(retained(&[], 100).status, Status::Ok);
        let fine = [slot("a", true, Some(100), Some("reserved"))];
        assert_eq!(retained(&fine, 100).status, Status::Ok, "at the limit");
        let c = retained(&[slot("a", true, Some(10), None), slot("stale", false, Some(101), None)], 100);
        assert_eq!(c.status, Status::Warning);
        assert!(
            c.found.contains("stale (pgoutput, inactive, keeps 101 B of WAL)") && !c.found.contains("a ("),
            "{}",
            c.found
        );
        assert!(c.fix.as_deref().is_some_and(|f| f.contains("pg_drop_replication_slot")));
        let lost = retained(&[slot("gone", false, None, Some("lost"))], 100);
        assert_eq!(lost.status, Status::Warning, "{}", lost.found);
    }
}
