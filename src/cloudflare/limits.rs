//! Cloudflare's limits, in one place (see
//! `../shared/reference/cloudflare.md`). Values marked unconfirmed there
//! are taken at their strictest reading. D1's SQL limits are SQLite's
//! run-time limits on the connection that runs a query: [`D1_SQL_LIMITS`]
//! lists them, [`apply_d1_sql_limits`] sets them on a SQLite connection
//! (the emulator's and the `sqlite` target's, so every test that runs SQL
//! on a local D1 file also catches SQL D1 would refuse), and
//! [`refused_limit`] recognizes SQLite's message when one is exceeded.
//!
//! Sources: cloudflare-docs `src/content/docs/d1/platform/limits.mdx`
//! (statement length, bound parameters, arguments per function, LIKE/GLOB
//! pattern bytes, string/BLOB/row bytes, columns); workerd
//! `src/workerd/util/sqlite.c++` (`SqliteDatabase::setupSecurity`, the
//! `sqlite3_limit` calls of the SQLite that D1 and `wrangler dev` run:
//! expression depth 100, compound SELECT 5, VDBE ops 25,000, attached 0,
//! trigger depth 10; it allows 127 function arguments where the docs say
//! 32, and 2,200,000 string bytes where the docs say 2,000,000: the
//! stricter is taken).

use rusqlite::limits::Limit;

/// D1: bytes in one SQL statement.
pub const D1_MAX_STATEMENT_BYTES: usize = 100_000;
/// D1: bytes in one string, BLOB or row.
pub const D1_MAX_VALUE_BYTES: usize = 2_000_000;
/// D1: columns per table.
pub const D1_MAX_COLUMNS: usize = 100;
/// D1: bound parameters per query.
pub const D1_MAX_BOUND_PARAMS: usize = 100;
/// D1: arguments of one SQL function call.
pub const D1_MAX_FUNCTION_ARGS: usize = 32;
/// D1: bytes of a LIKE or GLOB pattern.
pub const D1_MAX_LIKE_PATTERN_BYTES: usize = 50;
/// D1: depth of an expression tree (`a OR b OR c ...` is a chain as deep
/// as it is long).
pub const D1_MAX_EXPR_DEPTH: usize = 100;
/// D1: terms of a compound SELECT (UNION, INTERSECT, EXCEPT); the rows of
/// a multi-row VALUES are not counted.
pub const D1_MAX_COMPOUND_SELECT: usize = 5;
/// D1: instructions of one prepared statement's VDBE program. SQLite grows
/// the program by doubling and refuses to grow past this, so the real
/// ceiling is 21,504 instructions, reported as "out of memory".
pub const D1_MAX_VDBE_OPS: usize = 25_000;
/// D1: nesting of triggers firing triggers.
pub const D1_MAX_TRIGGER_DEPTH: usize = 10;
/// pgflare's own bound on the SQL values (literals, list items) in one
/// statement it writes, so that the statement's VDBE program stays under
/// [`D1_MAX_VDBE_OPS`]: SQLite spends at most 3 instructions per value (an
/// `IN (...)` item; an upsert row costs one per column and one more;
/// measured on SQLite 3.40 and 3.53), so 5,000 values take at most 15,000
/// of the 21,504 instructions a program can have, leaving room for the
/// statement's fixed part.
pub const D1_MAX_VALUES_PER_STATEMENT: usize = 5_000;
/// D1: database size on the paid plan.
pub const D1_MAX_DATABASE_BYTES: u64 = 10_000_000_000;
/// Vectorize: dimensions of a vector.
pub const VECTORIZE_MAX_DIMS: u32 = 1536;
/// Vectorize: bytes of a vector id.
pub const VECTORIZE_MAX_ID_BYTES: usize = 64;
/// Vectorize: bytes of one vector's metadata.
pub const VECTORIZE_MAX_METADATA_BYTES: usize = 10 * 1024;
/// Vectorize: vectors in one upsert/insert request over HTTP.
pub const VECTORIZE_MAX_VECTORS_PER_REQUEST: usize = 5000;
/// Vectorize: bytes of one upload (100 MB, read as decimal: the stricter).
pub const VECTORIZE_MAX_UPLOAD_BYTES: usize = 100_000_000;
/// Vectorize: bytes of a namespace name.
pub const VECTORIZE_MAX_NAMESPACE_BYTES: usize = 64;
/// Vectorize: vectors in one (v2) index. cloudflare-docs
/// `src/content/docs/vectorize/platform/limits.mdx` ("Maximum vectors per
/// index": 5,000,000 at the stored commit 1db3529; the published page,
/// developers.cloudflare.com/vectorize/platform/limits/, says 10,000,000,
/// and ../shared/reference/cloudflare.md 20,000,000): the strictest.
pub const VECTORIZE_MAX_VECTORS_PER_INDEX: u64 = 5_000_000;
/// Vectorize: namespaces in one index on the Workers Paid plan (the same
/// limits.mdx, "Maximum namespaces per index": 50,000; 1,000 on Free).
pub const VECTORIZE_MAX_NAMESPACES_PER_INDEX: u64 = 50_000;
/// The same on the Workers Free plan.
pub const VECTORIZE_MAX_NAMESPACES_PER_INDEX_FREE: u64 = 1_000;
/// Vectorize: metadata indexes per index.
pub const VECTORIZE_MAX_METADATA_INDEXES: usize = 10;
/// Vectorize: ids per `delete_by_ids` call (observed: error 40007 over 100).
pub const VECTORIZE_MAX_IDS_PER_CALL: usize = 100;
/// Vectorize: ids per `get_by_ids` call.
pub const VECTORIZE_MAX_GET_IDS: usize = 20;
/// `topK` of a query without values or all metadata (docs
/// `vectorize/reference/client-api.mdx`, "topK"; 20 with them).
pub const VECTORIZE_MAX_TOP_K: usize = 100;
/// `topK` of a query with `returnValues` or `returnMetadata: "all"` (same
/// source; 50 has been observed, the documented 20 is the stricter).
pub const VECTORIZE_MAX_TOP_K_WITH_VALUES: usize = 20;

/// One of D1's SQL limits as a SQLite run-time limit.
pub struct SqlLimit {
    pub category: Limit,
    pub value: usize,
    /// What is limited, for messages ("expression depth").
    pub name: &'static str,
    /// How SQLite's (and so D1's) refusal message starts.
    pub refusal: &'static str,
    /// Whether SQL that pgflare writes can exceed it whatever the data
    /// (then it is pgflare's fault); `false` for limits the data or the
    /// mapping decide (value size, columns, the user's triggers).
    pub by_sql_shape: bool,
}

/// D1's SQL limits (sources in the module comment).
pub const D1_SQL_LIMITS: [SqlLimit; 11] = [
    SqlLimit {
        category: Limit::SQLITE_LIMIT_LENGTH,
        value: D1_MAX_VALUE_BYTES,
        name: "bytes per string, BLOB or row",
        refusal: "string or blob too big",
        by_sql_shape: false,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_SQL_LENGTH,
        value: D1_MAX_STATEMENT_BYTES,
        name: "bytes per SQL statement",
        refusal: "statement too long",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_COLUMN,
        value: D1_MAX_COLUMNS,
        name: "columns per table",
        refusal: "too many columns",
        by_sql_shape: false,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_EXPR_DEPTH,
        value: D1_MAX_EXPR_DEPTH,
        name: "levels of expression nesting",
        refusal: "Expression tree is too large",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_COMPOUND_SELECT,
        value: D1_MAX_COMPOUND_SELECT,
        name: "terms in a compound SELECT",
        refusal: "too many terms in compound SELECT",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_VDBE_OP,
        value: D1_MAX_VDBE_OPS,
        name: "VDBE instructions per statement",
        refusal: "out of memory",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_FUNCTION_ARG,
        value: D1_MAX_FUNCTION_ARGS,
        name: "arguments per SQL function",
        refusal: "too many arguments on",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_ATTACHED,
        value: 0,
        name: "attached databases",
        refusal: "too many attached databases",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
        value: D1_MAX_LIKE_PATTERN_BYTES,
        name: "bytes per LIKE or GLOB pattern",
        refusal: "LIKE or GLOB pattern too complex",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_VARIABLE_NUMBER,
        value: D1_MAX_BOUND_PARAMS,
        name: "bound parameters per statement",
        refusal: "too many SQL variables",
        by_sql_shape: true,
    },
    SqlLimit {
        category: Limit::SQLITE_LIMIT_TRIGGER_DEPTH,
        value: D1_MAX_TRIGGER_DEPTH,
        name: "levels of trigger recursion",
        refusal: "too many levels of trigger recursion",
        by_sql_shape: false,
    },
];

/// Sets D1's SQL limits on a SQLite connection.
pub fn apply_d1_sql_limits(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for l in &D1_SQL_LIMITS {
        // Every value is far below i32::MAX.
        conn.set_limit(l.category, l.value as i32)?;
    }
    Ok(())
}

/// The D1 SQL limit a refusal message (SQLite's text, as D1 returns it)
/// says was exceeded, if any.
pub fn refused_limit(message: &str) -> Option<&'static SqlLimit> {
    D1_SQL_LIMITS.iter().find(|l| message.contains(l.refusal))
}

/// What to do when D1 (or a SQLite connection with D1's limits) refused
/// SQL that pgflare wrote (for `what`) because of a limit the statement's
/// shape decides, not the data (expression depth, bound parameters,
/// statement length, ...); `None` for other refusals.
pub fn shape_limit_hint(what: &str, message: &str) -> Option<String> {
    let limit = refused_limit(message).filter(|l| l.by_sql_shape)?;
    Some(format!(
        "the SQL pgflare wrote for {what} exceeds D1's limit of {} {}. Your data and mapping are not at \
         fault: this is a pgflare limit problem. Please report it with this message, and upgrade pgflare \
         (running this version again fails the same way)",
        limit.value, limit.name
    ))
}

/// Why `key` cannot be a Vectorize metadata key, if it cannot.
pub fn check_metadata_key(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        Err("metadata keys may not be empty")
    } else if key.contains('.') {
        Err("metadata keys may not contain `.`")
    } else if key.contains('"') {
        Err("metadata keys may not contain `\"`")
    } else if key.starts_with('$') {
        Err("metadata keys may not start with `$`")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection with D1's limits refuses each limit's excess with the
    /// message [`refused_limit`] recognizes, and accepts what is within.
    #[test]
    fn each_limit_is_enforced_and_its_refusal_recognized() {
        let c = rusqlite::Connection::open_in_memory().expect("open");
        apply_d1_sql_limits(&c).expect("limits");
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)").expect("table");
        // Prepared, and run when it has no placeholders (LIKE patterns
        // are checked when the statement runs).
        let refusal = |sql: &str| -> String {
            let r = c.prepare(sql).and_then(|mut st| match st.parameter_count() {
                0 => st.query([]).and_then(|mut rows| rows.next().map(|_| ())),
                _ => Ok(()),
            });
            r.err().map(|e| e.to_string()).unwrap_or_default()
        };
        let or_chain = |n: usize| (0..n).map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ");
        let args = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        let union = |n: usize| vec!["SELECT 1"; n].join(" UNION ALL ");
        let in_list = |n: usize| format!("SELECT * FROM t WHERE id IN ({})", args(n));
        let cases: Vec<(&str, String, String)> = vec![
            (
                "expression nesting",
                format!("SELECT * FROM t WHERE {}", or_chain(90)),
                format!("SELECT * FROM t WHERE {}", or_chain(120)),
            ),
            ("terms in a compound SELECT", union(5), union(6)),
            (
                "arguments per SQL function",
                format!("SELECT max({})", args(32)),
                format!("SELECT max({})", args(33)),
            ),
            (
                "bytes per LIKE or GLOB pattern",
                format!("SELECT 'a' LIKE '{}'", "a".repeat(50)),
                format!("SELECT 'a' LIKE '{}'", "a".repeat(51)),
            ),
            (
                "bound parameters per statement",
                format!("SELECT {}", vec!["?"; 100].join(", ")),
                format!("SELECT {}", vec!["?"; 101].join(", ")),
            ),
            ("VDBE", in_list(5_000), in_list(8_000)),
            (
                "bytes per SQL statement",
                format!("SELECT '{}'", "a".repeat(99_000)),
                format!("SELECT '{}'", "a".repeat(100_000)),
            ),
        ];
        for (name, within, over) in cases {
            assert_eq!(refusal(&within), "", "{name}");
            let e = refusal(&over);
            let l = refused_limit(&e).unwrap_or_else(|| panic!("{name}: `{e}` is not recognized"));
            assert!(l.name.contains(name) && l.by_sql_shape, "{name}: {e} -> {}", l.name);
        }
    }

    #[test]
    fn refusals_for_the_sql_shape_blame_pgflare_and_others_do_not() {
        let what = "reading keys of changed buckets of chunks";
        let depth = "[7500] Expression tree is too large (maximum depth 100): SQLITE_ERROR";
        let hint = shape_limit_hint(what, depth).expect("a shape limit");
        for part in
            [what, "100 levels of expression nesting", "not at fault", "pgflare limit problem", "report"]
        {
            assert!(hint.contains(part), "{part}: {hint}");
        }
        assert!(!hint.contains("Fix the data"));
        // The data decides these: no pgflare hint.
        for data in
            ["string or blob too big: SQLITE_TOOBIG", "UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT"]
        {
            assert_eq!(shape_limit_hint(what, data), None, "{data}");
        }
    }
}
