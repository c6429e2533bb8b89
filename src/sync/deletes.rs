//! Deleting rows from the targets: a batch of keys becomes `DELETE`
//! statements for the D1 table (packed under D1's limits) and
//! `delete_by_ids` for their vectors (those that may exist, see
//! [`crate::state::held`]), whose recorded digests go too. The
//! keys come from the source (soft-deleted rows) or from D1 itself (rows
//! the source no longer has, see [`super::sweep`]); either way they are
//! typed values, rendered by the same literal writer as the load's upserts.
//! For the `files` target the statements and ids are appended to files of
//! the run's folder instead (`deletes.sql`, `vectorize/deleted-ids.txt`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use crate::batch::quote_ident;
use crate::cloudflare::limits::{D1_MAX_STATEMENT_BYTES, D1_MAX_VALUES_PER_STATEMENT};
use crate::cloudflare::Vectorize;
use crate::digest::key_display;
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::sink::d1::link_sql::{unlink_overhead, unlink_sql};
use crate::sink::d1::links::Link;
use crate::sink::d1::list::ListPacker;
use crate::sink::d1::value::{push_quoted, write_literal};
use crate::sink::vectorize::ndjson::id_text;
use crate::state::held::may_hold;

/// The vectors that go with deleted rows.
#[derive(Clone)]
pub struct VectorDeletes {
    /// The index to delete from (`None`: list the ids in `ids_out`).
    pub index: Option<Arc<Vectorize>>,
    pub ids_out: Option<PathBuf>,
    /// Column of the key batch holding the vector id.
    pub id_column: usize,
    pub timeout: Duration,
    /// Ids without a recorded digest looked up in the index before a
    /// delete (at most; the rest are deleted unseen): [`crate::state::held::CHECK_STORED`]
    /// for a polling run, 0 for `sync --follow`, which spares requests.
    pub check_stored: usize,
}

/// Deletes rows of one D1 table (and their vectors) by key.
#[derive(Clone)]
pub struct Deleter {
    /// Where the digests of sent vectors live (D1, or the local state).
    pub d1: D1Access,
    /// `files` target: append the DELETE statements here instead of
    /// running them on `d1`.
    pub sql_out: Option<PathBuf>,
    pub d1_table: String,
    /// D1 names of the key columns: the first columns of every key batch.
    pub key: Vec<String>,
    /// Links (foreign keys on a cycle) pointing at this table: before rows
    /// are deleted, the rows pointing at them get their placeholder, so a
    /// subtree deletes in any order over any number of requests.
    pub unlink: Vec<Link>,
    pub vectors: Option<VectorDeletes>,
}

/// What a delete removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Deleted {
    pub rows: u64,
    /// Vectors deleted: of ids that may hold one ([`crate::state::held`]).
    pub vectors: u64,
}

impl Deleter {
    /// Deletes the rows keyed by `keys` from D1 and their vectors from
    /// Vectorize; returns once D1 committed and Vectorize applied.
    pub async fn delete(&self, keys: &RecordBatch) -> Result<Deleted> {
        // Only the rows D1 holds are deleted and counted: a soft-deleted row
        // that merely changed again (or never reached D1) costs no Vectorize
        // mutation and no wait. The files target has no D1 to ask.
        let held;
        let keys = match &self.sql_out {
            Some(_) => keys,
            None => {
                held = self.held(keys).await?;
                &held
            }
        };
        if keys.num_rows() == 0 {
            return Ok(Deleted::default());
        }
        let statements = self.statements(keys)?;
        let mut ids = Vec::new();
        if let Some(v) = &self.vectors {
            let col = keys.column(v.id_column);
            ids.extend((0..keys.num_rows()).filter_map(|r| id_text(col.as_ref(), r)));
        }
        // Vectors first: a kill between the two leaves a D1 row whose
        // vector is gone, which the next run deletes again; the other
        // order could leave a vector no D1 row points at and no run finds.
        // Only ids that may hold one are sent, and counted (`held`).
        let mut deleted = 0;
        if let (Some(v), false) = (&self.vectors, ids.is_empty()) {
            let mut budget = v.check_stored;
            let held = may_hold(&self.d1, v.index.as_deref(), &ids, &mut budget).await?;
            if !held.is_empty() {
                let what = format!("deleting {} vectors of {}", held.len(), self.d1_table);
                if let Some(index) = &v.index {
                    if let Some(t) = index.delete_by_ids(&what, &held).await? {
                        index.wait_applied(t, v.timeout, &|_: &str| {}).await?;
                    }
                }
                if let Some(f) = &v.ids_out {
                    append(f, &held.iter().map(|i| format!("{i}\n")).collect::<String>())?;
                }
            }
            deleted = held.len() as u64;
            let mut sql = String::new();
            forget_digests(&mut sql, &ids);
            self.d1.execute("forgetting digests of deleted vectors", &sql).await?;
        }
        for s in &statements {
            match &self.sql_out {
                Some(f) => append(f, &format!("{s}\n"))?,
                None => self.d1.execute(&format!("deleting rows of {}", self.d1_table), s).await?,
            }
        }
        Ok(Deleted { rows: keys.num_rows() as u64, vectors: deleted })
    }

    /// The rows of `keys` whose key D1 holds, asked with statements
    /// `SELECT i FROM (VALUES (0, k..), (1, k..)) WHERE EXISTS (row with k)`.
    async fn held(&self, keys: &RecordBatch) -> Result<RecordBatch> {
        let cols: Vec<String> = self.key.iter().map(|k| quote_ident(k)).collect();
        let table = quote_ident(&self.d1_table);
        let on = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{table}.{c} = v.column{}", i + 2))
            .collect::<Vec<_>>()
            .join(" AND ");
        let tail = format!(") AS v WHERE EXISTS (SELECT 1 FROM {table} WHERE {on});");
        let mut packer = ListPacker::new("SELECT v.column1 AS i FROM (VALUES ", &tail);
        let mut tuple = String::new();
        for row in 0..keys.num_rows() {
            tuple.clear();
            tuple.push_str(&format!("({row}"));
            for c in 0..cols.len() {
                tuple.push_str(", ");
                write_literal(keys.column(c).as_ref(), row, &mut tuple);
            }
            tuple.push(')');
            // A key too long to ask about is kept: the DELETE names it.
            if !packer.push(&tuple, cols.len() + 2) {
                return Ok(keys.clone());
            }
        }
        let mut rows = Vec::new();
        for sql in packer.finish() {
            let what = format!("finding which rows to delete D1 holds in {}", self.d1_table);
            for r in self.d1.select(&what, &sql, &[]).await? {
                rows.extend(r.get("i").and_then(serde_json::Value::as_u64).map(|i| i as u32));
            }
        }
        rows.sort_unstable();
        let idx = arrow::array::UInt32Array::from(rows);
        Ok(arrow::compute::take_record_batch(keys, &idx)?)
    }

    /// `DELETE FROM t WHERE (k1, k2) IN (VALUES (..), ..)`, each within
    /// D1's limits ([`ListPacker`]), preceded by the unlinks of its rows
    /// ([`Self::unlinked`]), which repeat its condition inside a longer
    /// statement: the list leaves room for the longest of them.
    pub fn statements(&self, keys: &RecordBatch) -> Result<Vec<String>> {
        let cols: Vec<String> = self.key.iter().map(|k| quote_ident(k)).collect();
        let head = match cols.len() {
            1 => format!("DELETE FROM {} WHERE {} IN (", quote_ident(&self.d1_table), cols[0]),
            _ => {
                format!("DELETE FROM {} WHERE ({}) IN (VALUES ", quote_ident(&self.d1_table), cols.join(", "))
            }
        };
        let unlink_room = self.unlink.iter().map(unlink_overhead).max().unwrap_or(0);
        let mut packer = ListPacker::with_limits(
            &head,
            ");",
            D1_MAX_STATEMENT_BYTES.saturating_sub(unlink_room),
            D1_MAX_VALUES_PER_STATEMENT,
        );
        let mut tuple = String::new();
        for row in 0..keys.num_rows() {
            tuple.clear();
            if cols.len() > 1 {
                tuple.push('(');
            }
            for c in 0..cols.len() {
                if c > 0 {
                    tuple.push_str(", ");
                }
                write_literal(keys.column(c).as_ref(), row, &mut tuple);
            }
            if cols.len() > 1 {
                tuple.push(')');
            }
            if !packer.push(&tuple, cols.len()) {
                let all: Vec<usize> = (0..cols.len()).collect();
                return Err(Error::Config {
                    setting: format!("D1 table {}", self.d1_table),
                    message: format!(
                        "the row with key {} was deleted in the source, but its key is too long for a D1 \
                         statement ({} bytes): delete it from D1 by hand",
                        key_display(keys, &all, row),
                        tuple.len()
                    ),
                });
            }
        }
        Ok(packer.finish().into_iter().map(|s| self.unlinked(s)).collect())
    }

    /// `DELETE FROM t WHERE <condition>;` preceded by one [`unlink_sql`]
    /// per link pointing at the table, with the same condition: the rows
    /// pointing at the deleted rows get their placeholder first, in the
    /// same request (one transaction).
    fn unlinked(&self, delete: String) -> String {
        let head = format!("DELETE FROM {} WHERE ", quote_ident(&self.d1_table));
        let condition = delete.strip_prefix(&head).and_then(|c| c.strip_suffix(';'));
        match condition {
            Some(c) if !self.unlink.is_empty() => {
                let mut sql: String = self.unlink.iter().map(|l| unlink_sql(l, c)).collect();
                sql.push_str(&delete);
                sql
            }
            _ => delete,
        }
    }
}

/// Appends the statements that drop the recorded digests of `ids`.
pub fn forget_digests(sql: &mut String, ids: &[String]) {
    let mut packer = ListPacker::new("DELETE FROM pgflare_vector_digests WHERE id IN (", ");\n");
    let mut quoted = String::new();
    for id in ids {
        quoted.clear();
        push_quoted(&mut quoted, id);
        // An id too long for a statement was never sent to Vectorize
        // (ids are at most 64 bytes), so no digest of it is recorded.
        packer.push(&quoted, 1);
    }
    packer.finish().iter().for_each(|s| sql.push_str(s));
}

/// Appends `text` to `path` (created with its folder when missing).
pub fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(Error::io(path))?;
    f.write_all(text.as_bytes()).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn deleter(key: &[&str]) -> Deleter {
        let dir = std::env::temp_dir();
        let c = crate::sink::d1::sqlite::D1SqliteConfig::open(
            &dir.join(format!("pgflare-deleter-{}.sqlite", std::process::id())),
            Default::default(),
        )
        .expect("open");
        Deleter {
            d1: D1Access::Sqlite(c),
            sql_out: None,
            d1_table: "my chunks".into(),
            key: key.iter().map(|s| s.to_string()).collect(),
            unlink: Vec::new(),
            vectors: None,
        }
    }

    #[test]
    fn one_and_two_column_keys_render_as_in_lists_under_the_limit() {
        let ids: ArrayRef = Arc::new(Int64Array::from((0..30_000).collect::<Vec<i64>>()));
        let names: ArrayRef = Arc::new(StringArray::from(
            (0..30_000)
                .map(|i| if i == 1 { "it's".to_string() } else { format!("n{i}") })
                .collect::<Vec<_>>(),
        ));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(schema, vec![ids, names]).expect("batch");
        let one = deleter(&["id"]).statements(&batch.project(&[0]).expect("project")).expect("statements");
        assert!(one.len() > 1, "30,000 keys need several statements");
        assert!(one.iter().all(|s| s.len() <= D1_MAX_STATEMENT_BYTES));
        assert!(
            one[0].starts_with("DELETE FROM \"my chunks\" WHERE \"id\" IN (0, 1, 2"),
            "{}",
            &one[0][..60]
        );
        let listed: usize = one.iter().map(|s| s.matches(", ").count() + 1).sum();
        assert_eq!(listed, 30_000);
        let two = deleter(&["id", "name"]).statements(&batch).expect("statements");
        assert!(two[0].starts_with(
            "DELETE FROM \"my chunks\" WHERE (\"id\", \"name\") IN (VALUES (0, 'n0'), (1, 'it''s')"
        ));
        assert!(two.iter().all(|s| s.ends_with(");")));
    }

    #[tokio::test]
    async fn deleting_removes_exactly_the_keyed_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c =
            crate::sink::d1::sqlite::D1SqliteConfig::open(&dir.path().join("d.sqlite"), Default::default())
                .expect("open");
        c.execute(
            "setup",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c');",
        )
        .expect("setup");
        let d = Deleter {
            d1: D1Access::Sqlite(c.clone()),
            sql_out: None,
            d1_table: "t".into(),
            key: vec!["id".into()],
            unlink: Vec::new(),
            vectors: None,
        };
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let keys = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 3, 99])) as ArrayRef])
            .expect("keys");
        // Only what D1 held is counted: 99 was never there.
        assert_eq!(d.delete(&keys).await.expect("delete").rows, 2);
        let left = D1Access::Sqlite(c).select("left", "SELECT id FROM t", &[]).await.expect("select");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["id"], serde_json::json!(2));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10))]

        // However many keys (integer, or integer and text with quotes), the
        // DELETE statements run on a D1 file with D1's SQL limits and remove
        // exactly the keyed rows; so do the statements forgetting digests.
        #[test]
        fn deletes_of_any_number_of_keys_run_within_d1_limits(
            rows in proptest::collection::btree_map(
                proptest::prop_oneof![proptest::prelude::any::<i64>(), -100_000i64..100_000],
                "(\\PC|'){0,40}",
                1..12_000,
            ),
            every in 1usize..4,
            composite in proptest::prelude::any::<bool>(),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = crate::sink::d1::sqlite::D1SqliteConfig::open(&dir.path().join("d.sqlite"), Default::default())
                .expect("open");
            let (table, key) = if composite {
                ("CREATE TABLE t (a INTEGER NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b));", vec!["a", "b"])
            } else {
                ("CREATE TABLE t (a INTEGER NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a));", vec!["a"])
            };
            c.execute("setup", &format!("{table}{}", crate::state::store::STATE_DDL)).expect("setup");
            let ids: Vec<String> = rows.iter().map(|(a, b)| format!("{a}:{b}")).collect();
            c.with_conn(|conn| {
                let tx = conn.transaction().expect("tx");
                for ((a, b), id) in rows.iter().zip(&ids) {
                    tx.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![a, b]).expect("row");
                    tx.execute("INSERT INTO pgflare_vector_digests VALUES (?1, 'd')", [id]).expect("digest");
                }
                tx.commit().map_err(Error::sqlite("commit"))
            })
            .expect("rows");
            let gone: Vec<(&i64, &String)> = rows.iter().step_by(every).collect();
            let schema = Arc::new(Schema::new(vec![
                Field::new("a", DataType::Int64, false),
                Field::new("b", DataType::Utf8, false),
            ]));
            let a: ArrayRef = Arc::new(Int64Array::from(gone.iter().map(|(a, _)| **a).collect::<Vec<_>>()));
            let b: ArrayRef = Arc::new(StringArray::from(gone.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>()));
            let keys = RecordBatch::try_new(schema, vec![a, b]).expect("keys");
            let d = Deleter {
                d1: D1Access::Sqlite(c.clone()),
                sql_out: None,
                d1_table: "t".into(),
                key: key.iter().map(|k| k.to_string()).collect(),
                unlink: Vec::new(),
                vectors: None,
            };
            let keys = if composite { keys } else { keys.project(&[0]).expect("project") };
            block_on(d.delete(&keys)).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let mut sql = String::new();
            let forgotten: Vec<String> = ids.iter().step_by(every).cloned().collect();
            forget_digests(&mut sql, &forgotten);
            c.execute("forget", &sql).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let count = |sql: &str| -> i64 {
                c.with_conn(|conn| conn.query_row(sql, [], |r| r.get(0)).map_err(Error::sqlite("count")))
                    .expect("count")
            };
            proptest::prop_assert_eq!(count("SELECT count(*) FROM t") as usize, rows.len() - gone.len());
            proptest::prop_assert_eq!(
                count("SELECT count(*) FROM pgflare_vector_digests") as usize,
                rows.len() - gone.len()
            );
            let first_kept = rows.keys().nth(1).filter(|_| every > 1).copied();
            if let Some(k) = first_kept {
                proptest::prop_assert_eq!(count(&format!("SELECT count(*) FROM t WHERE a = {k}")), 1);
            }
        }
    }

    #[tokio::test]
    async fn a_subtree_larger_than_one_statement_deletes_with_parents_in_earlier_requests() {
        use crate::sink::d1::links::{Link, Placeholder};
        let dir = tempfile::tempdir().expect("tempdir");
        let c =
            crate::sink::d1::sqlite::D1SqliteConfig::open(&dir.path().join("d.sqlite"), Default::default())
                .expect("open");
        // A chain: each row's parent is the row before it, so ascending
        // keys put every parent in an earlier request than its children.
        c.execute(
            "setup",
            "CREATE TABLE chain (id INTEGER PRIMARY KEY, prev INTEGER REFERENCES chain (id));
             CREATE INDEX chain_prev ON chain (prev);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
             INSERT INTO chain SELECT i, CASE WHEN i = 1 THEN NULL ELSE i - 1 END FROM n;",
        )
        .expect("setup");
        let link = Link {
            name: "chain_prev_fkey".into(),
            table: "chain".into(),
            columns: vec!["prev".into()],
            ref_table: "chain".into(),
            ref_columns: vec!["id".into()],
            set: vec![0],
            placeholder: Placeholder::Null,
        };
        let mut d = Deleter {
            d1: D1Access::Sqlite(c.clone()),
            sql_out: None,
            d1_table: "chain".into(),
            key: vec!["id".into()],
            unlink: Vec::new(),
            vectors: None,
        };
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let keys = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from((2..=40000).collect::<Vec<i64>>())) as ArrayRef],
        )
        .expect("keys");
        assert!(d.statements(&keys).expect("statements").len() > 1, "several requests");
        let e = d.delete(&keys).await.expect_err("without unlinking, a parent goes before its children");
        assert!(e.to_string().contains("FOREIGN KEY"), "{e}");
        d.unlink = vec![link];
        for s in d.statements(&keys).expect("statements") {
            // Every statement of a request stays under D1's limit.
            assert!(s.split(";\n").all(|st| st.len() <= D1_MAX_STATEMENT_BYTES));
        }
        assert_eq!(d.delete(&keys).await.expect("delete").rows, 39999);
        let left =
            D1Access::Sqlite(c).select("left", "SELECT id, prev FROM chain", &[]).await.expect("select");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["prev"], serde_json::Value::Null);
    }
}
