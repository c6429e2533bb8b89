//! A remote D1 database made local for reading (verify compares it, the
//! Cloudflare archive copies it): exported through the
//! D1 API (`export`, the flow `wrangler d1 export` uses), streamed to a
//! file, and replayed statement by statement into a fresh SQLite file, which
//! is then read like any local D1 file. The dump is never held in memory:
//! it is read line by line through the same statement splitter the emulator
//! uses for imports (strings and trigger bodies may hold `;`).
//!
//! The export is not trusted with large numbers: D1 writes it in
//! JavaScript, which rounds integers beyond 2^53 (cloudflare-docs
//! `d1/best-practices/import-export-data.mdx`, "52-bit precision"). A
//! table whose replayed copy holds a number that large is read again
//! through exact paged queries ([`crate::sink::d1::copy`]). And when D1
//! refuses the export (a database with virtual tables, a column named
//! `index`: workers-sdk issues 6305, 6675) or it fails otherwise, the
//! tables asked for are all read that way. Either is said in the notes.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::batch::quote_ident;
use crate::cloudflare::D1;
use crate::d1::split::Splitter;
use crate::error::{Error, Result};
use crate::sink::d1::copy::copy_table;

/// The local copy of a remote D1, and what a reader of the report should
/// know about how it was read.
pub struct Materialized {
    pub path: PathBuf,
    pub notes: Vec<String>,
    /// Whether the rows came from D1's export (else from paged queries).
    pub by_export: bool,
    /// The export's `at_bookmark` (the state the dump holds).
    pub export_bookmark: Option<String>,
}

/// Numbers from this magnitude on may have been rounded by the export.
const UNSAFE: &str = "9007199254740992.0";

/// Makes D1 tables `tables` local under `dir`: through the export, or
/// through paged queries when the export fails.
pub async fn materialize(d1: &D1, dir: &Path, tables: &[String]) -> Result<Materialized> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let dump = dir.join("d1-export.sql");
    let what = format!("D1 {}", d1.database_id());
    let db = dir.join("d1-export.sqlite");
    if db.exists() {
        std::fs::remove_file(&db).map_err(Error::io(&db))?;
    }
    let wanted: Vec<String> = tables.to_vec();
    // A dump that does not replay is one D1's rounding broke: two keys
    // rounded to the same value, or i64::MAX to 2^63 in an INTEGER
    // PRIMARY KEY.
    let mut export_bookmark = None;
    let exported = match d1.export_to(&what, &dump).await {
        Err(e) => Err(format!("D1's export failed ({})", export_error(&e))),
        Ok(x) => {
            export_bookmark = x.at_bookmark;
            let (d, s) = (dump.clone(), db.clone());
            tokio::task::spawn_blocking(move || replay(&d, &s))
                .await
                .map_err(|e| Error::Internal(format!("replaying the D1 export died: {e}")))?
                .map_err(|e| {
                    format!(
                        "D1's export does not replay ({}), as when it rounds numbers beyond 2^53",
                        export_error(&e)
                    )
                })
        }
    };
    let _ = std::fs::remove_file(&dump);
    if let Err(why) = exported {
        if db.exists() {
            std::fs::remove_file(&db).map_err(Error::io(&db))?;
        }
        let n = by_queries(d1, &db, &wanted).await?;
        let note = format!("{why}; its {n} tables were read through paged queries instead");
        return Ok(Materialized { path: db, notes: vec![note], by_export: false, export_bookmark: None });
    }
    let mut conn = open(&db)?;
    let mut reread = Vec::new();
    for t in &wanted {
        if holds_unsafe_numbers(&conn, t)? {
            conn.execute_batch(&format!("DELETE FROM {}", quote_ident(t)))
                .map_err(Error::sqlite(local(t)))?;
            let cols = columns(&conn, t)?;
            copy_table(d1, t, &cols, &mut conn).await?;
            reread.push(t.clone());
        }
    }
    let notes = match reread.is_empty() {
        true => Vec::new(),
        false => vec![format!(
            "D1's export rounds numbers beyond 2^53 (it writes them as JavaScript numbers): table{} {} \
             read again through exact paged queries",
            if reread.len() == 1 { "" } else { "s" },
            reread.join(", ")
        )],
    };
    Ok(Materialized { path: db, notes, by_export: true, export_bookmark })
}

/// The export's own error text (Cloudflare's message), without pgflare's hint.
fn export_error(e: &Error) -> String {
    match e {
        // A JSON string (quoted) is shown as its text.
        Error::Api { message, .. } => {
            serde_json::from_str::<String>(message).unwrap_or_else(|_| message.clone())
        }
        other => other.to_string(),
    }
}

fn local(t: &str) -> String {
    format!("reading the local copy of D1 table {t}")
}

/// The local copy, with foreign keys off (pgflare's SQLite enforces them
/// by default): tables are copied in any order, some not at all.
fn open(db: &Path) -> Result<rusqlite::Connection> {
    let ctx = || format!("opening {}", db.display());
    let conn = rusqlite::Connection::open(db).map_err(Error::sqlite(ctx()))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(Error::sqlite(ctx()))?;
    Ok(conn)
}

/// The insertable columns of local table `t` (generated ones left out).
fn columns(conn: &rusqlite::Connection, t: &str) -> Result<Vec<String>> {
    let mut st = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")
        .map_err(Error::sqlite(local(t)))?;
    let names = st.query_map([t], |r| r.get(0)).map_err(Error::sqlite(local(t)))?;
    names.collect::<rusqlite::Result<Vec<String>>>().map_err(Error::sqlite(local(t)))
}

/// Does local table `t` (if it exists) hold an INTEGER or REAL of
/// magnitude 2^53 or more in any column?
fn holds_unsafe_numbers(conn: &rusqlite::Connection, t: &str) -> Result<bool> {
    let cols = columns(conn, t)?;
    if cols.is_empty() {
        return Ok(false);
    }
    let test = cols
        .iter()
        .map(|c| {
            let c = quote_ident(c);
            format!("(typeof({c}) IN ('integer', 'real') AND ({c} >= {UNSAFE} OR {c} <= -{UNSAFE}))")
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE {test})", quote_ident(t));
    conn.query_row(&sql, [], |r| r.get::<_, bool>(0)).map_err(Error::sqlite(local(t)))
}

/// Creates each of `tables` that D1 has (its own `CREATE TABLE`) in a new
/// SQLite file `db` and copies its rows through paged queries; returns
/// how many tables were copied.
async fn by_queries(d1: &D1, db: &Path, tables: &[String]) -> Result<usize> {
    let mut conn = open(db)?;
    let mut n = 0;
    for t in tables {
        let what = format!("reading the definition of D1 table {t}");
        let rows = d1
            .select(
                &what,
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                &[t.as_str().into()],
            )
            .await?;
        let Some(sql) = rows.first().and_then(|r| r.get("sql")).and_then(|v| v.as_str()) else { continue };
        conn.execute_batch(sql).map_err(Error::sqlite(local(t)))?;
        let cols = columns(&conn, t)?;
        copy_table(d1, t, &cols, &mut conn).await?;
        n += 1;
    }
    Ok(n)
}

/// Runs every statement of the SQL file `dump` on a new SQLite file.
fn replay(dump: &Path, db: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(db).map_err(Error::sqlite(format!("creating {}", db.display())))?;
    let context = || format!("replaying the D1 export into {}", db.display());
    // The dump orders tables as D1 listed them, not by foreign key.
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN",
    )
    .map_err(Error::sqlite(context()))?;
    let file = std::fs::File::open(dump).map_err(Error::io(dump))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let (mut splitter, mut statements, mut line) = (Splitter::default(), Vec::new(), String::new());
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(Error::io(dump))? == 0 {
            break;
        }
        splitter.push(&line, &mut statements);
        for s in statements.drain(..) {
            run(&conn, &s).map_err(Error::sqlite(context()))?;
        }
    }
    if let Some(s) = splitter.finish() {
        run(&conn, &s).map_err(Error::sqlite(context()))?;
    }
    conn.execute_batch("COMMIT").map_err(Error::sqlite(context()))
}

fn run(conn: &rusqlite::Connection, statement: &str) -> rusqlite::Result<()> {
    // D1 dumps begin with `PRAGMA defer_foreign_keys=TRUE`: harmless here.
    conn.execute_batch(statement)
}
