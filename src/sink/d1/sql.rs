//! D1 SQL statements for one table: idempotent multi-row upserts
//! (`INSERT ... ON CONFLICT (key) DO UPDATE SET ...`), each statement under
//! D1's size limit and holding at most [`D1_MAX_VALUES_PER_STATEMENT`]
//! values (which keeps its VDBE program under D1's limit). A row that alone exceeds the limit is written as an
//! upsert holding the first piece of its long values followed by
//! `UPDATE ... SET c = c || '...'` statements appending the rest, so
//! replaying the statements always ends with the full value. No statement
//! ever contains BEGIN/COMMIT/SAVEPOINT: D1 runs every request in a
//! transaction of its own.

use crate::batch::quote_ident;
use crate::cloudflare::limits::D1_MAX_VALUES_PER_STATEMENT;
use crate::error::{Error, Result};

/// The fixed parts of a table's statements.
#[derive(Clone, Debug)]
pub struct TableSql {
    table: String,
    prefix: String,
    suffix: String,
    key: Vec<(usize, String)>,
    columns: Vec<String>,
}

impl TableSql {
    /// `columns` in order, `key` as positions into them (empty: plain
    /// INSERT); `linked` columns (see `links`) are written by the insert
    /// but never by the update of an existing row: the link step owns them.
    pub fn new(table: &str, columns: &[String], key: &[usize], linked: &[usize]) -> Self {
        let cols = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>();
        let prefix = format!("INSERT INTO {} ({}) VALUES ", quote_ident(table), cols.join(", "));
        let suffix = if key.is_empty() {
            ";\n".to_string()
        } else {
            let keys = key.iter().map(|&k| cols[k].clone()).collect::<Vec<_>>().join(", ");
            let sets: Vec<String> = (0..cols.len())
                .filter(|i| !key.contains(i) && !linked.contains(i))
                .map(|i| format!("{c} = excluded.{c}", c = cols[i]))
                .collect();
            // A row D1 already holds as it is is not written again (`WHERE
            // ... IS NOT ...`): D1 counts and bills rows written, and a sync
            // that re-sends a row whose D1 columns did not change (only a
            // column D1 does not receive did) then costs nothing. SQLite:
            // an upsert's DO UPDATE may have a WHERE (sqlite.org/lang_upsert.html,
            // 3.24+), and row values compare with IS NOT, NULLs as equal
            // (sqlite.org/rowvalue.html, 3.15+); D1 runs a later SQLite.
            let updated: Vec<usize> =
                (0..cols.len()).filter(|i| !key.contains(i) && !linked.contains(i)).collect();
            let now: Vec<String> =
                updated.iter().map(|&i| format!("{}.{}", quote_ident(table), cols[i])).collect();
            let new: Vec<String> = updated.iter().map(|&i| format!("excluded.{}", cols[i])).collect();
            if sets.is_empty() {
                format!(" ON CONFLICT ({keys}) DO NOTHING;\n")
            } else {
                format!(
                    " ON CONFLICT ({keys}) DO UPDATE SET {} WHERE ({}) IS NOT ({});\n",
                    sets.join(", "),
                    now.join(", "),
                    new.join(", ")
                )
            }
        };
        TableSql {
            table: quote_ident(table),
            prefix,
            suffix,
            key: key.iter().map(|&k| (k, cols[k].clone())).collect(),
            columns: cols,
        }
    }
}

impl TableSql {
    /// The upsert of one row with its values as parameters `?1..?n`, in
    /// column order: the statement [`StatementPacker`] writes, with
    /// parameters where it writes literals (the `sqlite` target binds).
    pub fn bound_statement(&self) -> String {
        let params: Vec<String> = (1..=self.columns.len()).map(|i| format!("?{i}")).collect();
        let suffix = self.suffix.trim_end().trim_end_matches(';');
        format!("{}({}){suffix}", self.prefix, params.join(", "))
    }

    /// The bytes of a statement around its row tuples.
    pub fn fixed_len(&self) -> usize {
        self.prefix.len() + self.suffix.len()
    }
}

/// Packs rows (as SQL literals) into statements of at most `max_bytes`.
pub struct StatementPacker<'t> {
    sql: &'t TableSql,
    max_bytes: usize,
    current: String,
    rows: usize,
}

impl<'t> StatementPacker<'t> {
    pub fn new(sql: &'t TableSql, max_bytes: usize) -> Self {
        StatementPacker { sql, max_bytes, current: String::with_capacity(max_bytes.min(1 << 20)), rows: 0 }
    }

    /// Adds one row; `emit` receives every statement that is complete.
    /// `key_text` names the row, called only for an error.
    pub fn push<S: AsRef<str>>(
        &mut self,
        literals: &[S],
        key_text: &dyn Fn() -> String,
        emit: &mut impl FnMut(String),
    ) -> Result<()> {
        let tuple_len = 2 + literals.iter().map(|l| l.as_ref().len() + 2).sum::<usize>();
        let fixed = self.sql.prefix.len() + self.sql.suffix.len();
        if fixed + tuple_len > self.max_bytes {
            self.flush(emit);
            return self.oversized(literals, key_text, emit);
        }
        if starts_anew(self.sql, self.max_bytes, self.current.len(), self.rows, tuple_len, literals.len()) {
            self.flush(emit);
        }
        if self.rows == 0 {
            self.current.push_str(&self.sql.prefix);
        } else {
            self.current.push(',');
        }
        push_tuple(&mut self.current, literals);
        self.rows += 1;
        Ok(())
    }

    /// Emits the statement in progress, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(String)) {
        if self.rows > 0 {
            self.current.push_str(&self.sql.suffix);
            // A statement fills up to max_bytes: give the next one that room
            // at once, instead of growing (and copying) it step by step.
            let next = String::with_capacity(self.max_bytes.min(1 << 20));
            emit(std::mem::replace(&mut self.current, next));
            self.rows = 0;
        }
    }

    /// One row too big for a statement: the upsert carries a prefix of every
    /// long string literal, UPDATEs append the rest in pieces.
    fn oversized<S: AsRef<str>>(
        &mut self,
        literals: &[S],
        key_text: &dyn Fn() -> String,
        emit: &mut impl FnMut(String),
    ) -> Result<()> {
        let too_big = |what: &str| Error::Config {
            setting: "d1 statement size".into(),
            message: format!(
                "table {}, row {}: {what} does not fit D1's {} byte statement limit",
                self.sql.table,
                key_text(),
                self.max_bytes
            ),
        };
        if self.sql.key.is_empty() {
            return Err(too_big("a row of a table without primary key (it cannot be written in pieces)"));
        }
        let where_clause = format!(
            " WHERE {};\n",
            self.sql
                .key
                .iter()
                .map(|(i, c)| format!("{c} = {}", literals[*i].as_ref()))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        // Every long string starts empty in the upsert and is appended after.
        let mut first: Vec<String> = literals.iter().map(|l| l.as_ref().to_string()).collect();
        let mut appends: Vec<(usize, &str)> = Vec::new();
        for (i, lit) in literals.iter().map(AsRef::as_ref).enumerate() {
            let is_key = self.sql.key.iter().any(|(k, _)| *k == i);
            if !is_key && lit.len() > 64 && lit.starts_with('\'') {
                first[i] = "''".into();
                appends.push((i, &lit[1..lit.len() - 1]));
            }
        }
        let tuple_len = 2 + first.iter().map(|l| l.len() + 2).sum::<usize>();
        if self.sql.prefix.len() + tuple_len + self.sql.suffix.len() > self.max_bytes {
            return Err(too_big("the row without its long text values (e.g. a huge key or blob)"));
        }
        let mut stmt = self.sql.prefix.clone();
        push_tuple(&mut stmt, &first);
        stmt.push_str(&self.sql.suffix);
        emit(stmt);
        for (i, body) in appends {
            let col = &self.sql.columns[i];
            let head = format!("UPDATE {} SET {col} = {col} || '", self.sql.table);
            let budget = self.max_bytes.saturating_sub(head.len() + 1 + where_clause.len());
            if budget < 16 {
                return Err(too_big("the key"));
            }
            for piece in split_quoted(body, budget) {
                emit(format!("{head}{piece}'{where_clause}"));
            }
        }
        Ok(())
    }
}

/// Whether a row tuple of `tuple_len` bytes (`n` values) goes into a new
/// statement rather than the one in progress (`current` bytes, `rows`
/// rows): it would take it past the byte limit or D1's values limit.
fn starts_anew(
    sql: &TableSql,
    max_bytes: usize,
    current: usize,
    rows: usize,
    tuple_len: usize,
    n: usize,
) -> bool {
    rows > 0
        && (current + 1 + tuple_len + sql.suffix.len() > max_bytes
            || (rows + 1) * n > D1_MAX_VALUES_PER_STATEMENT)
}

/// The bytes [`StatementPacker`] would write for rows given by their tuple
/// lengths only: the `sqlite` target binds rows instead of writing them
/// and reports the SQL bytes the files would hold (the sink contract).
pub struct PackedBytes<'t> {
    sql: &'t TableSql,
    max_bytes: usize,
    current: usize,
    rows: usize,
    total: u64,
}

impl<'t> PackedBytes<'t> {
    pub fn new(sql: &'t TableSql, max_bytes: usize) -> Self {
        PackedBytes { sql, max_bytes, current: 0, rows: 0, total: 0 }
    }

    /// Whether a row of `tuple_len` bytes fits a statement; if so, counts it
    /// (a row that does not is written in pieces: [`PackedBytes::pieces`]).
    pub fn push(&mut self, tuple_len: usize, n: usize) -> bool {
        if self.sql.fixed_len() + tuple_len > self.max_bytes {
            self.flush();
            return false;
        }
        if starts_anew(self.sql, self.max_bytes, self.current, self.rows, tuple_len, n) {
            self.flush();
        }
        self.current += if self.rows == 0 { self.sql.prefix.len() } else { 1 };
        // `tuple_len` (the packing measure, shared with the packer) counts a
        // separator after the last value too; the tuple written has n - 1.
        self.current += tuple_len - 2 * usize::from(n > 0);
        self.rows += 1;
        true
    }

    /// Counts the statements an oversized row was written as.
    pub fn pieces(&mut self, bytes: usize) {
        self.total += bytes as u64;
    }

    /// The bytes of every statement, the one in progress included.
    pub fn finish(mut self) -> u64 {
        self.flush();
        self.total
    }

    fn flush(&mut self) {
        if self.rows > 0 {
            self.total += (self.current + self.sql.suffix.len()) as u64;
            self.current = 0;
            self.rows = 0;
        }
    }
}

fn push_tuple<S: AsRef<str>>(out: &mut String, literals: &[S]) {
    out.push('(');
    for (i, l) in literals.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(l.as_ref());
    }
    out.push(')');
}

/// Splits the inside of a quoted literal (quotes already doubled) into
/// pieces of at most `budget` bytes, never inside a character or between
/// the two quotes of a doubled quote.
fn split_quoted(body: &str, budget: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.len() <= budget {
            out.push(rest);
            break;
        }
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // An odd run of quotes ending at the cut would split a doubled quote.
        let quotes = rest[..cut].bytes().rev().take_while(|b| *b == b'\'').count();
        if quotes % 2 == 1 {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// True if `sql` contains a transaction statement D1 refuses (a check used
/// by tests on generated files).
pub fn has_transaction_statement(sql: &str) -> bool {
    sql.split(";\n").any(|s| {
        let s = s.trim_start().to_ascii_uppercase();
        ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END TRANSACTION"]
            .iter()
            .any(|k| s.starts_with(k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::quote_literal;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    fn sql() -> TableSql {
        TableSql::new("chunks", &["id".into(), "content".into(), "n".into()], &[0], &[])
    }

    #[test]
    fn upsert_shape() {
        let t = sql();
        let mut out = Vec::new();
        let mut p = StatementPacker::new(&t, 100_000);
        p.push::<String>(&["'a'".into(), "'x'".into(), "1".into()], &|| "id=a".into(), &mut |s| out.push(s))
            .unwrap();
        p.push::<String>(&["'b'".into(), "NULL".into(), "2".into()], &|| "id=b".into(), &mut |s| out.push(s))
            .unwrap();
        p.flush(&mut |s| out.push(s));
        assert_eq!(
            out,
            vec![
                "INSERT INTO \"chunks\" (\"id\", \"content\", \"n\") VALUES ('a', 'x', 1),('b', NULL, 2) \
                 ON CONFLICT (\"id\") DO UPDATE SET \"content\" = excluded.\"content\", \"n\" = excluded.\"n\" \
                 WHERE (\"chunks\".\"content\", \"chunks\".\"n\") IS NOT (excluded.\"content\", excluded.\"n\");\n"
            ]
        );
    }

    #[test]
    fn an_upsert_of_a_row_as_d1_holds_it_writes_nothing_and_a_change_is_written() {
        let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
        conn.execute_batch("CREATE TABLE chunks (id TEXT PRIMARY KEY, content TEXT, n INTEGER)")
            .expect("table");
        let t = sql();
        let run = |rows: &[[&str; 3]]| -> u64 {
            let mut out = Vec::new();
            let mut p = StatementPacker::new(&t, 100_000);
            for r in rows {
                let r: Vec<String> = r.iter().map(|v| v.to_string()).collect();
                p.push::<String>(&r, &|| "id".into(), &mut |s| out.push(s)).expect("push");
            }
            p.flush(&mut |s| out.push(s));
            let before = conn.total_changes();
            conn.execute_batch(&out.concat()).expect("upsert");
            conn.total_changes() - before
        };
        assert_eq!(run(&[["'a'", "'x'", "1"], ["'b'", "NULL", "2"]]), 2);
        assert_eq!(run(&[["'a'", "'x'", "1"], ["'b'", "NULL", "2"]]), 0, "nothing changed: nothing written");
        assert_eq!(run(&[["'a'", "'x'", "1"], ["'b'", "'y'", "2"]]), 1, "NULL to a value is a change");
        assert_eq!(run(&[["'a'", "'x'", "1"], ["'b'", "NULL", "2"]]), 1, "a value to NULL is a change");
        let n: String = conn
            .query_row("SELECT coalesce(content, 'null') FROM chunks WHERE id = 'b'", [], |r| r.get(0))
            .expect("row");
        assert_eq!(n, "null");
    }

    #[test]
    fn linked_columns_are_inserted_but_never_updated() {
        let t = TableSql::new("pages", &["id".into(), "parent".into(), "path".into()], &[0], &[1]);
        let mut out = Vec::new();
        let mut p = StatementPacker::new(&t, 100_000);
        p.push::<String>(&["1".into(), "NULL".into(), "'/a'".into()], &|| "id=1".into(), &mut |s| {
            out.push(s)
        })
        .unwrap();
        p.flush(&mut |s| out.push(s));
        assert_eq!(
            out,
            vec![
                "INSERT INTO \"pages\" (\"id\", \"parent\", \"path\") VALUES (1, NULL, '/a') \
                 ON CONFLICT (\"id\") DO UPDATE SET \"path\" = excluded.\"path\" \
                 WHERE (\"pages\".\"path\") IS NOT (excluded.\"path\");\n"
            ]
        );
    }

    proptest! {
        // Whatever the rows, every statement is under the limit, and the
        // oversized values are reassembled exactly from the pieces.
        #[test]
        fn statements_stay_under_the_limit(
            contents in proptest::collection::vec("(\\PC|'){0,400}", 1..30),
            limit in 300usize..2000,
        ) {
            let t = sql();
            let mut out = Vec::new();
            let mut p = StatementPacker::new(&t, limit);
            for (i, c) in contents.iter().enumerate() {
                let lits = vec![format!("'k{i}'"), quote_literal(c), i.to_string()];
                p.push(&lits, &|| "k".into(), &mut |s| out.push(s)).unwrap();
            }
            p.flush(&mut |s| out.push(s));
            for s in &out {
                prop_assert!(s.len() <= limit, "{} > {limit}: {s}", s.len());
                prop_assert!(!has_transaction_statement(s));
            }
            // Reassemble each key's content: '' from the upsert, then appends.
            for (i, c) in contents.iter().enumerate() {
                let quoted = quote_literal(c);
                let inner = &quoted[1..quoted.len() - 1];
                let tail = format!(" WHERE \"id\" = 'k{i}';\n");
                let appended: String = out
                    .iter()
                    .filter(|s| s.starts_with("UPDATE") && s.ends_with(&tail))
                    .map(|s| {
                        let start = s.find("|| '").map(|p| p + 4).unwrap_or(0);
                        let end = s.len() - tail.len() - 1;
                        s[start..end].to_string()
                    })
                    .collect();
                if !appended.is_empty() {
                    prop_assert_eq!(appended, inner.to_string());
                } else {
                    let tuple = format!("('k{i}', {quoted}, {i})");
                    prop_assert!(out.iter().any(|s| s.contains(&tuple)));
                }
            }
        }

        // Narrow or wide (up to D1's 100 columns), any number of rows:
        // every upsert runs on a connection with D1's SQL limits (a narrow
        // row costs SQLite a few VDBE instructions, so rows per statement
        // are bounded by their values, not only by bytes).
        #[test]
        fn upserts_of_any_shape_run_within_d1_limits(
            (ncols, rows) in (1usize..=100).prop_flat_map(|n| (Just(n), 1..(40_000 / n).max(2))),
            text in any::<bool>(),
        ) {
            let names: Vec<String> = (0..ncols).map(|i| format!("c{i}")).collect();
            let t = TableSql::new("t", &names, &[0], &[]);
            let conn = rusqlite::Connection::open_in_memory().expect("open");
            crate::cloudflare::limits::apply_d1_sql_limits(&conn).expect("limits");
            let cols: Vec<String> = names.iter().map(|n| format!("{n} ANY")).collect();
            conn.execute_batch(&format!("CREATE TABLE t ({}, PRIMARY KEY (c0));", cols.join(", "))).expect("t");
            let mut out = Vec::new();
            let mut p = StatementPacker::new(&t, crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES);
            for r in 0..rows {
                let lits: Vec<String> = (0..ncols)
                    .map(|c| match (c, text) {
                        (0, _) => r.to_string(),
                        (_, true) => "'x'".into(),
                        (_, false) => (c % 10).to_string(),
                    })
                    .collect();
                p.push(&lits, &|| "k".into(), &mut |s| out.push(s)).unwrap();
            }
            p.flush(&mut |s| out.push(s));
            for s in &out {
                conn.execute_batch(s).map_err(|e| TestCaseError::fail(format!("{e}: {}", &s[..80])))?;
            }
            let n: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count");
            prop_assert_eq!(n as usize, rows);
        }

        // The sqlite target reports the bytes the files would hold without
        // writing them: for any rows and limit, the count is the packer's.
        #[test]
        fn packed_bytes_are_the_bytes_the_packer_writes(
            contents in proptest::collection::vec("(\\PC|'){0,300}", 1..60),
            limit in 300usize..3000,
        ) {
            let t = sql();
            let mut written = 0usize;
            let mut p = StatementPacker::new(&t, limit);
            let mut counted = PackedBytes::new(&t, limit);
            for (i, c) in contents.iter().enumerate() {
                let lits = vec![format!("'k{i}'"), quote_literal(c), i.to_string()];
                let tuple_len = 2 + lits.iter().map(|l| l.len() + 2).sum::<usize>();
                let mut piece_bytes = 0;
                let fits = counted.push(tuple_len, lits.len());
                p.push(&lits, &|| "k".into(), &mut |s| {
                    written += s.len();
                    piece_bytes += s.len();
                }).unwrap();
                if !fits {
                    // The packer flushed the statement in progress before the
                    // pieces; only the pieces' own bytes are added here.
                    let mut pieces = 0;
                    let mut alone = StatementPacker::new(&t, limit);
                    alone.push(&lits, &|| "k".into(), &mut |s| pieces += s.len()).unwrap();
                    alone.flush(&mut |s| pieces += s.len());
                    prop_assert!(piece_bytes >= pieces);
                    counted.pieces(pieces);
                }
            }
            p.flush(&mut |s| written += s.len());
            prop_assert_eq!(counted.finish(), written as u64);
        }

        #[test]
        fn pieces_never_split_a_doubled_quote(s in "('|a|é){0,200}", budget in 4usize..40) {
            let quoted = quote_literal(&s);
            let inner = &quoted[1..quoted.len() - 1];
            let pieces = split_quoted(inner, budget);
            prop_assert_eq!(pieces.concat(), inner);
            for p in pieces {
                prop_assert!(p.len() <= budget);
                prop_assert_eq!(p.matches('\'').count() % 2, 0, "piece {:?}", p);
            }
        }
    }
}
