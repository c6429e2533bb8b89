//! The link step (see [`super::links`]): once every row of a table's
//! cycle is in D1, one key range's link values (from its spool file,
//! [`super::link_spool`]) are sent as update statements ([`super::link_sql`]).
//! The `files` target writes them as `<table>/link-<range>-<n>.sql`, to
//! run after every data file; `sqlite` and `api` run them, a group of
//! statements per transaction or `query` request, and ask D1 which rows
//! it left out when a group changed fewer rows than it named: those point
//! at a row D1 does not have (a load resumed at a later snapshot, or a
//! soft-deleted parent). They keep their placeholder and are counted and
//! named, never silently; `pgflare sync` sets them once the row they
//! point at is there.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::link_sql::{LinkPacker, LinkSql, LinkStatement};
use super::render::D1Mapping;
use super::sqlite::D1SqliteConfig;
use crate::batch::sink::FileReport;
use crate::batch::TableSpec;
use crate::cloudflare::D1;
use crate::digest::DigestSum;
use crate::error::{Error, Result};
use crate::sink::file::HashingFile;

/// Rows named per report when their link stays unset.
pub const EXAMPLES: usize = 20;

const FILE_HEADER: &str = "PRAGMA defer_foreign_keys = on;\n";

/// Where the link statements go.
#[derive(Clone)]
pub enum LinkTarget {
    /// SQL files under `dir`, rolled past `file_bytes`.
    Files {
        dir: PathBuf,
        file_bytes: u64,
    },
    Sqlite(D1SqliteConfig),
    /// `query` requests of at most `query_bytes` of SQL.
    Api {
        d1: Arc<D1>,
        query_bytes: usize,
    },
}

/// What the link step did for one key range (or a whole table).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    /// Rows whose link values were sent.
    pub rows: u64,
    /// Of those, rows D1 left with the placeholder: the row they point at
    /// is not in D1 (unknown for files, which run later).
    pub unresolved: u64,
    /// Up to [`EXAMPLES`] of them: `link: key=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// The files written (`files` target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileReport>,
}

impl LinkReport {
    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.files.is_empty()
    }

    pub fn merge(&mut self, other: LinkReport) {
        self.rows += other.rows;
        self.unresolved += other.unresolved;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
        self.files.extend(other.files);
    }
}

/// Sends the links of one key range of `table` (its spool file `spool`).
pub async fn apply(
    target: &LinkTarget,
    spool: &Path,
    table: &TableSpec,
    mapping: &D1Mapping,
    partition: usize,
    max_statement_bytes: usize,
) -> Result<LinkReport> {
    let sqls: Vec<LinkSql> = mapping.links.iter().map(|l| LinkSql::new(l, &mapping.key)).collect();
    let statements = statements(spool, &sqls, max_statement_bytes)?;
    let what = format!("setting the links of {} (range {partition})", table.qualified());
    match target {
        LinkTarget::Files { dir, file_bytes } => write_files(dir, *file_bytes, table, partition, &statements),
        LinkTarget::Sqlite(c) => {
            let mut report = LinkReport::default();
            for group in groups(&statements, 1 << 20) {
                let sql: Vec<&str> = group.iter().map(|(_, s)| s.sql.as_str()).collect();
                let changed = c.execute_counting(&what, &sql)?;
                let rows: u64 = group.iter().map(|(_, s)| s.rows).sum();
                report.rows += rows;
                if changed < rows {
                    for (n, s) in group {
                        let check = sqls[*n].check(s);
                        let missing = c.with_conn(|conn| select_text(conn, &check))?;
                        left_out(&mut report, &sqls[*n], missing);
                    }
                }
            }
            Ok(report)
        }
        LinkTarget::Api { d1, query_bytes } => {
            let mut report = LinkReport::default();
            for group in groups(&statements, *query_bytes) {
                let sql: String = group.iter().map(|(_, s)| s.sql.as_str()).collect();
                let applied = d1.query(&what, &sql).await?;
                let rows: u64 = group.iter().map(|(_, s)| s.rows).sum();
                report.rows += rows;
                if applied.changes < rows {
                    for (n, s) in group {
                        let found = d1.select(&what, &sqls[*n].check(s), &[]).await?;
                        let missing = found.iter().map(|r| json_row(r, &sqls[*n].key)).collect();
                        left_out(&mut report, &sqls[*n], missing);
                    }
                }
            }
            Ok(report)
        }
    }
}

/// Every statement of a spool file, with the number of its link.
fn statements(spool: &Path, sqls: &[LinkSql], max: usize) -> Result<Vec<(usize, LinkStatement)>> {
    let mut packers: Vec<LinkPacker> = sqls.iter().map(|s| LinkPacker::new(s, max)).collect();
    let mut out = Vec::new();
    super::link_spool::read(spool, &mut |n, tuple| {
        let p = packers
            .get_mut(n)
            .ok_or_else(|| Error::Internal(format!("{}: link {n} is not planned", spool.display())))?;
        p.push(tuple, &mut |s| {
            out.push((n, s));
            Ok(())
        })
    })?;
    for (n, p) in packers.iter_mut().enumerate() {
        p.flush(&mut |s| {
            out.push((n, s));
            Ok(())
        })?;
    }
    Ok(out)
}

/// Consecutive statements in groups of at most `max` bytes (a lone one may be more).
fn groups(statements: &[(usize, LinkStatement)], max: usize) -> Vec<&[(usize, LinkStatement)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, s)) in statements.iter().enumerate() {
        if i > start && bytes + s.sql.len() > max {
            out.push(&statements[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += s.sql.len();
    }
    if start < statements.len() {
        out.push(&statements[start..]);
    }
    out
}

fn left_out(report: &mut LinkReport, sql: &LinkSql, keys: Vec<String>) {
    report.unresolved += keys.len() as u64;
    let room = EXAMPLES.saturating_sub(report.examples.len());
    report.examples.extend(keys.into_iter().take(room).map(|k| format!("{}: {k}", sql.name)));
}

/// Rows of a check query as `col=value, ...` (the query names its columns after the key).
fn select_text(conn: &mut rusqlite::Connection, sql: &str) -> Result<Vec<String>> {
    let ctx = || format!("finding rows whose link was left unset: `{}`", super::sqlite::preview(sql));
    let mut st = conn.prepare(sql).map_err(Error::sqlite(ctx()))?;
    let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    let mut rows = st.query([]).map_err(Error::sqlite(ctx()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(Error::sqlite(ctx()))? {
        let mut parts = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let v = match r.get_ref(i).map_err(Error::sqlite(ctx()))? {
                rusqlite::types::ValueRef::Null => "NULL".to_string(),
                rusqlite::types::ValueRef::Integer(x) => x.to_string(),
                rusqlite::types::ValueRef::Real(x) => x.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(b) => hex::encode(b),
            };
            parts.push(format!("{n}={v}"));
        }
        out.push(parts.join(", "));
    }
    Ok(out)
}

fn json_row(row: &serde_json::Value, key: &[String]) -> String {
    key.iter()
        .map(|k| match row.get(k) {
            Some(serde_json::Value::String(s)) => format!("{k}={s}"),
            Some(v) => format!("{k}={v}"),
            None => format!("{k}=?"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `files` target: `<table>/link-<range>-<n>.sql`, replacing what an
/// earlier attempt at the range wrote.
fn write_files(
    dir: &Path,
    file_bytes: u64,
    table: &TableSpec,
    partition: usize,
    statements: &[(usize, LinkStatement)],
) -> Result<LinkReport> {
    let folder = dir.join(table.file_stem());
    std::fs::create_dir_all(&folder).map_err(Error::io(&folder))?;
    remove_link_files(&folder, Some(partition))?;
    let mut report = LinkReport::default();
    let mut current: Option<(HashingFile, u64)> = None;
    let close = |f: Option<(HashingFile, u64)>, report: &mut LinkReport| -> Result<()> {
        if let Some((f, rows)) = f {
            report.files.push(f.finish(dir, rows, &DigestSum::default())?);
        }
        Ok(())
    };
    for (_, s) in statements {
        if current.is_none() {
            let path = folder.join(format!("link-{partition:05}-{:03}.sql", report.files.len()));
            let mut f = HashingFile::create(path)?;
            f.write_all(FILE_HEADER.as_bytes()).map_err(Error::io(f.path()))?;
            current = Some((f, 0));
        }
        if let Some((f, rows)) = current.as_mut() {
            f.write_all(s.sql.as_bytes()).map_err(Error::io(f.path()))?;
            *rows += s.rows;
            report.rows += s.rows;
            if f.bytes() >= file_bytes {
                close(current.take(), &mut report)?;
            }
        }
    }
    close(current.take(), &mut report)?;
    // Files name no row digest: their rows are the data files'.
    report.files.iter_mut().for_each(|f| f.row_digest.clear());
    Ok(report)
}

/// Removes `link-*.sql` files of one range (or of all, `None`) in `folder`.
pub fn remove_link_files(folder: &Path, partition: Option<usize>) -> Result<()> {
    let prefix = match partition {
        Some(p) => format!("link-{p:05}-"),
        None => "link-".to_string(),
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(folder)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(folder))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(&prefix) && name.ends_with(".sql") {
            std::fs::remove_file(entry.path()).map_err(Error::io(entry.path()))?;
        }
    }
    Ok(())
}
