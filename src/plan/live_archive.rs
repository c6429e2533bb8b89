//! Which rows of an archive are live, computed from the archive's own rows
//! with no Postgres to ask. [`super::live::LiveRows`] says it as SQL for a
//! live source; a restore into D1 from the archive needs the same answer
//! from Parquet files: a row is hidden when its soft-delete column marks it
//! deleted, or when a foreign key (among the tables pgflare.toml migrates)
//! leads to a hidden parent, transitively, along self-references and
//! cycles too. Each table that can hide rows is read once, keeping per row
//! its identity, its mark, and the key bytes of its foreign keys and of the
//! columns its children reference; the hidden rows then spread from the
//! marked ones along an index of children by parent key. Memory follows
//! the rows of those tables (their keys, not their values).

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;

use super::live::LiveRows;
use crate::batch::TableSpec;
use crate::digest::buckets::identity;
use crate::digest::{key_bytes, row_digests};
use crate::error::{Error, Result};

/// The hidden rows of each table (qualified name), by identity (the bucket
/// engine's: key bytes, or the row digest for a table without a key).
#[derive(Debug, Default)]
pub struct Hidden {
    pub rows: HashMap<String, HashSet<Vec<u8>>>,
    /// Per table: rows marked deleted themselves, rows hidden by a parent.
    pub counts: HashMap<String, (u64, u64)>,
}

impl Hidden {
    pub fn of(&self, table: &str) -> Option<&HashSet<Vec<u8>>> {
        self.rows.get(table).filter(|s| !s.is_empty())
    }
}

/// Hands every batch of a table (in its spec's columns) to the callback.
pub type ReadTable<'a> = dyn FnMut(&TableSpec, &mut dyn FnMut(&RecordBatch) -> Result<()>) -> Result<()> + 'a;

/// Per (child table, its cascading foreign key): the child rows by the
/// key bytes of that foreign key.
type Children<'r> = HashMap<(usize, usize), HashMap<&'r [u8], Vec<usize>>>;

/// What is kept of one row of a table that can hide rows.
struct Row {
    id: Vec<u8>,
    marked: bool,
    /// Per cascading foreign key of the table: its key bytes (None when a
    /// column is NULL: no parent).
    fks: Vec<Option<Vec<u8>>>,
    /// Per foreign key that references this table: the bytes of the
    /// referenced columns.
    refs: Vec<Vec<u8>>,
}

/// Reads the tables of `live` that can hide rows through `read(spec, each)`
/// (every batch of the table, in the spec's columns) and returns the
/// hidden rows. A table the reader does not have counts as all live.
pub fn hidden_rows(live: &LiveRows, read: &mut ReadTable<'_>) -> Result<Hidden> {
    let nodes = live.graph();
    // Who references whom: (child node, its cascade k) per parent node.
    let mut referenced_by: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nodes.len()];
    for (c, n) in nodes.iter().enumerate() {
        for (k, e) in n.cascades.iter().enumerate() {
            referenced_by[e.parent].push((c, k));
        }
    }
    let mut rows: Vec<Vec<Row>> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let mut kept = Vec::new();
        if n.soft.is_some() || !n.cascades.is_empty() || !referenced_by[i].is_empty() {
            let refs: Vec<&[String]> =
                referenced_by[i].iter().map(|&(c, k)| nodes[c].cascades[k].ref_columns.as_slice()).collect();
            read(n.spec, &mut |b| keep_rows(b, n, &refs, &mut kept))?;
        }
        rows.push(kept);
    }
    // Hidden spreads from the marked rows to the rows that reference them.
    let mut children: Children = HashMap::new();
    for (c, list) in rows.iter().enumerate() {
        for (r, row) in list.iter().enumerate() {
            for (k, fk) in row.fks.iter().enumerate() {
                if let Some(fk) = fk {
                    children.entry((c, k)).or_default().entry(fk.as_slice()).or_default().push(r);
                }
            }
        }
    }
    let mut hidden: Vec<Vec<bool>> = rows.iter().map(|l| l.iter().map(|r| r.marked).collect()).collect();
    let mut queue: Vec<(usize, usize)> = hidden
        .iter()
        .enumerate()
        .flat_map(|(n, l)| l.iter().enumerate().filter(|(_, h)| **h).map(move |(r, _)| (n, r)))
        .collect();
    while let Some((p, r)) = queue.pop() {
        for (slot, &(c, k)) in referenced_by[p].iter().enumerate() {
            let Some(kids) = children.get(&(c, k)).and_then(|m| m.get(rows[p][r].refs[slot].as_slice()))
            else {
                continue;
            };
            for &kid in kids {
                if !hidden[c][kid] {
                    hidden[c][kid] = true;
                    queue.push((c, kid));
                }
            }
        }
    }
    let mut out = Hidden::default();
    for (i, n) in nodes.iter().enumerate() {
        let name = n.spec.qualified();
        let marked = rows[i].iter().filter(|r| r.marked).count() as u64;
        let set: HashSet<Vec<u8>> =
            rows[i].iter().zip(&hidden[i]).filter(|(_, h)| **h).map(|(r, _)| r.id.clone()).collect();
        out.counts.insert(name.clone(), (marked, set.len() as u64 - marked));
        out.rows.insert(name, set);
    }
    Ok(out)
}

fn keep_rows(
    b: &RecordBatch,
    n: &super::live::NodeView,
    refs: &[&[String]],
    out: &mut Vec<Row>,
) -> Result<()> {
    let at = |cols: &[String]| -> Result<Vec<usize>> {
        cols.iter()
            .map(|c| {
                b.schema().index_of(c).map_err(|_| {
                    Error::Internal(format!(
                        "{}: column {c} is not in the archive's rows",
                        n.spec.qualified()
                    ))
                })
            })
            .collect()
    };
    let key = at(&n.spec.primary_key)?;
    let fk_cols: Vec<Vec<usize>> = n.cascades.iter().map(|e| at(&e.columns)).collect::<Result<_>>()?;
    let ref_cols: Vec<Vec<usize>> = refs.iter().map(|r| at(r)).collect::<Result<_>>()?;
    let soft = match n.soft {
        Some((c, boolean)) => Some((at(std::slice::from_ref(c))?[0], boolean)),
        None => None,
    };
    let digests = row_digests(b)?;
    for (row, d) in digests.iter().enumerate() {
        let marked = match soft {
            Some((c, true)) => {
                let col = b.column(c);
                match col.data_type() {
                    DataType::Boolean => col.is_valid(row) && col.as_boolean().value(row),
                    _ => col.is_valid(row),
                }
            }
            Some((c, false)) => b.column(c).is_valid(row),
            None => false,
        };
        let fks = fk_cols
            .iter()
            .map(|cols| match cols.iter().any(|&c| b.column(c).is_null(row)) {
                true => Ok(None),
                false => key_bytes(b, cols, row).map(Some),
            })
            .collect::<Result<_>>()?;
        let refs = ref_cols.iter().map(|cols| key_bytes(b, cols, row)).collect::<Result<_>>()?;
        out.push(Row { id: identity(b, &key, row, d)?, marked, fks, refs });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array};
    use arrow::datatypes::{Field, Schema};
    use proptest::prelude::*;

    use super::*;
    use crate::plan::live::tests::{project, table};
    use crate::source::TableInfo;
    use crate::typemap::Kind;

    /// A forest of `nodes` (each node's parent an earlier node or none;
    /// some marked deleted) and `notes` on them (no soft-delete column).
    fn batches(parents: &[Option<usize>], marked: &[bool], notes: &[usize]) -> (RecordBatch, RecordBatch) {
        let ids: Vec<i64> = (0..parents.len() as i64).collect();
        let nodes = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("parent_id", DataType::Int64, true),
                Field::new("gone", DataType::Boolean, true),
            ])),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Int64Array::from(parents.iter().map(|p| p.map(|p| p as i64)).collect::<Vec<_>>())),
                Arc::new(BooleanArray::from(marked.to_vec())),
            ],
        )
        .expect("nodes");
        let notes = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("node_id", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Int64Array::from((0..notes.len() as i64).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(notes.iter().map(|n| *n as i64).collect::<Vec<_>>())),
            ],
        )
        .expect("notes");
        (nodes, notes)
    }

    fn infos() -> Vec<TableInfo> {
        vec![
            table(
                "nodes",
                &[("id", Kind::Int8), ("parent_id", Kind::Int8), ("gone", Kind::Bool)],
                &[("parent_id", "nodes", "id")],
            ),
            table("notes", &[("id", Kind::Int8), ("node_id", Kind::Int8)], &[("node_id", "nodes", "id")]),
        ]
    }

    /// The hidden ids of each table, as integers.
    fn hidden_ids(h: &Hidden, table: &str, batch: &RecordBatch) -> Vec<i64> {
        let set = h.rows.get(table).cloned().unwrap_or_default();
        let ids = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        (0..batch.num_rows())
            .filter(|&r| set.contains(&key_bytes(batch, &[0], r).expect("key")))
            .map(|r| ids.value(r))
            .collect()
    }

    proptest! {
        /// The closure agrees with walking up each row's ancestors.
        #[test]
        fn hidden_rows_are_those_with_a_marked_ancestor(
            tree in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), prop::bool::weighted(0.15)), 1..60),
            notes in prop::collection::vec(any::<prop::sample::Index>(), 0..80),
        ) {
            let parents: Vec<Option<usize>> =
                tree.iter().enumerate().map(|(i, (p, root, _))| (i > 0 && !root).then(|| p.index(i))).collect();
            let marked: Vec<bool> = tree.iter().map(|t| t.2).collect();
            let notes: Vec<usize> = notes.iter().map(|n| n.index(parents.len())).collect();
            let (nodes_b, notes_b) = batches(&parents, &marked, &notes);
            let infos = infos();
            let live = LiveRows::new(&project(&[("nodes", "gone")]), &infos.iter().collect::<Vec<_>>());
            let h = hidden_rows(&live, &mut |spec, each| match spec.name.as_str() {
                "nodes" => each(&nodes_b),
                _ => each(&notes_b),
            })
            .expect("hidden");
            let dead = |mut i: usize| loop {
                if marked[i] {
                    break true;
                }
                match parents[i] {
                    Some(p) => i = p,
                    None => break false,
                }
            };
            let want_nodes: Vec<i64> = (0..parents.len()).filter(|&i| dead(i)).map(|i| i as i64).collect();
            let want_notes: Vec<i64> =
                notes.iter().enumerate().filter(|(_, n)| dead(**n)).map(|(i, _)| i as i64).collect();
            prop_assert_eq!(hidden_ids(&h, "public.nodes", &nodes_b), want_nodes.clone());
            prop_assert_eq!(hidden_ids(&h, "public.notes", &notes_b), want_notes.clone());
            let marked_n = marked.iter().filter(|m| **m).count() as u64;
            prop_assert_eq!(h.counts["public.nodes"], (marked_n, want_nodes.len() as u64 - marked_n));
            prop_assert_eq!(h.counts["public.notes"], (0, want_notes.len() as u64));
        }
    }

    #[test]
    fn without_soft_deletes_nothing_is_read() {
        let infos = infos();
        let live = LiveRows::new(&project(&[]), &infos.iter().collect::<Vec<_>>());
        let h = hidden_rows(&live, &mut |spec, _| panic!("{} was read", spec.name)).expect("hidden");
        assert!(h.rows.values().all(|s| s.is_empty()));
    }
}
