//! Runs SQL on one emulated D1 database with D1's rules: every request (all
//! its statements and batch entries, or a whole imported file) is one
//! transaction; SQL D1 refuses is refused here with a message naming the
//! rule; SQLite's limits are set to D1's. Errors carry SQLite's own message
//! followed by the result code name (`UNIQUE constraint failed: t.id:
//! SQLITE_CONSTRAINT`), which is how D1 reports them.
//!
//! The rules are enforced by SQLite itself where it can: an authorizer hook
//! refuses transactions, savepoints, PRAGMAs off D1's allowlist, ATTACH,
//! `_cf_` names and virtual-table modules other than fts5/rtree at prepare
//! time; `sqlite3_limit` sets every SQL limit of D1 (string/BLOB/row size,
//! statement length, columns, bound variables, expression depth, compound
//! SELECT terms, VDBE program size, function arguments, LIKE/GLOB pattern
//! length, attached databases, trigger depth) with the values and sources
//! of [`crate::cloudflare::limits`].

use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rusqlite::hooks::{AuthContext, Authorization};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{ffi, Connection, StatementStatus};
use serde::Serialize;
use serde_json::Value;

use super::d1_rules::{code_name, judge};
use crate::cloudflare::limits::{
    apply_d1_sql_limits, refused_limit, D1_MAX_BOUND_PARAMS as MAX_PARAMS,
    D1_MAX_STATEMENT_BYTES as MAX_STATEMENT_BYTES,
};
use crate::d1::split::{split, Splitter};
use crate::error::{Error, Result};

/// A statement group of a request: one `sql` (maybe several statements) and its params.
pub struct Entry {
    pub sql: String,
    pub params: Vec<Value>,
}

/// D1's per-statement `meta`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Meta {
    pub served_by: &'static str,
    pub duration: f64,
    pub changes: u64,
    /// A JavaScript number too (rounded past 2^53).
    #[serde(serialize_with = "js_rowid")]
    pub last_row_id: i64,
    pub changed_db: bool,
    pub size_after: u64,
    pub rows_read: u64,
    pub rows_written: u64,
}

fn js_rowid<S: serde::Serializer>(id: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    super::js_number::js_integer(*id).serialize(s)
}

pub struct Outcome {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub meta: Meta,
}

/// A refused or failed request: the text D1 would answer (code 7500).
#[derive(Debug)]
pub struct SqlError(pub String);

/// Shared between the authorizer hook and the executor: whether the SQL
/// being prepared is ours (transaction control, size queries) or the
/// client's, and why the last client statement was refused.
#[derive(Default)]
struct Guard {
    internal: bool,
    denial: Option<String>,
}

pub struct D1Conn {
    conn: Connection,
    guard: Arc<Mutex<Guard>>,
}

impl D1Conn {
    pub fn open(path: &Path) -> Result<D1Conn> {
        let ctx = format!("open {}", path.display());
        let conn = Connection::open(path).map_err(Error::sqlite(&ctx))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(Error::sqlite(&ctx))?;
        // Foreign keys are always enforced on D1. Source: cloudflare-docs
        // `src/content/docs/d1/sql-api/foreign-keys.mdx` (as `PRAGMA foreign_keys = on` in every
        // transaction; a query cannot change it).
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(Error::sqlite(&ctx))?;
        apply_d1_sql_limits(&conn).map_err(Error::sqlite(&ctx))?;
        let guard = Arc::new(Mutex::new(Guard::default()));
        let hook_guard = guard.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let mut g = hook_guard.lock().unwrap_or_else(PoisonError::into_inner);
            if g.internal {
                return Authorization::Allow;
            }
            match judge(&ctx.action) {
                None => Authorization::Allow,
                Some(reason) => {
                    g.denial = Some(reason);
                    Authorization::Deny
                }
            }
        }))
        .map_err(Error::sqlite(&ctx))?;
        Ok(D1Conn { conn, guard })
    }

    /// Runs our own SQL (not subject to the client rules).
    fn internal<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        self.guard.lock().unwrap_or_else(PoisonError::into_inner).internal = true;
        let r = f(&self.conn);
        self.guard.lock().unwrap_or_else(PoisonError::into_inner).internal = false;
        r
    }

    /// Database size in bytes (page_count * page_size), as D1's `size_after`.
    pub fn size(&self) -> u64 {
        self.internal(|c| {
            c.query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
    }

    /// User tables (D1's `num_tables` leaves out SQLite's and D1's own).
    pub fn num_tables(&self) -> u64 {
        self.internal(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
    }

    /// Gives the dump code read access without the client rules.
    pub fn with_internal<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.internal(f)
    }

    /// Runs a `query`/`raw` request as one transaction.
    pub fn run_request(&mut self, entries: &[Entry]) -> std::result::Result<Vec<Outcome>, SqlError> {
        self.transaction(|this| {
            let mut out = Vec::new();
            for entry in entries {
                if entry.params.len() > MAX_PARAMS {
                    return Err(SqlError(format!(
                        "too many SQL variables: {} bound parameters, D1 allows {MAX_PARAMS} per statement: \
                         SQLITE_ERROR",
                        entry.params.len()
                    )));
                }
                let statements = split(&entry.sql);
                if statements.is_empty() {
                    return Err(SqlError("No SQL statements detected.: SQLITE_ERROR".into()));
                }
                let several = statements.len() > 1;
                // D1 runs a multi-statement `sql` the way workerd's
                // `SqliteDatabase::prepareSql` (cloudflare/workerd
                // src/workerd/util/sqlite.c++, MULTI) does: each
                // `sqlite3_prepare_v3` is given the whole text not yet run
                // (`sqlCode.size()`), so SQLite's length limit applies to
                // that remainder, not to one statement: 300 KB of 1 KB
                // statements fails with "statement too long" where a
                // `batch` of the same statements passes. And only the last
                // statement may have parameters.
                let mut remaining: usize = statements.iter().map(String::len).sum();
                for (i, sql) in statements.iter().enumerate() {
                    if several && remaining > MAX_STATEMENT_BYTES {
                        return Err(SqlError(format!(
                            "statement too long: the {remaining} bytes of SQL from statement {} on are one \
                             prepare for D1 (a multi-statement `sql` is prepared as a whole), D1 allows \
                             {MAX_STATEMENT_BYTES} bytes: SQLITE_TOOBIG",
                            i + 1
                        )));
                    }
                    remaining -= sql.len();
                    let last = i + 1 == statements.len();
                    out.push(this.exec(sql, &entry.params, several, true, last)?);
                }
            }
            let size = this.size();
            for o in &mut out {
                o.meta.size_after = size;
            }
            Ok(out)
        })
    }

    /// Runs a whole SQL file (the import API) as one transaction; returns
    /// the number of statements and the summed meta. A failed file changes nothing.
    /// Source: cloudflare/workers-sdk `packages/wrangler/src/d1/execute.ts` ("if the execution
    /// fails to complete, your DB will return to its original state and you can safely retry").
    pub fn run_file(&mut self, reader: impl BufRead) -> std::result::Result<(u64, Meta), SqlError> {
        let started = Instant::now();
        let (n, mut meta) = self.transaction(|this| {
            let mut meta = Meta { served_by: super::SERVED_BY, ..Meta::default() };
            let mut n = 0u64;
            let mut splitter = Splitter::default();
            let mut pending = Vec::new();
            let mut lines = reader;
            let mut line = String::new();
            loop {
                line.clear();
                let read =
                    lines.read_line(&mut line).map_err(|e| SqlError(format!("reading the file: {e}")))?;
                if read == 0 {
                    pending.extend(splitter.finish());
                } else {
                    splitter.push(&line, &mut pending);
                }
                for sql in pending.drain(..) {
                    let o = this.exec(&sql, &[], false, false, true)?;
                    n += 1;
                    meta.changes += o.meta.changes;
                    meta.rows_read += o.meta.rows_read;
                    meta.rows_written += o.meta.rows_written;
                    meta.changed_db |= o.meta.changed_db;
                    if o.meta.changes > 0 {
                        meta.last_row_id = o.meta.last_row_id;
                    }
                }
                if read == 0 {
                    break;
                }
            }
            Ok((n, meta))
        })?;
        meta.duration = started.elapsed().as_secs_f64() * 1000.0;
        meta.size_after = self.size();
        Ok((n, meta))
    }

    /// BEGIN, run, COMMIT; any error (including a deferred foreign-key
    /// violation found at COMMIT) rolls everything back.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> std::result::Result<T, SqlError>,
    ) -> std::result::Result<T, SqlError> {
        self.internal(|c| c.execute_batch("BEGIN IMMEDIATE")).map_err(|e| self.sql_error(e))?;
        let result = f(self).and_then(|v| {
            self.internal(|c| c.execute_batch("COMMIT")).map(|_| v).map_err(|e| self.sql_error(e))
        });
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.internal(|c| c.execute_batch("ROLLBACK"));
        }
        result
    }

    /// One statement. With `lenient`, a statement without placeholders in a
    /// multi-statement `sql` ignores the request's params.
    fn exec(
        &self,
        sql: &str,
        params: &[Value],
        lenient: bool,
        keep_rows: bool,
        last: bool,
    ) -> std::result::Result<Outcome, SqlError> {
        if sql.len() > MAX_STATEMENT_BYTES {
            return Err(SqlError(format!(
                "statement too long: {} bytes, D1 allows {MAX_STATEMENT_BYTES} bytes per statement: SQLITE_TOOBIG",
                sql.len()
            )));
        }
        self.guard.lock().unwrap_or_else(PoisonError::into_inner).denial = None;
        let started = Instant::now();
        let before = self.conn.total_changes();
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sql_error(e))?;
        let expected = stmt.parameter_count();
        if !last && expected > 0 {
            // workerd prepareSql (MULTI): "When executing multiple SQL
            // statements in a single call, only the last statement can
            // have parameters."
            return Err(SqlError(
                "When executing multiple SQL statements in a single call, only the last statement can have \
                 parameters.: SQLITE_ERROR"
                    .into(),
            ));
        }
        let bind = !(lenient && expected == 0);
        if bind && expected != params.len() {
            return Err(SqlError(format!(
                "Wrong number of parameter bindings for SQL query: the statement has {expected}, the request \
                 gave {}: SQLITE_RANGE",
                params.len()
            )));
        }
        if bind {
            for (i, p) in params.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, json_to_sql(p)?).map_err(|e| self.sql_error(e))?;
            }
        }
        let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let readonly = stmt.readonly();
        let mut rows_out = Vec::new();
        let mut returned = 0u64;
        {
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(|e| self.sql_error(e))? {
                returned += 1;
                if keep_rows {
                    let mut r = Vec::with_capacity(columns.len());
                    for i in 0..columns.len() {
                        r.push(sql_to_json(row.get_ref(i).map_err(|e| self.sql_error(e))?));
                    }
                    rows_out.push(r);
                }
            }
        }
        // rows_read approximates D1's counter: rows returned or rows scanned.
        let scanned = stmt.get_status(StatementStatus::FullscanStep).max(0) as u64;
        let changes = self.conn.total_changes().saturating_sub(before);
        let meta = Meta {
            served_by: super::SERVED_BY,
            duration: started.elapsed().as_secs_f64() * 1000.0,
            changes,
            last_row_id: self.conn.last_insert_rowid(),
            changed_db: !readonly || changes > 0,
            size_after: 0,
            rows_read: returned.max(scanned),
            rows_written: changes,
        };
        Ok(Outcome { columns, rows: rows_out, meta })
    }

    /// SQLite's message + code name, with the D1 rule that applies.
    fn sql_error(&self, e: rusqlite::Error) -> SqlError {
        let rusqlite::Error::SqliteFailure(err, msg) = &e else {
            return SqlError(format!("{e}: SQLITE_ERROR"));
        };
        let text = msg.clone().unwrap_or_else(|| err.to_string());
        let code = code_name(err.extended_code & 0xff);
        let rule = if err.extended_code & 0xff == ffi::SQLITE_AUTH {
            self.guard.lock().unwrap_or_else(PoisonError::into_inner).denial.take()
        } else {
            refused_limit(&text).map(|l| format!("D1 allows {} {}", l.value, l.name))
        };
        match rule {
            Some(rule) => SqlError(format!("{text} ({rule}): {code}")),
            None => SqlError(format!("{text}: {code}")),
        }
    }
}

/// A JSON param as D1 binds it: booleans become 0/1, objects and arrays
/// are refused. (Over the REST API `params` are strings only, `d1.rs`.)
/// Source: cloudflare-docs `src/content/docs/d1/worker-api/index.mdx` ("Type conversion": a
/// Boolean is cast to an INTEGER, 1 for TRUE and 0 for FALSE).
fn json_to_sql(v: &Value) -> std::result::Result<SqlValue, SqlError> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err(SqlError(format!(
                "Type '{}' not supported for value '{v}': D1 binds null, numbers, booleans and strings: \
                 SQLITE_MISMATCH",
                if v.is_array() { "array" } else { "object" }
            )))
        }
    })
}

/// A SQLite value as D1 returns it; a BLOB is an array of byte numbers.
/// Source: cloudflare-docs `src/content/docs/d1/worker-api/index.mdx` ("Type conversion": a
/// BLOB reads back as an Array); observed: cloudflare/workers-sdk#8642 (an Array, not an
/// ArrayBuffer).
/// An INTEGER passes through a JavaScript number on its way out, so one
/// beyond 2^53 comes back rounded ([`super::js_number`]).
pub fn sql_to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => super::js_number::js_integer(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Array(b.iter().map(|&x| Value::from(x)).collect()),
    }
}
