//! The D1 `sqlite` target: the rows the files' statements hold, applied to
//! a local SQLite file (for example the one `wrangler d1 execute --local`
//! keeps under `.wrangler/state/v3/d1/`). Foreign keys are enforced as D1
//! enforces them; each batch is one transaction, deferred foreign keys
//! included. Batches share one open transaction, committed every
//! [`COMMIT_BYTES`] and whenever a partition finishes (before the load
//! records it as done): a commit per 2 MiB batch journals, again and
//! again, the index pages that random keys spread over the whole file,
//! which made the target slow down faster than it grew (BENCHMARKS.md). A
//! kill leaves whole commits only, and partitions not recorded as done are
//! loaded again (the upserts are idempotent). A failed batch rolls back
//! the shared transaction; every partition that had written into it is
//! refused at its next write or finish, so none can finish on rows that
//! were rolled back (later transactions, e.g. the next sync run, go on). The
//! page cache is [`CACHE_KIB`] (SQLite's default 2 MiB sends every page
//! of a large file through the kernel). The connection has D1's
//! SQL limits ([`apply_d1_sql_limits`]). Rows are bound to one prepared
//! upsert (the files' statement with parameters for literals), not written
//! as SQL text and parsed back: the same values in the same storage
//! classes, the same upsert, the same per-row refusals (a test dumps a
//! database built from the files and one built here and compares them).
//! Statements given as text (the schema, sync's deletes) run one at a
//! time, as D1 runs them, so SQL that D1 would refuse fails here too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use super::render::{D1Mappings, Renderer};
use super::value::D1Value;
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::cloudflare::limits::{apply_d1_sql_limits, shape_limit_hint, D1_MAX_STATEMENT_BYTES};
use crate::d1::split::split;
use crate::error::{Error, Result};

/// Bytes of rows (as the files' statements) written before a commit.
pub const COMMIT_BYTES: u64 = 64 << 20;

/// SQLite's page cache for the target, in KiB (bounded, whatever the file's size).
pub const CACHE_KIB: u32 = 64 << 10;

/// The connection and the transaction the batches share.
struct Held {
    conn: Connection,
    /// Bytes written in the open transaction; `None` when none is open.
    open: Option<u64>,
    /// The number of the open (or last) transaction.
    generation: u64,
    /// Transactions rolled back after a failed batch, with the failure.
    rolled_back: std::collections::HashMap<u64, String>,
}

impl Held {
    /// Opens the shared transaction if none is; returns its number.
    fn begin(&mut self, ctx: &str) -> Result<u64> {
        if self.open.is_none() {
            self.conn.execute_batch("BEGIN; PRAGMA defer_foreign_keys = on;").map_err(Error::sqlite(ctx))?;
            self.generation += 1;
            self.open = Some(0);
        }
        Ok(self.generation)
    }

    /// Refuses a partition whose rows went into a transaction that was
    /// rolled back after another batch failed.
    fn check(&self, ctx: &str, wrote_in: &[u64]) -> Result<()> {
        match wrote_in.iter().find_map(|g| self.rolled_back.get(g)) {
            Some(why) => Err(Error::Internal(format!(
                "{ctx}: rows of this partition were rolled back with a failed batch of the same \
                 transaction ({why}); run the load again once that is fixed"
            ))),
            None => Ok(()),
        }
    }

    /// Commits the shared transaction, if one is open.
    fn commit(&mut self, ctx: &str) -> Result<()> {
        if self.open.is_some() {
            if let Err(e) = self.conn.execute_batch("COMMIT;") {
                self.abandon(&e.to_string());
                return Err(Error::sqlite(ctx)(e));
            }
            self.open = None;
        }
        Ok(())
    }

    fn abandon(&mut self, why: &str) {
        let _ = self.conn.execute_batch("ROLLBACK;");
        if self.open.take().is_some() {
            self.rolled_back.insert(self.generation, why.to_string());
        }
    }
}

/// Settings and the open database of the `sqlite` target.
#[derive(Clone)]
pub struct D1SqliteConfig {
    pub path: PathBuf,
    pub mappings: D1Mappings,
    pub max_statement_bytes: usize,
    conn: Arc<Mutex<Held>>,
}

impl D1SqliteConfig {
    /// Opens (or creates) the SQLite file.
    pub fn open(path: &Path, mappings: D1Mappings) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let ctx = format!("opening {}", path.display());
        let conn = Connection::open(path).map_err(Error::sqlite(&ctx))?;
        conn.execute_batch("PRAGMA foreign_keys = ON;").map_err(Error::sqlite(&ctx))?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(Error::sqlite(&ctx))?;
        apply_d1_sql_limits(&conn).map_err(Error::sqlite(&ctx))?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB};")).map_err(Error::sqlite(&ctx))?;
        Ok(D1SqliteConfig {
            path: path.to_path_buf(),
            mappings,
            max_statement_bytes: D1_MAX_STATEMENT_BYTES,
            conn: Arc::new(Mutex::new(Held {
                conn,
                open: None,
                generation: 0,
                rolled_back: Default::default(),
            })),
        })
    }

    /// Runs statements (e.g. the schema) in one transaction, one by one:
    /// SQLite measures the statement length limit over all the text it is
    /// given, D1 per statement.
    pub fn execute(&self, what: &str, sql: &str) -> Result<()> {
        let ctx = format!("{}: {what}", self.path.display());
        let mut held = self.held(&ctx)?;
        let tx = held.conn.transaction().map_err(Error::sqlite(&ctx))?;
        tx.execute_batch("PRAGMA defer_foreign_keys = on;").map_err(Error::sqlite(&ctx))?;
        for s in split(sql) {
            tx.execute_batch(&s).map_err(|e| statement_error(&ctx, &s, e))?;
        }
        tx.commit().map_err(Error::sqlite(&ctx))
    }
}

impl D1SqliteConfig {
    /// Runs single statements in one transaction (as one D1 request);
    /// returns the rows they changed.
    pub fn execute_counting(&self, what: &str, statements: &[&str]) -> Result<u64> {
        self.with_conn(|conn| {
            let ctx = format!("{}: {what}", self.path.display());
            let tx = conn.transaction().map_err(Error::sqlite(&ctx))?;
            tx.execute_batch("PRAGMA defer_foreign_keys = on;").map_err(Error::sqlite(&ctx))?;
            let mut changed = 0;
            for s in statements {
                changed += tx.execute(s, []).map_err(|e| Error::Sqlite {
                    context: format!("{ctx}, statement `{}`", preview(s)),
                    source: e,
                })? as u64;
            }
            tx.commit().map_err(Error::sqlite(&ctx))?;
            Ok(changed)
        })
    }

    /// Runs `f` on the open connection (queries of the sync job).
    pub fn with_conn<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R>) -> Result<R> {
        let mut held = self.held(&format!("{}: reading", self.path.display()))?;
        f(&mut held.conn)
    }

    /// The connection, the batches' open transaction committed first (what
    /// runs next reads or writes after them, in its own transaction).
    fn held(&self, ctx: &str) -> Result<std::sync::MutexGuard<'_, Held>> {
        let mut held = self.conn.lock().map_err(|_| Error::Internal("sqlite connection poisoned".into()))?;
        held.commit(ctx)?;
        Ok(held)
    }
}

impl SinkFactory for D1SqliteConfig {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let renderer = Renderer::new(table, &self.mappings.get(table), self.max_statement_bytes)?;
        Ok(Box::new(SqliteSink {
            sql: renderer.bound_statement(),
            renderer,
            config: self.clone(),
            what: format!("{} partition {partition}", table.qualified()),
            report: SinkReport::default(),
            wrote_in: Vec::new(),
        }))
    }
}

struct SqliteSink {
    /// The renderer's one-row upsert, prepared once per connection.
    sql: String,
    renderer: Renderer,
    config: D1SqliteConfig,
    what: String,
    report: SinkReport,
    /// The shared transactions this partition wrote into.
    wrote_in: Vec<u64>,
}

impl BatchSink for SqliteSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let b = &batch.batch;
        if b.num_rows() == 0 {
            return Ok(());
        }
        let mut held =
            self.config.conn.lock().map_err(|_| Error::Internal("sqlite connection poisoned".into()))?;
        let ctx = format!("{}: loading {}", self.config.path.display(), self.what);
        held.check(&ctx, &self.wrote_in)?;
        let generation = held.begin(&ctx)?;
        if self.wrote_in.last() != Some(&generation) {
            self.wrote_in.push(generation);
        }
        // One prepared upsert, each row's values bound to it: the values
        // the files' statements hold, without writing their SQL text and
        // having SQLite parse it back (BENCHMARKS.md).
        let bytes = {
            let Held { conn, .. } = &mut *held;
            let sql = &self.sql;
            conn.prepare_cached(sql).map_err(|e| statement_error(&ctx, sql, e)).and_then(|mut stmt| {
                self.renderer.bind(b, &mut |values, key| {
                    for (i, v) in values.iter().enumerate() {
                        stmt.raw_bind_parameter(i + 1, Bound(v)).map_err(Error::sqlite(&ctx))?;
                    }
                    stmt.raw_execute().map_err(|e| row_error(&ctx, sql, &key(), e))?;
                    Ok(())
                })
            })
        };
        let bytes = match bytes {
            Ok(n) => n,
            Err(e) => {
                held.abandon(&e.to_string());
                return Err(e);
            }
        };
        self.report.bytes += bytes;
        self.report.rows += b.num_rows() as u64;
        let pending = held.open.map(|n| n + bytes).unwrap_or(bytes);
        held.open = Some(pending);
        if pending >= COMMIT_BYTES {
            held.commit(&ctx)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        // The partition's rows are durable before its report is recorded.
        let ctx = format!("{}: finishing {}", self.config.path.display(), self.what);
        let mut held =
            self.config.conn.lock().map_err(|_| Error::Internal("sqlite connection poisoned".into()))?;
        held.check(&ctx, &self.wrote_in)?;
        held.commit(&ctx)?;
        Ok(self.report)
    }
}

/// A D1 value bound as SQLite stores it (the same storage class and value
/// as its literal: reals are the f64 the literal's shortest form reads
/// back to, infinities included).
struct Bound<'a, 'v>(&'a D1Value<'v>);

impl rusqlite::ToSql for Bound<'_, '_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            D1Value::Null => ValueRef::Null,
            D1Value::Integer(i) => ValueRef::Integer(*i),
            D1Value::Real(f) => ValueRef::Real(*f),
            D1Value::Text(s) => ValueRef::Text(s.as_bytes()),
            D1Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A bound row's failure, named by its key.
fn row_error(ctx: &str, sql: &str, key: &str, source: rusqlite::Error) -> Error {
    statement_error(&format!("{ctx}, row {key}"), sql, source)
}

/// A statement's failure, named by its start; when D1's limits refused it
/// for its shape (not its data), says that pgflare is at fault.
pub fn statement_error(ctx: &str, sql: &str, source: rusqlite::Error) -> Error {
    let mut context = format!("{ctx}, statement `{}`", preview(sql));
    if let Some(hint) = shape_limit_hint(ctx, &source.to_string()) {
        context.push_str(&format!(" ({hint})"));
    }
    Error::Sqlite { context, source }
}

/// The start of a statement, for an error message.
pub fn preview(s: &str) -> String {
    let t = s.trim();
    match t.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_target_refuses_what_d1_refuses_and_runs_what_d1_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = D1SqliteConfig::open(&dir.path().join("d1.sqlite"), D1Mappings::default()).expect("open");
        c.execute("setup", "CREATE TABLE t (id INTEGER PRIMARY KEY);").expect("setup");
        // Over D1's expression depth: refused, naming the limit and pgflare.
        let deep = (0..150).map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ");
        let e = c
            .execute("a deep read", &format!("DELETE FROM t WHERE {deep};"))
            .expect_err("too deep")
            .to_string();
        for part in [
            "Expression tree is too large",
            "a deep read",
            "100 levels of expression nesting",
            "pgflare limit problem",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        // Statements of 5 KB each, 150 KB in all: D1 limits each statement,
        // not the request, and so does this target.
        let many: String =
            (0..30).map(|i| format!("INSERT INTO t VALUES ({i}); -- {}\n", "x".repeat(5000))).collect();
        c.execute("many statements", &many).expect("each statement is within the limit");
        let n: i64 = c
            .with_conn(|conn| {
                conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).map_err(Error::sqlite("count"))
            })
            .expect("count");
        assert_eq!(n, 30);
    }
}
