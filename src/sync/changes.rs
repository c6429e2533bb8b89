//! Which source rows a sync run sends: the conditions added to each key
//! range's `SELECT`.
//!
//! A row version carries the id of the transaction that wrote it (`xmin`).
//! The checkpoint holds the horizon of the last snapshot the targets
//! reflect: the oldest transaction still running when it was taken. Every
//! transaction below it had finished by then, so its writes were sent;
//! every write not yet sent comes from a transaction at or above it,
//! including one that began before the last run, stamped an old
//! `updated_at`, and committed after it (a "late commit"). The condition
//! does not look at timestamps at all, so clock skew and application-set
//! times cannot hide a change. What it costs: transactions that were
//! running at the last snapshot and committed before it are sent again
//! (upserts are idempotent), and the check reads every row header of the
//! table (not its TOASTed vectors) because Postgres has no index on xmin.

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

/// The mapping entry of a table.
pub fn mapping<'a>(project: &'a Project, schema: &str, table: &str) -> Option<&'a TableMapping> {
    project.tables.iter().find(|m| m.schema == schema && m.table == table)
}

// Which rows are live (soft deletes) is decided for load, sync and verify
// alike in `source::live`.

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
    fn conditions_join() {
        assert_eq!(all_of(&[None, None]), None);
        assert_eq!(all_of(&[Some("a".into()), None]).as_deref(), Some("a"));
        assert_eq!(all_of(&[Some("a".into()), Some("b".into())]).as_deref(), Some("(a) AND (b)"));
    }
}
