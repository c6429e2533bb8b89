//! The SQL dump served by the export API: schema from `sqlite_master` and
//! one `INSERT` per row with every value written in its storage class
//! (integers, shortest round-trip reals, quoted text, `X'..'` BLOBs), so
//! replaying the file into an empty SQLite gives back the same data.
//! Like D1's export it starts with `PRAGMA defer_foreign_keys=TRUE;` so
//! tables load in any order.

use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

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
}

pub fn dump(conn: &Connection, opts: &DumpOptions, out: &mut impl Write) -> Result<(), DumpError> {
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
    for (kind, name, _, sql) in &objects {
        if kind != "table" || shadow.contains(name) || !wanted(name) {
            continue;
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

fn dump_rows(conn: &Connection, table: &str, out: &mut impl Write) -> Result<(), DumpError> {
    // Generated and hidden columns cannot be inserted: list the others.
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
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
        ValueRef::Integer(i) => write!(out, "{i}"),
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
