//! The SQL dump served by the export API: schema from `sqlite_master` and
//! one `INSERT` per row with every value written in its storage class
//! (integers, shortest round-trip reals, quoted text, `X'..'` BLOBs), so
//! replaying the file into an empty SQLite gives back the same data.
//! Like D1's export it starts with `PRAGMA defer_foreign_keys=TRUE;` so
//! tables load in any order. Source: cloudflare/workers-sdk
//! `packages/miniflare/src/workers/d1/dumpSql.ts` (its first line; the file is "duplicated between
//! miniflare and d1-workers").
//!
//! Like D1's export it also refuses what D1 refuses ([`DumpError::Refused`],
//! answered as a failed export): a database with virtual tables
//! (cloudflare-docs `src/content/docs/d1/best-practices/import-export-data.mdx`,
//! "Known limitations": "Export is not supported for virtual tables,
//! including databases with virtual tables"; the message is the one
//! workers-sdk issues 6305 and 9519 quote), and a table whose column names
//! D1's exporter cannot select because it lists them unquoted: a column
//! named `index`, `group`, `from` or `default` fails with SQLite's syntax
//! error, one named `step01-q01` with "no such column" (workers-sdk issues
//! 6675, 8377, 6599, 5920, 6357).

use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::js_number::js_integer_text;

/// `dump_options` of the export request.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct DumpOptions {
    pub no_data: bool,
    pub no_schema: bool,
    pub tables: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// What D1's export refuses, with the text D1 answers.
    #[error("{0}")]
    Refused(String),
}

pub fn dump(conn: &Connection, opts: &DumpOptions, out: &mut impl Write) -> Result<(), DumpError> {
    // Source: cloudflare/workers-sdk `packages/miniflare/src/workers/d1/dumpSql.ts` (its first
    // `yield`).
    writeln!(out, "PRAGMA defer_foreign_keys=TRUE;")?;
    let wanted = |name: &str| opts.tables.is_empty() || opts.tables.iter().any(|t| t == name);
    // Shadow tables (of fts5/rtree) are rebuilt by inserting into their
    // virtual table, so they are neither created nor filled.
    let shadow: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let objects: Vec<(String, String, String, Option<String>)> = conn
        .prepare(
            "SELECT type, name, tbl_name, sql FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' \
             ORDER BY rowid",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    refuse_virtual_tables(&objects, &wanted)?;
    for (kind, name, _, sql) in &objects {
        if kind != "table" || shadow.contains(name) || !wanted(name) {
            continue;
        }
        if !opts.no_data {
            refuse_unselectable_columns(conn, name)?;
        }
        if !opts.no_schema {
            if let Some(sql) = sql {
                writeln!(out, "{sql};")?;
            }
        }
        if !opts.no_data {
            dump_rows(conn, name, out)?;
        }
    }
    if !opts.no_schema {
        for (kind, _, table, sql) in &objects {
            let keep = match kind.as_str() {
                "index" | "trigger" => wanted(table) && !shadow.contains(table),
                "view" => opts.tables.is_empty(),
                _ => false,
            };
            if let (true, Some(sql)) = (keep, sql) {
                writeln!(out, "{sql};")?;
            }
        }
    }
    Ok(())
}

/// A whole-database export of a database with a virtual table, or an
/// export naming one, is refused. (An export of named plain tables passes:
/// users export table by table to get around this.)
fn refuse_virtual_tables(
    objects: &[(String, String, String, Option<String>)],
    wanted: &dyn Fn(&str) -> bool,
) -> Result<(), DumpError> {
    let module = |sql: &str| {
        let upper = sql.to_ascii_uppercase();
        let at = upper.find(" USING ").map(|i| i + 7).unwrap_or(upper.len());
        sql[at..].trim_start().split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("").to_string()
    };
    let found = objects.iter().find(|(kind, name, _, sql)| {
        kind == "table"
            && wanted(name)
            && sql
                .as_deref()
                .is_some_and(|s| s.trim_start().to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE"))
    });
    match found {
        Some((_, _, _, sql)) => Err(DumpError::Refused(format!(
            "D1 Export error: cannot export databases with Virtual Tables ({})",
            module(sql.as_deref().unwrap_or(""))
        ))),
        None => Ok(()),
    }
}

/// D1's exporter selects a table's columns by their bare names: a name
/// SQLite cannot read unquoted fails the export with SQLite's own message
/// (`near "index": syntax error at offset 7: SQLITE_ERROR`), and one that
/// reads as something else (`a b`: a column with an alias) is refused too
/// rather than exported wrong.
fn refuse_unselectable_columns(conn: &Connection, table: &str) -> Result<(), DumpError> {
    let columns = insertable_columns(conn, table)?;
    if columns.is_empty() {
        return Ok(());
    }
    let sql = format!("SELECT {} FROM {}", columns.join(", "), quote_ident(table));
    let refused = |text: String| DumpError::Refused(format!("{text}: SQLITE_ERROR"));
    match conn.prepare(&sql) {
        Ok(st) if st.column_count() == columns.len() => {
            let names: Vec<&str> = st.column_names();
            if names.iter().zip(&columns).all(|(a, b)| a.eq_ignore_ascii_case(b)) {
                Ok(())
            } else {
                Err(refused(format!("no such column: {}", columns.join(", "))))
            }
        }
        Ok(_) => Err(refused(format!("no such column: {}", columns.join(", ")))),
        // D1 names the position, not the statement (workers-sdk issue 8377:
        // `near "group": syntax error at offset 74: SQLITE_ERROR`).
        Err(rusqlite::Error::SqlInputError { msg, offset, .. }) => {
            Err(refused(format!("{msg} at offset {offset}")))
        }
        Err(rusqlite::Error::SqliteFailure(e, msg)) => Err(refused(msg.unwrap_or_else(|| e.to_string()))),
        Err(e) => Err(refused(e.to_string())),
    }
}

/// The columns a dump writes: generated and hidden ones cannot be inserted.
fn insertable_columns(conn: &Connection, table: &str) -> Result<Vec<String>, DumpError> {
    let columns = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(columns)
}

fn dump_rows(conn: &Connection, table: &str, out: &mut impl Write) -> Result<(), DumpError> {
    let columns = insertable_columns(conn, table)?;
    if columns.is_empty() {
        return Ok(());
    }
    let list = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(",");
    let prefix = format!("INSERT INTO {}({list}) VALUES(", quote_ident(table));
    let mut stmt = conn.prepare(&format!("SELECT {list} FROM {}", quote_ident(table)))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        out.write_all(prefix.as_bytes())?;
        for i in 0..columns.len() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write_literal(row.get_ref(i)?, out)?;
        }
        out.write_all(b");\n")?;
    }
    Ok(())
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn write_literal(v: ValueRef<'_>, out: &mut impl Write) -> std::io::Result<()> {
    match v {
        ValueRef::Null => out.write_all(b"NULL"),
        // D1 writes its dump in JavaScript: an INTEGER beyond 2^53 is
        // written as the nearest double ([`super::js_number`]).
        ValueRef::Integer(i) => out.write_all(js_integer_text(i).as_bytes()),
        // Rust's `{:?}` is the shortest text that reads back to the same f64
        // and always has a `.` or an exponent, so SQLite reads it as REAL.
        ValueRef::Real(f) if f.is_nan() => out.write_all(b"NULL"),
        ValueRef::Real(f) if f.is_infinite() => out.write_all(if f > 0.0 { b"9e999" } else { b"-9e999" }),
        ValueRef::Real(f) => write!(out, "{f:?}"),
        ValueRef::Text(t) => {
            out.write_all(b"'")?;
            for part in t.split(|&b| b == b'\'').enumerate() {
                if part.0 > 0 {
                    out.write_all(b"''")?;
                }
                out.write_all(part.1)?;
            }
            out.write_all(b"'")
        }
        ValueRef::Blob(b) => write!(out, "X'{}'", hex::encode_upper(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumped(schema: &str, opts: &DumpOptions) -> Result<String, DumpError> {
        let c = Connection::open_in_memory().expect("sqlite");
        c.execute_batch(schema).expect("schema");
        let mut out = Vec::new();
        dump(&c, opts, &mut out).map(|_| String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn integers_past_2_53_are_dumped_as_javascript_rounds_them() {
        let text = dumped(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER);
             INSERT INTO t VALUES (9007199254740993, 9223372036854775807), (1, -9007199254740991);",
            &DumpOptions::default(),
        )
        .expect("dump");
        assert!(text.contains("VALUES(9007199254740992,9223372036854776000);"), "{text}");
        assert!(text.contains("VALUES(1,-9007199254740991);"), "{text}");
    }

    #[test]
    fn an_export_of_a_database_with_a_virtual_table_is_refused() {
        let schema = "CREATE TABLE t (id INTEGER PRIMARY KEY); CREATE VIRTUAL TABLE f USING fts5(body);";
        match dumped(schema, &DumpOptions::default()) {
            Err(DumpError::Refused(m)) => {
                assert_eq!(m, "D1 Export error: cannot export databases with Virtual Tables (fts5)")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Table by table, the plain tables still export.
        let only_t = DumpOptions { tables: vec!["t".into()], ..DumpOptions::default() };
        assert!(dumped(schema, &only_t).is_ok());
    }

    #[test]
    fn a_column_d1_cannot_select_unquoted_fails_the_export() {
        for (col, message) in [
            ("\"index\"", "near \"index\": syntax error"),
            ("\"group\"", "near \"group\": syntax error"),
            ("\"step01-q01\"", "no such column: step01"),
        ] {
            let schema = format!("CREATE TABLE t (id INTEGER PRIMARY KEY, {col} TEXT);");
            match dumped(&schema, &DumpOptions::default()) {
                Err(DumpError::Refused(m)) => {
                    assert!(m.starts_with(message) && m.ends_with(": SQLITE_ERROR"), "{m}")
                }
                other => panic!("{col}: {:?}", other.map(|_| ())),
            }
        }
        // Keywords SQLite takes as names unquoted (`key`, `action`) export.
        assert!(
            dumped("CREATE TABLE t (key TEXT, action TEXT, \"a b\" TEXT);", &DumpOptions::default()).is_err()
        );
        assert!(dumped("CREATE TABLE t (key TEXT, action TEXT);", &DumpOptions::default()).is_ok());
    }
}
