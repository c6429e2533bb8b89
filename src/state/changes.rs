//! Which source rows a sync run sends: the conditions added to each key
//! range's `SELECT`.
//!
//! A row version carries the id of the transaction that wrote it (`xmin`).
//! The checkpoint holds the horizon of the last snapshot the targets
//! reflect: the oldest transaction of this database still running when it
//! was taken (see `checkpoint::TxidSnapshot::horizon`). Every transaction
//! below it had finished by then, so its writes were sent; every write not
//! yet sent comes from a transaction at or above it, including one that
//! began before the last run, stamped an old `updated_at`, and committed
//! after it (a "late commit"), also from inside a subtransaction. The
//! condition does not look at timestamps at all, so clock skew and
//! application-set times cannot hide a change.
//!
//! Postgres' own snapshot xmin is cluster-wide: one long transaction
//! anywhere (a stuck client, another application's database) would make
//! every row written since it began count as changed, re-sent by every run
//! and forgiven by verify as pending. Transactions of other databases are
//! left out of the horizon; on Postgres 16+ so are this database's that
//! had no subtransaction, whose rows are then matched by their own id
//! (a finer horizon, [`changed_after`]). Why not simply "not visible to the
//! snapshot" (`pg_visible_in_snapshot`)? The snapshot lists top-level
//! transactions only, and a row written in a subtransaction of one in
//! progress would look visible: its late commit would be lost.
//!
//! What it costs: rows of transactions that committed while an older
//! transaction of this database with subtransactions was running are sent
//! again (upserts are idempotent), and the check reads every row header of
//! the table (not its TOASTed vectors) because Postgres has no index on
//! xmin.

use super::checkpoint::Position;
use crate::config::project::{Project, TableMapping};

/// Transactions this far behind the current one are compared as 32-bit
/// ids with a margin before `age()` wraps at 2^31.
const WRAP_MARGIN: u64 = 1 << 24;

/// "Written by a transaction at or after the 64-bit id `horizon`", or
/// `None` (every row) when the horizon is too old for 32-bit `age()` to
/// order it, e.g. after two billion transactions without a sync.
pub fn changed_since(horizon: u64, current_xmax: u64) -> Option<String> {
    if current_xmax.saturating_sub(horizon) >= (1u64 << 31) - WRAP_MARGIN {
        return None;
    }
    // age() is wraparound-aware; a frozen row keeps its raw xmin (9.4+), so
    // VACUUM FREEZE does not hide a recent change.
    Some(format!("age(xmin) <= age('{}'::xid)", horizon & 0xFFFF_FFFF))
}

/// The rows to send after `position`: [`changed_since`] its horizon, or,
/// with a finer horizon, since that one plus the rows of the transactions
/// it lists (at most one per connection of this database, compared as
/// 32-bit ids like `xmin`).
pub fn changed_after(position: &Position, current_xmax: u64) -> Option<String> {
    let Some(f) = position.finer() else { return changed_since(position.xmin(), current_xmax) };
    let since = changed_since(f.xmin, current_xmax)?;
    if f.in_progress.is_empty() {
        return Some(since);
    }
    let ids: Vec<String> = f.in_progress.iter().map(|x| (x & 0xFFFF_FFFF).to_string()).collect();
    Some(format!("({since} OR xmin = ANY ('{{{}}}'::xid[]))", ids.join(",")))
}

/// The rows a key range sends: after the position while the range is at
/// it; a range that a stopped run finished keeps only that run's plain
/// horizon.
pub fn range_changes(horizon: u64, position: &Position, current_xmax: u64) -> Option<String> {
    if horizon == position.xmin() {
        changed_after(position, current_xmax)
    } else {
        changed_since(horizon, current_xmax)
    }
}

/// The mapping entry of a table.
pub fn mapping<'a>(project: &'a Project, schema: &str, table: &str) -> Option<&'a TableMapping> {
    project.tables.iter().find(|m| m.schema == schema && m.table == table)
}

// Which rows are live (soft deletes) is decided for load, sync and verify
// alike in `plan::live`.

/// Joins optional conditions with AND.
pub fn all_of(parts: &[Option<String>]) -> Option<String> {
    let p: Vec<&String> = parts.iter().flatten().collect();
    match p.len() {
        0 => None,
        1 => Some(p[0].clone()),
        _ => Some(p.iter().map(|s| format!("({s})")).collect::<Vec<_>>().join(" AND ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_is_compared_as_a_32_bit_age() {
        assert_eq!(changed_since(26_713, 26_720).as_deref(), Some("age(xmin) <= age('26713'::xid)"));
        // Epoch 1: the low 32 bits.
        let h = (1u64 << 32) + 5;
        assert_eq!(changed_since(h, h + 10).as_deref(), Some("age(xmin) <= age('5'::xid)"));
        assert_eq!(changed_since(10, 10 + (1u64 << 31)), None, "too old to order: every row");
    }

    #[test]
    fn a_finer_horizon_adds_the_transactions_it_lists() {
        use super::super::checkpoint::Finer;
        let at = |finer| Position::Snapshot {
            xmin: 100,
            txid_snapshot: "100:130:100,104,110".into(),
            taken_at: "t".into(),
            wal_lsn: None,
            finer,
        };
        assert_eq!(changed_after(&at(None), 140).as_deref(), Some("age(xmin) <= age('100'::xid)"));
        let finer = Finer { xmin: 110, in_progress: vec![100, (1u64 << 32) + 104] };
        assert_eq!(
            changed_after(&at(Some(finer.clone())), 140).as_deref(),
            Some("(age(xmin) <= age('110'::xid) OR xmin = ANY ('{100,104}'::xid[]))")
        );
        // A range a stopped run finished: its own horizon only.
        assert_eq!(
            range_changes(120, &at(Some(finer)), 140).as_deref(),
            Some("age(xmin) <= age('120'::xid)")
        );
    }

    #[test]
    fn conditions_join() {
        assert_eq!(all_of(&[None, None]), None);
        assert_eq!(all_of(&[Some("a".into()), None]).as_deref(), Some("a"));
        assert_eq!(all_of(&[Some("a".into()), Some("b".into())]).as_deref(), Some("(a) AND (b)"));
    }
}
