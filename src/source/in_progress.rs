//! What the transactions in progress at a snapshot were, as far as any
//! role can learn it: sync's horizon (see `sync::checkpoint`) leaves out
//! those of other databases, which cannot have written this database's
//! rows, and on Postgres 16+ treats exactly those of this database that
//! had no subtransaction, whose rows then carry their own id.
//!
//! Read inside the snapshot's transaction after the snapshot was taken
//! (the transaction's first statement fixes it), from the backend status
//! a transaction caches at its first look: `pg_stat_activity`'s
//! `backend_xid` and database, and `pg_stat_get_backend_subxact`, shown to
//! every role; prepared transactions from `pg_prepared_xacts`. What this
//! can get wrong only ever makes the horizon lower (more rows sent): a
//! transaction that ended before the read is not found and counts as this
//! database's, with subtransactions; subtransactions are counted as they
//! stand after the snapshot, and one that ended since then either
//! committed (it stays counted until its transaction ends) or rolled back
//! (its rows are dead).

use super::conn::SourceConn;
use sqlx::Row as _;

use crate::error::{Error, Result};

/// The transactions of a snapshot's in-progress list that pgflare placed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    /// Other databases' transactions.
    pub elsewhere: Vec<u64>,
    /// This database's transactions that had no subtransaction.
    pub without_subtransactions: Vec<u64>,
}

/// Backends with a transaction id: (xid, of another database, known to
/// have no subtransaction).
const BEFORE_16: &str =
    "SELECT backend_xid::text::bigint, datname IS NOT NULL AND datname <> current_database(), false \
     FROM pg_stat_activity WHERE backend_xid IS NOT NULL";
const FROM_16: &str = "SELECT a.backend_xid::text::bigint, \
            a.datname IS NOT NULL AND a.datname <> current_database(), \
            x.subxact_count = 0 AND NOT x.subxact_overflowed \
     FROM pg_stat_get_backend_idset() AS b(id) \
     JOIN pg_stat_activity AS a ON a.pid = pg_stat_get_backend_pid(b.id) \
     CROSS JOIN LATERAL pg_stat_get_backend_subxact(b.id) AS x \
     WHERE a.backend_xid IS NOT NULL";
/// Prepared transactions keep their subtransactions: never "without".
const PREPARED: &str =
    " UNION ALL SELECT transaction::text::bigint, database <> current_database(), false FROM pg_prepared_xacts";

/// Places the in-progress transactions of `txid_snapshot`, the snapshot of
/// the transaction `conn` is in.
pub async fn place(conn: &mut SourceConn, txid_snapshot: &str) -> Result<Placed> {
    // The function exists from Postgres 16 on, and a role may lack EXECUTE.
    let subxacts: bool = sqlx::query_scalar(
        "SELECT coalesce(has_function_privilege(\
         to_regprocedure('pg_catalog.pg_stat_get_backend_subxact(integer)'), 'EXECUTE'), false)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db("looking for pg_stat_get_backend_subxact"))?;
    place_with(conn, txid_snapshot, subxacts).await
}

/// [`place`], asking about subtransactions or not (as before Postgres 16).
pub async fn place_with(conn: &mut SourceConn, txid_snapshot: &str, subxacts: bool) -> Result<Placed> {
    let sql = format!("{}{PREPARED}", if subxacts { FROM_16 } else { BEFORE_16 });
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db("reading the transactions in progress (pg_stat_activity)"))?;
    let mut seen: Vec<(i64, bool, bool)> = Vec::with_capacity(rows.len());
    for r in rows {
        let (xid, elsewhere, flat): (Option<i64>, Option<bool>, Option<bool>) =
            (r.get(0), r.get(1), r.get(2));
        if let Some(xid) = xid {
            seen.push((xid, elsewhere.unwrap_or(false), flat.unwrap_or(false)));
        }
    }
    Ok(placed(txid_snapshot, &seen))
}

/// Matches the 32-bit ids the status views show to the snapshot text's
/// 64-bit in-progress list by their low 32 bits (running transactions are
/// less than 2^31 apart, so the match is unique).
fn placed(txid_snapshot: &str, seen: &[(i64, bool, bool)]) -> Placed {
    let xip = txid_snapshot.rsplit(':').next().unwrap_or("");
    let mut out = Placed::default();
    for x in xip.split(',').filter_map(|x| x.parse::<u64>().ok()) {
        let low = (x & 0xFFFF_FFFF) as i64;
        match seen.iter().find(|(xid, _, _)| *xid == low) {
            Some((_, true, _)) => out.elsewhere.push(x),
            Some((_, false, true)) => out.without_subtransactions.push(x),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_progress_transactions_are_matched_by_their_low_32_bits() {
        let e = 1u64 << 32;
        let text = format!("{}:{}:{},{},{},{}", e + 5, e + 20, e + 5, e + 9, e + 12, e + 15);
        let seen = [(9, true, false), (12, false, true), (15, false, false), (77, true, false)];
        let p = placed(&text, &seen);
        assert_eq!(p.elsewhere, vec![e + 9]);
        assert_eq!(p.without_subtransactions, vec![e + 12]);
        assert_eq!(placed("5:5:", &[(5, true, false)]), Placed::default());
    }
}
