//! Foreign keys as D1 will hold them, and the ones that need a later write.
//!
//! D1 checks foreign keys at the end of every request (one transaction;
//! `PRAGMA foreign_keys` cannot be changed and `defer_foreign_keys` lasts
//! until the end of the transaction: cloudflare-docs
//! `src/content/docs/d1/sql-api/foreign-keys.mdx`), and rows of one table
//! arrive in key ranges, in parallel, over many
//! requests, transactions or files. Between tables that is solved by
//! order: a table loads after the tables it references. Inside a cycle
//! (a table referencing itself: page trees, comment threads, chunk
//! chains; or tables referencing each other) no order works for any key
//! order of the rows. The foreign keys inside a strongly connected
//! component of the table graph are therefore **links**: their columns are
//! first written as a placeholder that satisfies D1 (NULL, or for a NOT
//! NULL self-reference the row's own referenced key: the row references
//! itself), and a link step sets them once every row of the component is
//! in (see [`super::link_sql`]). Every other foreign key orders the tables
//! in waves; with the link edges taken out the table graph has no cycle,
//! so waves always exist.

use std::collections::BTreeSet;

use crate::config::mapping::D1Table;
use crate::source::constraints::ForeignKey;
use crate::source::TableInfo;

/// What a link column holds until the link step writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// NULL (SQLite skips the check when any column of the key is NULL);
    /// the D1 column allows NULL even where the source says NOT NULL.
    Null,
    /// The row's own value of the referenced column: a self-reference
    /// whose column is NOT NULL points at its own row.
    Own,
}

/// A foreign key on a cycle, in D1 names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The constraint's name in the source.
    pub name: String,
    /// The child D1 table and every column of the key, in key order.
    pub table: String,
    pub columns: Vec<String>,
    /// The parent D1 table and the columns referenced, same order.
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    /// Positions in `columns` written by the link step: those not in the
    /// child's primary key (the key itself is always written at once).
    pub set: Vec<usize>,
    pub placeholder: Placeholder,
}

impl Link {
    /// D1 names of the columns the link step writes.
    pub fn set_columns(&self) -> impl Iterator<Item = &String> {
        self.set.iter().map(|&i| &self.columns[i])
    }
}

/// What becomes of one source foreign key in D1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A FOREIGN KEY in D1 that orders its table after the parent.
    Ordered,
    /// A FOREIGN KEY in D1 written by the link step.
    Link(Link),
    /// A FOREIGN KEY in D1 that every row satisfies by itself (its columns
    /// are the very columns it references, in the same table).
    SelfSatisfied,
    /// Not in D1, with the reason (a comment in the migration).
    Skipped(String),
}

/// One source foreign key and its D1 form.
#[derive(Clone, Debug)]
pub struct D1ForeignKey {
    pub source: ForeignKey,
    /// Index of the parent among the tables, when it goes to D1.
    pub parent: Option<usize>,
    /// D1 names of the child and parent columns (empty when skipped).
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub role: Role,
}

/// The foreign keys of every table of a load, and the order tables load in.
#[derive(Clone, Debug, Default)]
pub struct FkPlan {
    /// Per table (same order as given), per source foreign key.
    pub tables: Vec<Vec<D1ForeignKey>>,
    /// Tables grouped in waves: a table's parents by an `Ordered` key are
    /// in earlier waves.
    pub waves: Vec<Vec<usize>>,
}

impl FkPlan {
    pub fn new(tables: &[(TableInfo, D1Table)]) -> FkPlan {
        let mut fks: Vec<Vec<D1ForeignKey>> = tables
            .iter()
            .map(|(info, t)| info.foreign_keys.iter().map(|f| d1_form(f, t, tables)).collect())
            .collect();
        let edges: Vec<(usize, usize)> = fks
            .iter()
            .enumerate()
            .flat_map(|(i, list)| list.iter().filter_map(move |f| f.parent.map(|p| (i, p))))
            .collect();
        let component = components(tables.len(), &edges);
        for (i, list) in fks.iter_mut().enumerate() {
            for f in list.iter_mut() {
                let Some(p) = f.parent else { continue };
                f.role = if component[i] != component[p] {
                    Role::Ordered
                } else if i == p && f.columns == f.ref_columns {
                    Role::SelfSatisfied
                } else {
                    link_role(f, i == p, &tables[i].1)
                };
            }
        }
        let ordered: Vec<(usize, usize)> = fks
            .iter()
            .enumerate()
            .flat_map(|(i, list)| {
                list.iter().filter(|f| f.role == Role::Ordered).filter_map(move |f| f.parent.map(|p| (i, p)))
            })
            .collect();
        FkPlan { waves: waves(tables.len(), &ordered), tables: fks }
    }

    /// The links of table `i` (foreign keys its link step writes).
    pub fn links(&self, i: usize) -> Vec<Link> {
        self.tables.get(i).into_iter().flatten().filter_map(|f| as_link(&f.role)).cloned().collect()
    }

    /// The links of any table that reference table `i`: before rows of `i`
    /// are deleted, the rows pointing at them get their placeholder.
    pub fn referrers(&self, i: usize) -> Vec<Link> {
        self.tables
            .iter()
            .flatten()
            .filter(|f| f.parent == Some(i))
            .filter_map(|f| as_link(&f.role))
            .cloned()
            .collect()
    }

    /// True when some table has a link.
    pub fn any_links(&self) -> bool {
        self.tables.iter().flatten().any(|f| matches!(f.role, Role::Link(_)))
    }
}

fn as_link(role: &Role) -> Option<&Link> {
    match role {
        Role::Link(l) => Some(l),
        _ => None,
    }
}

/// D1 names of `source` columns, or the first one that does not go to D1.
pub fn d1_names(t: &D1Table, source: &[String]) -> Result<Vec<String>, String> {
    source.iter().map(|c| t.d1_name(c).map(str::to_string).ok_or_else(|| c.clone())).collect()
}

/// Column sets the table is unique on in D1 (key, UNIQUE, unique indexes).
pub fn unique_sets(info: &TableInfo, t: &D1Table) -> Vec<BTreeSet<String>> {
    let mut sets = vec![t.primary_key.iter().cloned().collect()];
    let from_source =
        info.unique_keys.iter().chain(info.btree_indexes.iter().filter(|i| i.unique).map(|i| &i.columns));
    sets.extend(from_source.filter_map(|cols| d1_names(t, cols).ok()).map(|c| c.into_iter().collect()));
    sets
}

/// The D1 form of one foreign key of table `t` (its role is `Ordered`
/// until the cycles are known), or why D1 cannot have it.
fn d1_form(fk: &ForeignKey, t: &D1Table, all: &[(TableInfo, D1Table)]) -> D1ForeignKey {
    let mut out = D1ForeignKey {
        source: fk.clone(),
        parent: None,
        columns: Vec::new(),
        ref_table: String::new(),
        ref_columns: Vec::new(),
        role: Role::Ordered,
    };
    let parent = all.iter().position(|(p, _)| p.spec.schema == fk.ref_schema && p.spec.name == fk.ref_table);
    let Some(p) = parent else {
        out.role = Role::Skipped("that table does not go to D1".into());
        return out;
    };
    let (pinfo, ptable) = &all[p];
    let (cols, refs) = match (d1_names(t, &fk.columns), d1_names(ptable, &fk.ref_columns)) {
        (Ok(c), Ok(r)) => (c, r),
        (Err(c), _) | (_, Err(c)) => {
            out.role = Role::Skipped(format!("column {c} does not go to D1"));
            return out;
        }
    };
    // SQLite needs the parent columns to be unique in the parent.
    if !unique_sets(pinfo, ptable).contains(&refs.iter().cloned().collect()) {
        out.role = Role::Skipped(format!("({}) is not unique in D1 table {}", refs.join(", "), ptable.name));
        return out;
    }
    out.parent = Some(p);
    out.columns = cols;
    out.ref_table = ptable.name.clone();
    out.ref_columns = refs;
    out
}

/// The role of a foreign key inside a cycle: a link when some of its
/// columns are outside the child's key (those can wait), else it cannot be
/// kept in D1: a key is written with its row.
fn link_role(f: &D1ForeignKey, self_ref: bool, t: &D1Table) -> Role {
    let set: Vec<usize> = (0..f.columns.len()).filter(|&i| !t.primary_key.contains(&f.columns[i])).collect();
    if set.is_empty() {
        return Role::Skipped(
            "its columns are all primary-key columns inside a foreign-key cycle: D1 checks the key at the \
             end of each request and such rows cannot all arrive in one"
                .into(),
        );
    }
    let not_null = |c: &String| t.spec.column(c).is_some_and(|c| !c.nullable);
    // The row points at itself only if the columns written at once already
    // equal the ones they reference, and its own referenced values exist.
    let own = self_ref
        && set.iter().any(|&i| not_null(&f.columns[i]))
        && (0..f.columns.len()).all(|i| set.contains(&i) || f.columns[i] == f.ref_columns[i])
        && set
            .iter()
            .all(|&i| not_null(&f.ref_columns[i]) && !set.iter().any(|&j| f.columns[j] == f.ref_columns[i]));
    Role::Link(Link {
        name: f.source.name.clone(),
        table: t.name.clone(),
        columns: f.columns.clone(),
        ref_table: f.ref_table.clone(),
        ref_columns: f.ref_columns.clone(),
        set,
        placeholder: if own { Placeholder::Own } else { Placeholder::Null },
    })
}

/// Strongly connected components (Tarjan, iterative) of the graph with
/// `n` nodes and `edges` (child, parent); the component id of each node.
fn components(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        next[a].push(b);
    }
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut comp, mut counter, mut comps) = (Vec::new(), vec![usize::MAX; n], 0, 0);
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        // (node, next edge to look at)
        let mut call = vec![(start, 0usize)];
        while let Some(&mut (v, ref mut e)) = call.last_mut() {
            if *e == 0 {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = next[v].get(*e) {
                *e += 1;
                if index[w] == usize::MAX {
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = comps;
                    if w == v {
                        break;
                    }
                }
                comps += 1;
            }
        }
    }
    comp
}

/// Nodes in waves: each after its parents by `edges` (which must form no
/// cycle but self-loops, which are ignored); whatever is left in a cycle
/// (not expected) goes last.
fn waves(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let parents: Vec<BTreeSet<usize>> =
        (0..n).map(|i| edges.iter().filter(|&&(c, p)| c == i && p != i).map(|&(_, p)| p).collect()).collect();
    let mut placed = vec![false; n];
    let mut out = Vec::new();
    while placed.iter().any(|p| !p) {
        let ready: Vec<usize> =
            (0..n).filter(|&i| !placed[i] && parents[i].iter().all(|&p| placed[p])).collect();
        if ready.is_empty() {
            out.push((0..n).filter(|&i| !placed[i]).collect());
            break;
        }
        ready.iter().for_each(|&i| placed[i] = true);
        out.push(ready);
    }
    out
}

/// Tables in waves by their source foreign keys alone (for `init`, before
/// any D1 mapping exists): edges inside a cycle do not order.
pub fn source_waves(infos: &[&TableInfo]) -> Vec<Vec<usize>> {
    let pos =
        |schema: &str, name: &str| infos.iter().position(|t| t.spec.schema == schema && t.spec.name == name);
    let edges: Vec<(usize, usize)> = infos
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.foreign_keys.iter().filter_map(move |f| pos(&f.ref_schema, &f.ref_table).map(|p| (i, p)))
        })
        .collect();
    let comp = components(infos.len(), &edges);
    let ordered: Vec<(usize, usize)> = edges.into_iter().filter(|&(c, p)| comp[c] != comp[p]).collect();
    waves(infos.len(), &ordered)
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
