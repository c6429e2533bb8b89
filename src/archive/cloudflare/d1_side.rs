//! The D1 side of an archive of Cloudflare: the database made a local
//! SQLite file that nothing else writes (the API's export, or a copy of a
//! local D1 file taken in one read transaction with `VACUUM INTO`), with
//! the point it was read at (Time Travel bookmarks around the read, the
//! export's own bookmark), and the check that every table, column and
//! value of it can be archived in the source's types, before anything is
//! written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::tables::CfTable;
use crate::cloudflare::D1;
use crate::d1::read::{read_rows, table_exists};
use crate::digest::key_display;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::archive::manifest::D1Read;

/// Where D1 is.
#[derive(Clone)]
pub enum D1At {
    /// A local D1 file (wrangler's local state, the `sqlite` load target,
    /// the emulator's file).
    File(PathBuf),
    Api(Arc<D1>),
}

/// D1 as a local file of our own, and how and when it was read.
pub struct LocalD1 {
    pub path: PathBuf,
    pub read: D1Read,
    pub notes: Vec<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Makes D1 local under `work` (the copy is `work`/d1-*.sqlite).
pub async fn make_local(at: &D1At, tables: &[CfTable], work: &Path, progress: &Progress) -> Result<LocalD1> {
    std::fs::create_dir_all(work).map_err(Error::io(work))?;
    match at {
        D1At::File(file) => copy_file(file, work),
        D1At::Api(d1) => {
            let bar = progress.spinner("D1");
            bar.set_message(format!("exporting database {}", d1.database_id()));
            let got = export(d1, tables, work).await;
            bar.finish_and_clear();
            got
        }
    }
}

/// A consistent copy of a local D1 file: `VACUUM INTO` reads the source
/// in one read transaction (sqlite.org/lang_vacuum.html, "VACUUM INTO"),
/// so a process writing the file meanwhile cannot tear the archive.
fn copy_file(file: &Path, work: &Path) -> Result<LocalD1> {
    if !file.is_file() {
        return Err(Error::Config {
            setting: "--sqlite".into(),
            message: format!("{} does not exist: name the D1 SQLite file to archive", file.display()),
        });
    }
    let read_at = now();
    let copy = work.join("d1-file-copy.sqlite");
    if copy.exists() {
        std::fs::remove_file(&copy).map_err(Error::io(&copy))?;
    }
    let ctx = || format!("copying the D1 file {}", file.display());
    let conn = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(ctx()))?;
    conn.execute("VACUUM INTO ?1", [copy.display().to_string()]).map_err(Error::sqlite(ctx()))?;
    let version: String =
        conn.query_row("SELECT sqlite_version()", [], |r| r.get(0)).map_err(Error::sqlite(ctx()))?;
    let read = D1Read {
        sqlite_file: Some(std::path::absolute(file).unwrap_or(file.to_path_buf()).display().to_string()),
        read_by: "file".into(),
        read_at,
        sqlite_version: version,
        ..D1Read::default()
    };
    Ok(LocalD1 { path: copy, read, notes: Vec::new() })
}

/// The database over the API: its name, the bookmark before, the export
/// (or paged queries), the bookmark after.
async fn export(d1: &D1, tables: &[CfTable], work: &Path) -> Result<LocalD1> {
    let mut notes = Vec::new();
    let read_at = now();
    let info = d1.database().await?;
    let before = bookmark(d1, &mut notes).await;
    let rows = d1.select("D1: SQLite version", "SELECT sqlite_version() AS v", &[]).await?;
    let version = rows.first().and_then(|r| r["v"].as_str()).unwrap_or("unknown").to_string();
    let names: Vec<String> = tables.iter().map(|t| t.d1.name.clone()).collect();
    let m = crate::plan::d1_export::materialize(d1, work, &names).await?;
    let after = bookmark(d1, &mut notes).await;
    notes.extend(m.notes);
    if let (Some(b), Some(a)) = (&before, &after) {
        if a != b {
            notes.push(format!(
                "D1 took writes while it was read (Time Travel bookmark {b} before, {a} after){}; stop \
                 the writers and archive again for one point in time",
                match (&m.export_bookmark, m.by_export) {
                    (Some(x), true) => format!(": the export holds the state of bookmark {x}"),
                    _ => String::new(),
                }
            ));
        }
    }
    let read = D1Read {
        database_id: Some(d1.database_id().to_string()),
        database_name: info.get("name").and_then(|v| v.as_str()).map(str::to_string),
        read_by: if m.by_export { "export" } else { "queries" }.into(),
        bookmark_before: before,
        bookmark_after: after,
        export_bookmark: m.export_bookmark,
        read_at,
        sqlite_version: version,
        ..D1Read::default()
    };
    Ok(LocalD1 { path: m.path, read, notes })
}

/// The current Time Travel bookmark; a failure to read it is a note, not
/// the end of the archive (the rows are what matters).
async fn bookmark(d1: &D1, notes: &mut Vec<String>) -> Option<String> {
    match d1.bookmark().await {
        Ok(b) => Some(b),
        Err(e) => {
            notes.push(format!(
                "the D1 Time Travel bookmark could not be read ({e}): the read point is the time"
            ));
            None
        }
    }
}

/// What the check of the local D1 found: rows per table, and what the
/// manifest should say.
pub struct Checked {
    pub rows: Vec<u64>,
    pub notes: Vec<String>,
}

/// Before anything is written: every table and D1 column exists, every
/// value reads back as its source type; a NULL in a column the source
/// declares NOT NULL makes that archived column nullable (and a note).
pub fn check(path: &Path, tables: &mut [CfTable], batch_rows: usize) -> Result<Checked> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(format!("opening {}", path.display())))?;
    let mut out = Checked { rows: Vec::new(), notes: Vec::new() };
    for t in tables.iter_mut() {
        check_shape(&conn, t)?;
        let (rows, nulls) = check_values(&conn, t, batch_rows)?;
        for (column, n) in nulls {
            if let Some(c) = t.spec.columns.iter_mut().find(|c| c.name == column) {
                c.nullable = true;
            }
            out.notes.push(format!(
                "{}.{column}: {n} rows hold NULL in D1 where the source declares NOT NULL; the archive \
                 keeps them (the column is nullable in it); a restore into Postgres needs them set first",
                t.spec.qualified()
            ));
        }
        out.rows.push(rows);
    }
    Ok(out)
}

/// The D1 table and every column the mapping names exist.
fn check_shape(conn: &rusqlite::Connection, t: &CfTable) -> Result<()> {
    let name = &t.d1.name;
    if !table_exists(conn, name)? {
        return Err(Error::Config {
            setting: format!("table {}", t.spec.qualified()),
            message: format!(
                "D1 has no table `{name}`: archive the D1 database `load` filled (or leave the table out \
                 with --table)"
            ),
        });
    }
    let ctx = || format!("reading the columns of D1 table {name}");
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1)").map_err(Error::sqlite(ctx()))?;
    let have: Vec<String> = st
        .query_map([name], |r| r.get(0))
        .map_err(Error::sqlite(ctx()))?
        .collect::<rusqlite::Result<_>>()
        .map_err(Error::sqlite(ctx()))?;
    for (c, source) in t.d1.spec.columns.iter().zip(&t.d1.source_columns) {
        if !have.iter().any(|h| h.eq_ignore_ascii_case(&c.name)) {
            return Err(Error::Config {
                setting: format!("table {}, column {source}", t.spec.qualified()),
                message: format!(
                    "D1 table `{name}` has no column `{}` (the mapping sends source column `{source}` \
                     there); its columns are: {}",
                    c.name,
                    have.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Reads every row once: counts them, refuses the first value that is not
/// its source type, counts NULLs of NOT NULL source columns.
fn check_values(
    conn: &rusqlite::Connection,
    t: &CfTable,
    batch_rows: usize,
) -> Result<(u64, Vec<(String, u64)>)> {
    let spec = &t.d1.spec;
    let key = spec.key_indices();
    let mut rows = 0u64;
    let mut nulls = vec![0u64; spec.columns.len()];
    read_rows(conn, &t.d1.name, spec, batch_rows, None, &mut |batch, odd| {
        if let Some(u) = odd.first() {
            let (column, source) = (&spec.columns[u.column].name, &t.d1.source_columns[u.column]);
            return Err(Error::Value {
                table: format!("D1 {} (source {})", t.d1.name, t.spec.qualified()),
                column: format!("{column} (source {source})"),
                key: key_display(&batch, &key, u.row),
                message: format!(
                    "holds {}, which is not a {} as pgflare writes it",
                    u.found, spec.columns[u.column].pg_type
                ),
                hint: "the archive keeps the source's types: fix the value in D1 (e.g. `wrangler d1 \
                       execute`), or leave the column out of the mapping (d1_columns in pgflare.toml)"
                    .into(),
            });
        }
        for (i, c) in spec.columns.iter().enumerate() {
            if !c.nullable {
                nulls[i] += batch.column(i).null_count() as u64;
            }
        }
        rows += batch.num_rows() as u64;
        Ok(())
    })?;
    let found = nulls
        .into_iter()
        .enumerate()
        .filter(|(_, n)| *n > 0)
        .map(|(i, n)| (t.d1.source_columns[i].clone(), n))
        .collect();
    Ok((rows, found))
}
