//! Which source rows a sync run sends: the conditions added to each key
//! range's `SELECT`.
//!
//! A row version carries the id of the transaction that wrote it (`xmin`).
//! The checkpoint holds the snapshot the targets reflect
//! (`pg_current_snapshot()`: `xmin:xmax:in-progress`). A row still to send
//! is one whose writing transaction that snapshot did not see: at or above
//! its `xmax`, or in its in-progress list. That includes a transaction
//! that began before the last run, stamped an old `updated_at`, and
//! committed after it (a "late commit"), and nothing the snapshot saw:
//! the snapshot's `xmin` is the oldest transaction running in the whole
//! cluster, so a long transaction in any database (an analytics query, a
//! stuck session) holds it back while everything else commits, and a test
//! of "at or above `xmin`" alone would send (and make verify forgive)
//! every row written since that transaction began. The condition does not
//! look at timestamps, so clock skew and application-set times cannot
//! hide a change. What it costs: the check reads every row header of the
//! table (not its TOASTed vectors) because Postgres has no index on xmin;
//! rows below the snapshot's `xmin` are ruled out by a cheap 32-bit test
//! first, and the exact one (`pg_visible_in_snapshot`, a binary search of
//! the in-progress list) runs only on the rest.

use super::checkpoint::{Position, TxidSnapshot};
use crate::batch::{quote_ident, ColumnSpec};
use crate::config::project::{Project, TableMapping};
use crate::error::Result;
use crate::typemap::Kind;

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

/// "Written by a transaction the snapshot `seen` did not see", for rows
/// read at a snapshot whose xmax is `current_xmax`; `None` (every row)
/// when `seen` is too old to order (see [`changed_since`]).
///
/// The 32-bit `xmin` of a row becomes its 64-bit id (an `xid8`, which
/// `pg_visible_in_snapshot` takes) by counting back from `current_xmax`:
/// the row is visible to the current snapshot, so its transaction is
/// below `current_xmax` and less than 2^31 behind it (Postgres freezes or
/// stops before that); `age(xmin)` already orders it the same way.
pub fn unseen_by(seen: &TxidSnapshot, current_xmax: u64) -> Option<String> {
    let coarse = changed_since(seen.xmin, current_xmax)?;
    Some(format!(
        "{coarse} AND NOT pg_visible_in_snapshot({}::text::xid8, '{}'::pg_snapshot)",
        full_xid("xmin", current_xmax),
        seen.to_text()
    ))
}

/// The 64-bit id (as a bigint) of the 32-bit transaction id in `column`,
/// taken as the latest id at or below `current_xmax` with those low 32
/// bits (never below 0).
pub fn full_xid(column: &str, current_xmax: u64) -> String {
    let low = current_xmax & 0xFFFF_FFFF;
    format!("greatest(0, {current_xmax} - (({low} - {column}::text::bigint) & 4294967295))")
}

/// The rows a key range sends. A range still at the checkpoint's position
/// sends what the position's snapshot did not see; one that a stopped run
/// finished kept only that run's horizon (its snapshot's xmin), and sends
/// everything at or above it: more than needed, never less.
pub fn range_changes(horizon: u64, position: &Position, current_xmax: u64) -> Result<Option<String>> {
    if horizon == position.xmin() {
        Ok(unseen_by(&position.seen()?, current_xmax))
    } else {
        Ok(changed_since(horizon, current_xmax))
    }
}

/// The mapping entry of a table.
pub fn mapping<'a>(project: &'a Project, schema: &str, table: &str) -> Option<&'a TableMapping> {
    project.tables.iter().find(|m| m.schema == schema && m.table == table)
}

/// The condition a soft-deleted row meets: `true` in a boolean column,
/// any value in another (e.g. `deleted_at`).
pub fn deleted_condition(col: &ColumnSpec) -> String {
    match (col.ty.kind, col.ty.array) {
        (Kind::Bool, false) => format!("{} IS TRUE", quote_ident(&col.name)),
        _ => format!("{} IS NOT NULL", quote_ident(&col.name)),
    }
}

/// The condition a live row meets (the negation of [`deleted_condition`]).
pub fn live_condition(col: &ColumnSpec) -> String {
    match (col.ty.kind, col.ty.array) {
        (Kind::Bool, false) => format!("{} IS NOT TRUE", quote_ident(&col.name)),
        _ => format!("{} IS NULL", quote_ident(&col.name)),
    }
}

/// The live-rows condition of a table with `soft_delete` configured; load,
/// verify and sync leave soft-deleted rows out of the targets alike.
pub fn live_filter(project: &Project, info: &crate::source::TableInfo) -> Option<String> {
    let m = mapping(project, &info.spec.schema, &info.spec.name)?;
    let col = m.soft_delete.as_deref().and_then(|c| info.spec.column(c))?;
    Some(live_condition(col))
}

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
    fn what_the_snapshot_did_not_see_is_tested_exactly_after_the_cheap_test() {
        let seen = TxidSnapshot { xmin: 100, xmax: 110, xip: vec![100, 104] };
        let c = unseen_by(&seen, 120).expect("recent");
        assert_eq!(
            c,
            "age(xmin) <= age('100'::xid) AND NOT pg_visible_in_snapshot(greatest(0, 120 - ((120 - \
             xmin::text::bigint) & 4294967295))::text::xid8, '100:110:100,104'::pg_snapshot)"
        );
        assert_eq!(unseen_by(&seen, 100 + (1u64 << 31)), None, "too old to order: every row");
    }

    #[test]
    fn conditions_join() {
        assert_eq!(all_of(&[None, None]), None);
        assert_eq!(all_of(&[Some("a".into()), None]).as_deref(), Some("a"));
        assert_eq!(all_of(&[Some("a".into()), Some("b".into())]).as_deref(), Some("(a) AND (b)"));
    }
}
