//! Applying merged changes to the targets: deletes children first (rows
//! deleted, rows soft-deleted, rows below a soft-deleted parent), then
//! upserts parents first through the run's sinks (D1, and Vectorize for
//! the vectors that changed). Deletes go first because a flush holds the
//! source's state at its last commit: a key that changed (`UPDATE ... SET
//! id`) or a unique value that moved to another row must leave D1 before
//! the row that now holds it arrives, or D1's UNIQUE constraint refuses it. Rows go through the
//! bulk readers' decoder ([`crate::source::wal::rows`]); statements are
//! cut so that none carries more than [`MAX_SQL`] bytes of values.
//!
//! Liveness: a row whose own soft-delete column is set is deleted from
//! the targets; a row whose parent is soft-deleted (as the source shows
//! it now) too; and when a flush soft-deletes rows of a table others
//! inherit liveness from, the rows below them go as well (found like the
//! polling run finds them: rows touched by the flush's transactions).

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::Row as _;

use super::changes::{Key, Op, Pending};
use crate::batch::sink::SinkFactory;
use crate::batch::TableSpec;
use crate::error::{Error, Result};
use crate::source::wal::pgoutput::Value;
use crate::source::wal::rows::{keys_in, keys_select, rows_select, Cell};
use crate::source::{Partition, SourceConn};
use crate::state::changes::all_of;
use crate::sync::source_reads::keys_by_sql;
use crate::sync::steps::{Run, RunTargets};

/// Bytes of values per statement sent to the source.
const MAX_SQL: usize = 4 << 20;

/// What one flush did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Applied {
    pub rows_upserted: u64,
    /// Rows removed from D1: deleted in the source, soft-deleted, or below
    /// a soft-deleted parent (rows D1 did not hold are not counted).
    pub rows_deleted: u64,
    pub vectors_deleted: u64,
}

impl Applied {
    pub fn add(&mut self, o: Applied) {
        self.rows_upserted += o.rows_upserted;
        self.rows_deleted += o.rows_deleted;
        self.vectors_deleted += o.vectors_deleted;
    }
}

/// The targets of a follower and what it writes with.
pub(in crate::sync) struct Applier<'a> {
    pub(in crate::sync) run: &'a Run<'a>,
    pub(in crate::sync) targets: &'a RunTargets,
    /// The follower's own connection to the source (not the stream's).
    pub(in crate::sync) conn: SourceConn,
    pub(in crate::sync) sinks: Arc<dyn SinkFactory>,
}

/// A key's column texts.
fn key_texts(k: &Key) -> Result<Vec<&str>> {
    k.iter()
        .map(|b| {
            std::str::from_utf8(b).map_err(|_| Error::Internal("a key in the stream is not UTF-8".into()))
        })
        .collect()
}

fn utf8<'b>(b: &'b [u8], spec: &TableSpec, column: &str) -> Result<&'b str> {
    std::str::from_utf8(b).map_err(|_| Error::Source {
        message: format!("table {}, column {column}: a value in the stream is not UTF-8", spec.qualified()),
        hint: "the database encoding must be UTF8 (SHOW server_encoding)".into(),
    })
}

impl Applier<'_> {
    pub(in crate::sync) async fn apply(&mut self, p: &Pending) -> Result<Applied> {
        let prepared = &self.run.prepared;
        let mut upserts: BTreeMap<usize, Vec<(&Key, &Vec<Value>)>> = BTreeMap::new();
        // Every kind of delete of a table in one list: one round of
        // requests per table and flush (the budget is Cloudflare's).
        let mut deletes: BTreeMap<usize, Vec<Key>> = BTreeMap::new();
        let mut soft_deletes = false;
        for (&t, rows) in &p.tables {
            let spec = &prepared.infos[t].spec;
            let soft = prepared.live.soft_column(spec);
            for (k, op) in rows {
                match op {
                    Op::Delete => deletes.entry(t).or_default().push(k.clone()),
                    Op::Upsert { values, soft: extra } => {
                        let mark = soft.as_ref().map(|(name, boolean)| {
                            let at = spec.columns.iter().position(|c| &c.name == name);
                            (at.and_then(|i| values.get(i)).or(extra.as_ref()), *boolean)
                        });
                        let gone = match mark {
                            Some((Some(Value::Text(v)), true)) => v.as_ref() == b"t",
                            Some((Some(Value::Text(_)), false)) => true,
                            _ => false,
                        };
                        soft_deletes |= gone;
                        match gone {
                            true => deletes.entry(t).or_default().push(k.clone()),
                            false => upserts.entry(t).or_default().push((k, values)),
                        }
                    }
                }
            }
        }
        let mut applied = Applied::default();
        for (&t, rows) in upserts.iter_mut() {
            let found = self.hidden_by_parent(t, rows).await?;
            if !found.is_empty() {
                rows.retain(|(k, _)| !found.contains(k));
                deletes.entry(t).or_default().extend(found);
            }
        }
        for wave in prepared.fks.waves.iter().rev() {
            for &t in wave {
                if let Some(keys) = deletes.get(&t).filter(|k| !k.is_empty()) {
                    let (rows, vectors) = self.delete(t, keys).await?;
                    applied.rows_deleted += rows;
                    applied.vectors_deleted += vectors;
                }
            }
        }
        for wave in &prepared.fks.waves {
            for &t in wave {
                if let Some(rows) = upserts.get(&t).filter(|r| !r.is_empty()) {
                    applied.rows_upserted += self.upsert(t, rows).await?;
                }
            }
        }
        if soft_deletes {
            let (rows, vectors) = self.below_soft_deleted(&p.xids).await?;
            applied.rows_deleted += rows;
            applied.vectors_deleted += vectors;
        }
        Ok(applied)
    }

    /// Writes the rows of table `t` through the sinks; returns how many.
    async fn upsert(&mut self, t: usize, rows: &[(&Key, &Vec<Value>)]) -> Result<u64> {
        let spec = Arc::new(self.run.prepared.infos[t].spec.clone());
        let mut written = 0;
        let mut start = 0;
        while start < rows.len() {
            // Cells borrow the stream's bytes: no copy before the SQL text.
            let (mut cells, mut size) = (Vec::new(), 0usize);
            let mut end = start;
            while end < rows.len() && (end == start || size < MAX_SQL) {
                let row: Vec<Cell<'_>> = rows[end]
                    .1
                    .iter()
                    .zip(&spec.columns)
                    .map(|(v, c)| match v {
                        Value::Text(b) => utf8(b, &spec, &c.name).map(Cell::Text),
                        Value::Unchanged => Ok(Cell::FromTable),
                        _ => Ok(Cell::Null),
                    })
                    .collect::<Result<_>>()?;
                size +=
                    row.iter().map(|c| if let Cell::Text(t) = c { t.len() } else { 0 }).sum::<usize>() + 64;
                cells.push(row);
                end += 1;
            }
            let sql = rows_select(&spec, &cells)?;
            let bar = self.run.progress.rows(&format!("follow {}", spec.name), None);
            let r = crate::source::reader::read_sql(
                &mut self.conn,
                spec.clone(),
                &sql,
                0,
                self.sinks.clone(),
                &bar,
                self.run.opts.read,
            )
            .await?;
            bar.finish_and_clear();
            written += r.rows;
            start = end;
        }
        Ok(written)
    }

    /// Deletes the rows of table `t` with these keys (and their vectors).
    async fn delete(&mut self, t: usize, keys: &[Key]) -> Result<(u64, u64)> {
        let (key_src, _, deleter) = self.run.deleter(self.targets, t)?;
        let (mut rows, mut vectors) = (0, 0);
        for part in chunks(keys) {
            let texts = part.iter().map(key_texts).collect::<Result<Vec<_>>>()?;
            let sql = keys_select(&key_src, &texts)?;
            let batches =
                keys_by_sql(&mut self.conn, &key_src, &sql, self.run.opts.read, self.run.progress).await?;
            for b in &batches {
                let d = deleter.delete(b).await?;
                rows += d.rows;
                vectors += d.vectors;
            }
        }
        Ok((rows, vectors))
    }

    /// The keys among `rows` whose row has a soft-deleted ancestor, as the
    /// source shows it now.
    async fn hidden_by_parent(&mut self, t: usize, rows: &[(&Key, &Vec<Value>)]) -> Result<Vec<Key>> {
        let spec = &self.run.prepared.infos[t].spec;
        let Some(hidden) = self.run.prepared.live.hidden_by_parent(spec) else { return Ok(Vec::new()) };
        let key_at = crate::source::wal::rows::key_positions(spec)?;
        let mut found = Vec::new();
        let keys: Vec<Key> = rows.iter().map(|(k, _)| (*k).clone()).collect();
        for part in chunks(&keys) {
            let texts = part.iter().map(key_texts).collect::<Result<Vec<_>>>()?;
            let cols: Vec<String> = key_at
                .iter()
                .map(|&k| format!("{}::text", crate::batch::quote_ident(&spec.columns[k].name)))
                .collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} AND {hidden}",
                cols.join(", "),
                spec.sql_name(),
                keys_in(spec, &texts)?
            );
            let got = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut self.conn).await.map_err(
                Error::db(format!("finding rows of {} below a soft-deleted parent", spec.qualified())),
            )?;
            for r in got {
                let key: Key = (0..key_at.len())
                    .map(|i| bytes::Bytes::from(r.get::<String, _>(i).into_bytes()))
                    .collect();
                found.push(key);
            }
        }
        Ok(found)
    }

    /// After soft deletes: the rows below the rows the flush's
    /// transactions touched, now hidden by a soft-deleted ancestor.
    async fn below_soft_deleted(&mut self, xids: &[u32]) -> Result<(u64, u64)> {
        if xids.is_empty() {
            return Ok((0, 0));
        }
        let list: Vec<String> = xids.iter().map(u32::to_string).collect();
        let changed = format!("xmin = ANY ('{{{}}}'::xid[])", list.join(","));
        let prepared = &self.run.prepared;
        let (mut rows, mut vectors) = (0, 0);
        for wave in prepared.fks.waves.iter().rev() {
            for &t in wave {
                let spec = &prepared.infos[t].spec;
                let Some(hidden) = prepared.live.hidden_by_parent(spec) else { continue };
                let filter = all_of(&[prepared.live.touched(spec, Some(&changed)), Some(hidden)]);
                let (key_src, _, deleter) = self.run.deleter(self.targets, t)?;
                let sql =
                    crate::source::reader::select_sql(&key_src, &Partition { filter, ..Partition::whole() });
                for b in
                    keys_by_sql(&mut self.conn, &key_src, &sql, self.run.opts.read, self.run.progress).await?
                {
                    let d = deleter.delete(&b).await?;
                    rows += d.rows;
                    vectors += d.vectors;
                }
            }
        }
        Ok((rows, vectors))
    }
}

/// Keys in parts small enough for one statement each.
fn chunks(keys: &[Key]) -> Vec<&[Key]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, k) in keys.iter().enumerate() {
        size += k.iter().map(|b| b.len() + 24).sum::<usize>();
        if size >= MAX_SQL && i > start {
            out.push(&keys[start..i]);
            start = i;
            size = 0;
        }
    }
    if start < keys.len() {
        out.push(&keys[start..]);
    }
    out
}
