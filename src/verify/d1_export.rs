//! A remote D1 database made local for verification: exported through the
//! D1 API (`export`, the flow `wrangler d1 export` uses), streamed to a
//! file, and replayed statement by statement into a fresh SQLite file, which
//! is then read like any local D1 file. The dump is never held in memory:
//! it is read line by line through the same statement splitter the emulator
//! uses for imports (strings and trigger bodies may hold `;`).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::cloudflare::D1;
use crate::d1::split::Splitter;
use crate::error::{Error, Result};

/// Exports `d1` into `dir` and returns the SQLite file holding its tables.
pub async fn materialize(d1: &D1, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let dump = dir.join("d1-export.sql");
    let what = format!("D1 {}", d1.database_id());
    d1.export_to(&what, &dump).await?;
    let db = dir.join("d1-export.sqlite");
    if db.exists() {
        std::fs::remove_file(&db).map_err(Error::io(&db))?;
    }
    let (d, s) = (dump.clone(), db.clone());
    tokio::task::spawn_blocking(move || replay(&d, &s))
        .await
        .map_err(|e| Error::Internal(format!("replaying the D1 export died: {e}")))??;
    std::fs::remove_file(&dump).map_err(Error::io(&dump))?;
    Ok(db)
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
