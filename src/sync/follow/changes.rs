//! What the follower received and has not applied yet: per table, the
//! last operation on each key (an upsert with the row's values, or a
//! delete), merged transaction by transaction in commit order. Only whole
//! transactions are merged into [`Pending`]; the open one stays apart
//! until its Commit. Also the relations: which stream relation is which
//! followed table, where its key and columns sit in a change's tuple, and
//! the checks that stop the stream when a table changed shape (DDL is not
//! in the logical stream; a changed Relation message is how it shows:
//! pgoutput sends a relation's Relation message again after any
//! invalidation of it, `rel_sync_cache_relation_cb` in
//! src/backend/replication/pgoutput/pgoutput.c, and the docs' "Logical
//! Streaming Replication Protocol" says a Relation message precedes the
//! first change of a relation after its definition changed).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;

use crate::batch::TableSpec;
use crate::error::{Error, Result};
use crate::source::wal::pgoutput::{Change, Old, Relation, Value};

/// A row's key: its key columns' text, in key order.
pub type Key = Vec<Bytes>;

/// The last thing a transaction did to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The row's values in the followed table's column order (`spec`),
    /// and the soft-delete column's when it is not among them.
    Upsert {
        values: Vec<Value>,
        soft: Option<Value>,
    },
    Delete,
}

/// A followed table as the stream lays out its rows.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Index into the run's tables.
    pub table: usize,
    key_at: Vec<usize>,
    cols_at: Vec<usize>,
    soft_at: Option<usize>,
}

/// What the follower expects of a table, read from the catalog at start.
#[derive(Clone, Debug)]
pub struct Expected {
    pub spec: TableSpec,
    /// Every column the table had at start: name, type oid.
    pub columns: Vec<(String, u32)>,
    /// The soft-delete column, if the table has one.
    pub soft: Option<String>,
}

/// The stream's relations, mapped onto the followed tables.
pub struct Relations {
    expected: Vec<Expected>,
    by_oid: HashMap<u32, Layout>,
}

/// Why the follower stops: what happened, and what to do.
pub fn stop(message: String, hint: &str) -> Error {
    Error::Source { message, hint: hint.into() }
}

impl Relations {
    pub fn new(expected: Vec<Expected>) -> Self {
        Relations { expected, by_oid: HashMap::new() }
    }

    /// Takes a Relation message: maps it, or stops when the table no
    /// longer has the shape the targets were built for.
    pub fn relation(&mut self, r: &Relation) -> Result<()> {
        let Some(table) =
            self.expected.iter().position(|e| e.spec.schema == r.schema && e.spec.name == r.name)
        else {
            return Ok(()); // not followed (the publication holds only followed tables)
        };
        let e = &self.expected[table];
        let find = |name: &str| r.columns.iter().position(|c| c.name == name);
        let type_of = |name: &str| e.columns.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let hint =
            "nothing written after the last transaction before it was applied. Bring D1 and pgflare.toml \
                    in line (the D1 column, or leave it out of d1_columns), reload the table if its rows \
                    changed, then start `pgflare sync --follow` again";
        for c in &e.spec.columns {
            match find(&c.name) {
                None => {
                    return Err(stop(
                        format!(
                            "table {}: column {} was dropped or renamed (ALTER TABLE) while following",
                            r.qualified(),
                            c.name
                        ),
                        hint,
                    ))
                }
                Some(at) if Some(r.columns[at].type_oid) != type_of(&c.name) => {
                    return Err(stop(
                        format!(
                            "table {}: column {} changed its type (ALTER TABLE) while following",
                            r.qualified(),
                            c.name
                        ),
                        hint,
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(new) = r.columns.iter().find(|c| type_of(&c.name).is_none()) {
            return Err(stop(
                format!(
                    "table {}: column {} was added (ALTER TABLE ... ADD COLUMN) while following",
                    r.qualified(),
                    new.name
                ),
                hint,
            ));
        }
        let key_at = e.spec.primary_key.iter().map(|k| find(k)).collect::<Option<Vec<_>>>();
        let cols_at = e.spec.columns.iter().map(|c| find(&c.name)).collect::<Option<Vec<_>>>();
        let (Some(key_at), Some(cols_at)) = (key_at, cols_at) else {
            return Err(stop(format!("table {}: its key is not in the stream", r.qualified()), hint));
        };
        let soft_at =
            e.soft.as_ref().filter(|s| !e.spec.columns.iter().any(|c| &c.name == *s)).and_then(|s| find(s));
        self.by_oid.insert(r.oid, Layout { table, key_at, cols_at, soft_at });
        Ok(())
    }

    pub fn layout(&self, oid: u32) -> Option<&Layout> {
        self.by_oid.get(&oid)
    }

    pub fn name(&self, table: usize) -> String {
        self.expected[table].spec.qualified()
    }
}

impl Layout {
    fn key(&self, values: &[Value], name: &dyn Fn() -> String) -> Result<Key> {
        self.key_at
            .iter()
            .map(|&i| match values.get(i) {
                Some(Value::Text(b)) => Ok(b.clone()),
                _ => Err(stop(
                    format!("table {}: a change carries no value for a key column", name()),
                    "a key TOASTed out of line (over ~2 kB) is not sent by Postgres; use a shorter key, or sync \
                     by polling with --once / --every",
                )),
            })
            .collect()
    }

    fn upsert(&self, values: &[Value]) -> Op {
        Op::Upsert {
            values: self.cols_at.iter().map(|&i| values.get(i).cloned().unwrap_or(Value::Null)).collect(),
            soft: self.soft_at.map(|i| values.get(i).cloned().unwrap_or(Value::Null)),
        }
    }
}

/// Changes merged per key, for one or more whole transactions.
#[derive(Default)]
pub struct Pending {
    pub tables: BTreeMap<usize, HashMap<Key, Op>>,
    /// Changes received (before merging), for the flush threshold.
    pub changes: usize,
    /// Bytes of values held.
    pub bytes: usize,
    /// Transaction ids (32-bit) of the merged transactions.
    pub xids: Vec<u32>,
    pub transactions: u64,
    /// The last merged transaction's commit: end LSN and time (µs since 2000).
    pub last_commit: Option<(u64, i64)>,
    /// Commit times (µs since 2000) of the merged transactions, for the lag.
    pub commit_times: Vec<i64>,
    pub since: Option<Instant>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(HashMap::is_empty) && self.transactions == 0
    }

    /// Records one change of the open transaction.
    pub fn take(&mut self, rel: &Relations, change: &Change) -> Result<()> {
        let name = |l: &Layout| rel.name(l.table);
        match change {
            Change::Insert { rel: oid, new } => {
                if let Some(l) = rel.layout(*oid) {
                    let key = l.key(new, &|| name(l))?;
                    self.put(l.table, key, l.upsert(new), new);
                }
            }
            Change::Update { rel: oid, old, new } => {
                if let Some(l) = rel.layout(*oid) {
                    let key = l.key(new, &|| name(l))?;
                    if let Some(old) = old {
                        let was = l.key(old.values(), &|| name(l))?;
                        if was != key {
                            self.put(l.table, was, Op::Delete, &[]);
                        }
                    }
                    self.put(l.table, key, l.upsert(new), new);
                }
            }
            Change::Delete { rel: oid, old } => {
                if let Some(l) = rel.layout(*oid) {
                    let values = match old {
                        Old::Key(v) | Old::Row(v) => v,
                    };
                    let key = l.key(values, &|| name(l))?;
                    self.put(l.table, key, Op::Delete, &[]);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn put(&mut self, table: usize, key: Key, op: Op, raw: &[Value]) {
        self.changes += 1;
        self.bytes += raw.iter().map(|v| if let Value::Text(b) = v { b.len() } else { 0 }).sum::<usize>();
        self.since.get_or_insert_with(Instant::now);
        let rows = self.tables.entry(table).or_default();
        let op = match (rows.remove(&key), op) {
            // A value this update left out (TOASTed, unchanged) is the
            // one the earlier change of the same row wrote.
            (Some(Op::Upsert { values: before, soft: sb }), Op::Upsert { mut values, mut soft }) => {
                for (v, b) in values.iter_mut().zip(before) {
                    if *v == Value::Unchanged {
                        *v = b;
                    }
                }
                if soft == Some(Value::Unchanged) {
                    soft = sb;
                }
                Op::Upsert { values, soft }
            }
            (_, op) => op,
        };
        rows.insert(key, op);
    }

    /// Merges a committed transaction (`later`) into these changes.
    pub fn merge(&mut self, later: Pending) {
        for (table, rows) in later.tables {
            for (key, op) in rows {
                let raw: Vec<Value> = match &op {
                    Op::Upsert { values, .. } => values.clone(),
                    Op::Delete => Vec::new(),
                };
                self.put(table, key, op, &raw);
                self.changes -= 1;
            }
        }
        self.changes += later.changes;
        self.xids.extend(later.xids);
        self.transactions += later.transactions;
        self.commit_times.extend(later.commit_times);
        if later.last_commit.is_some() {
            self.last_commit = later.last_commit;
        }
        if let Some(s) = later.since {
            self.since = Some(self.since.map_or(s, |m| m.min(s)));
        }
    }
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
