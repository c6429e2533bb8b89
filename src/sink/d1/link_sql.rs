//! The SQL of links (see [`super::links`]): the link step's update, which
//! sets the link columns of many rows from a multi-row `VALUES` list,
//!
//! ```sql
//! UPDATE "t" SET "p" = pgflare_v.column2 FROM (VALUES (1, 7), (2, 7)) AS pgflare_v
//!  WHERE "t"."id" = pgflare_v.column1
//!    AND (pgflare_v.column2 IS NULL OR EXISTS (SELECT 1 FROM "t" AS pgflare_p WHERE pgflare_p."id" = pgflare_v.column2));
//! ```
//!
//! packed under D1's statement limit (no bound parameters, no OR chain
//! that grows with the rows: the expression depth stays the same for any
//! number of rows); the guard leaves a link whose parent is not in D1 as
//! it is (its placeholder) instead of failing the request, and the same
//! guard, negated, names those rows. Before rows are deleted, the rows
//! that point at them get their placeholder back ([`unlink_sql`]), so a
//! subtree can be deleted in any order over any number of requests.

use super::links::{Link, Placeholder};
use crate::batch::quote_ident;
use crate::error::{Error, Result};

/// Alias of the `VALUES` list; not a name a user table is likely to have
/// (pgflare's own tables start with `pgflare_`).
const V: &str = "pgflare_v";
const P: &str = "pgflare_p";

/// SQL values (tuple items) per update statement. D1 caps a statement's
/// VDBE program at 25,000 instructions (workerd's `sqlite3_limit` of
/// `SQLITE_LIMIT_VDBE_OP`, see /work/shared/reference/cloudflare.md), and a
/// `VALUES` row of the update or its check costs about 2.5 instructions
/// per value (`EXPLAIN` on SQLite 3.40: 5,066 instructions for 1,000
/// two-value rows, 12,039 for 2,000 three-value rows): 5,000 values stay
/// far below, where a full 100,000-byte statement of small keys would not.
pub const MAX_VALUES: usize = 5_000;

/// One update statement and how many rows it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStatement {
    pub sql: String,
    /// The rows it sets (the VALUES tuples).
    pub rows: u64,
    /// The tuples alone (`(..),(..)`), for the check that names rows left out.
    values: std::ops::Range<usize>,
}

impl LinkStatement {
    pub fn values(&self) -> &str {
        &self.sql[self.values.clone()]
    }
}

/// The fixed parts of one link's statements.
#[derive(Clone, Debug)]
pub struct LinkSql {
    /// `UPDATE "t" SET ... FROM (VALUES `
    update_head: String,
    /// `) AS v WHERE <key match> AND (<guard>);\n`
    update_tail: String,
    /// `SELECT <key> FROM (VALUES `
    check_head: String,
    /// `) AS v JOIN "t" ON <key match> WHERE NOT (<guard>)`
    check_tail: String,
    /// Key column names, for naming rows.
    pub key: Vec<String>,
    pub name: String,
    /// Values in one tuple: the key's and the link columns'.
    values: usize,
}

impl LinkSql {
    /// `key`: the D1 key columns of the link's table, the first values of
    /// every tuple (the link columns follow, in `link.set` order).
    pub fn new(link: &Link, key: &[String]) -> Self {
        let t = quote_ident(&link.table);
        let col = |i: usize| format!("{V}.column{}", i + 1);
        // Where each column of the foreign key comes from.
        let value_of = |i: usize| match link.set.iter().position(|&s| s == i) {
            Some(pos) => col(key.len() + pos),
            None => format!("{t}.{}", quote_ident(&link.columns[i])),
        };
        let sets: Vec<String> = link
            .set
            .iter()
            .enumerate()
            .map(|(pos, &i)| format!("{} = {}", quote_ident(&link.columns[i]), col(key.len() + pos)))
            .collect();
        let key_match: Vec<String> =
            key.iter().enumerate().map(|(i, k)| format!("{t}.{} = {}", quote_ident(k), col(i))).collect();
        let nulls: Vec<String> =
            (0..link.columns.len()).map(|i| format!("{} IS NULL", value_of(i))).collect();
        let refs: Vec<String> = (0..link.columns.len())
            .map(|i| format!("{P}.{} = {}", quote_ident(&link.ref_columns[i]), value_of(i)))
            .collect();
        let guard = format!(
            "{} OR EXISTS (SELECT 1 FROM {} AS {P} WHERE {})",
            nulls.join(" OR "),
            quote_ident(&link.ref_table),
            refs.join(" AND ")
        );
        let key_list: Vec<String> =
            key.iter().enumerate().map(|(i, k)| format!("{} AS {}", col(i), quote_ident(k))).collect();
        LinkSql {
            update_head: format!("UPDATE {t} SET {} FROM (VALUES ", sets.join(", ")),
            update_tail: format!(") AS {V} WHERE {} AND ({guard});\n", key_match.join(" AND ")),
            check_head: format!("SELECT {} FROM (VALUES ", key_list.join(", ")),
            check_tail: format!(") AS {V} JOIN {t} ON {} WHERE NOT ({guard})", key_match.join(" AND ")),
            key: key.to_vec(),
            name: link.name.clone(),
            values: key.len() + link.set.len(),
        }
    }

    /// Bytes a statement needs besides its tuples.
    fn fixed(&self) -> usize {
        (self.update_head.len() + self.update_tail.len()).max(self.check_head.len() + self.check_tail.len())
    }

    /// The query that lists the keys of `statement`'s rows whose parent
    /// D1 does not have (those it left as they were).
    pub fn check(&self, statement: &LinkStatement) -> String {
        format!("{}{}{}", self.check_head, statement.values(), self.check_tail)
    }
}

/// Packs tuples into statements of at most `max_bytes` bytes and
/// [`MAX_VALUES`] values.
pub struct LinkPacker<'a> {
    sql: &'a LinkSql,
    max_bytes: usize,
    max_rows: u64,
    current: String,
    rows: u64,
}

impl<'a> LinkPacker<'a> {
    pub fn new(sql: &'a LinkSql, max_bytes: usize) -> Self {
        let max_rows = (MAX_VALUES / sql.values.max(1)).max(1) as u64;
        LinkPacker { sql, max_bytes, max_rows, current: String::new(), rows: 0 }
    }

    /// Adds one tuple (`(key..., link...)`, SQL literals).
    pub fn push(&mut self, tuple: &str, emit: &mut impl FnMut(LinkStatement) -> Result<()>) -> Result<()> {
        if self.sql.fixed() + tuple.len() > self.max_bytes {
            return Err(Error::Config {
                setting: "d1 statement size".into(),
                message: format!(
                    "link {}: the row {tuple} does not fit D1's {} byte statement limit (its key is too long)",
                    self.sql.name, self.max_bytes
                ),
            });
        }
        let full = self.sql.fixed() + self.current.len() + 1 + tuple.len() > self.max_bytes
            || self.rows >= self.max_rows;
        if self.rows > 0 && full {
            self.flush(emit)?;
        }
        if self.rows > 0 {
            self.current.push(',');
        }
        self.current.push_str(tuple);
        self.rows += 1;
        Ok(())
    }

    /// Emits the statement in progress, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(LinkStatement) -> Result<()>) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut sql = String::with_capacity(self.sql.fixed() + self.current.len());
        sql.push_str(&self.sql.update_head);
        let start = sql.len();
        sql.push_str(&self.current);
        let values = start..sql.len();
        sql.push_str(&self.sql.update_tail);
        let rows = std::mem::take(&mut self.rows);
        self.current.clear();
        emit(LinkStatement { sql, rows, values })
    }
}

/// Before rows of `link.ref_table` matching `condition` (a condition on
/// that table's own columns, e.g. `"id" IN (1, 2)`) are deleted: the rows
/// whose link points at them get the link's placeholder.
pub fn unlink_sql(link: &Link, condition: &str) -> String {
    let sets: Vec<String> = link
        .set
        .iter()
        .map(|&i| {
            let value = match link.placeholder {
                Placeholder::Null => "NULL".to_string(),
                Placeholder::Own => quote_ident(&link.ref_columns[i]),
            };
            format!("{} = {value}", quote_ident(&link.columns[i]))
        })
        .collect();
    let list = |cols: &[String]| cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let (cols, refs) = (list(&link.columns), list(&link.ref_columns));
    let lhs = if link.columns.len() == 1 { cols } else { format!("({cols})") };
    format!(
        "UPDATE {} SET {} WHERE {lhs} IN (SELECT {refs} FROM {} WHERE {condition});\n",
        quote_ident(&link.table),
        sets.join(", "),
        quote_ident(&link.ref_table)
    )
}

/// The most bytes [`unlink_sql`] adds to a condition, for packing deletes.
pub fn unlink_overhead(link: &Link) -> usize {
    unlink_sql(link, "").len()
}

#[cfg(test)]
#[path = "link_sql_tests.rs"]
mod tests;
