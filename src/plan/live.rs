//! Which source rows are *live*, the one definition `load`, `sync` and
//! `verify` share: a row is live unless it is soft-deleted (its table's
//! `soft_delete` column is set) or one of its foreign-key parents among the
//! migrated tables is not live. The soft delete cascades along foreign
//! keys, transitively and down self-referencing trees: D1 enforces foreign
//! keys, so a live chunk of an archived document could not be written
//! anyway, and the application no longer shows it either.
//!
//! Every condition is SQL over the table as the readers name it (`FROM
//! "schema"."table"`, no alias), so it fits a key range's `WHERE`. A parent
//! is looked up with `EXISTS (SELECT 1 FROM parent alias WHERE ...)`, which
//! Postgres runs as a (anti-)join against the few soft-deleted parents; a
//! self-referencing foreign key walks up the tree with a recursive query.
//! A cycle through several tables is followed once around (the readers
//! check the rest: [`LiveRows::orphans`]).
//!
//! Conditions a caller passes in (sync's "changed since the checkpoint")
//! name the row's columns unqualified, like `xmin`; they are only placed
//! where the row's table is the only table of its `FROM`.

use std::cell::Cell;
use std::collections::BTreeSet;

use crate::source::conn::SourceConn;

use crate::batch::{quote_ident, ColumnSpec, TableSpec};
use crate::config::project::Project;
use crate::error::Result;
use crate::source::{introspect, Selection, TableInfo};
use crate::typemap::Kind;

/// A table's soft-delete column.
#[derive(Clone, Debug)]
struct SoftColumn {
    name: String,
    boolean: bool,
}

impl SoftColumn {
    fn of(col: &ColumnSpec) -> SoftColumn {
        SoftColumn {
            name: col.name.clone(),
            boolean: matches!((col.ty.kind, col.ty.array), (Kind::Bool, false)),
        }
    }

    fn deleted(&self, at: &str) -> String {
        let c = qualified(at, &self.name);
        if self.boolean {
            format!("{c} IS TRUE")
        } else {
            format!("{c} IS NOT NULL")
        }
    }

    fn live(&self, at: &str) -> String {
        let c = qualified(at, &self.name);
        if self.boolean {
            format!("{c} IS NOT TRUE")
        } else {
            format!("{c} IS NULL")
        }
    }
}

/// `at.col`, or the bare column when `at` is empty.
fn qualified(at: &str, col: &str) -> String {
    if at.is_empty() {
        quote_ident(col)
    } else {
        format!("{at}.{}", quote_ident(col))
    }
}

/// A foreign key from one migrated table to another.
#[derive(Clone, Debug)]
pub(super) struct Edge {
    name: String,
    pub(super) columns: Vec<String>,
    pub(super) parent: usize,
    pub(super) ref_columns: Vec<String>,
}

/// One table of the graph, as [`super::live_archive`] walks it.
pub(super) struct NodeView<'a> {
    pub(super) spec: &'a TableSpec,
    /// The soft-delete column, and whether it is a boolean.
    pub(super) soft: Option<(&'a String, bool)>,
    /// The foreign keys a soft delete cascades along.
    pub(super) cascades: &'a [Edge],
}

#[derive(Clone, Debug)]
struct Node {
    spec: TableSpec,
    soft: Option<SoftColumn>,
    /// Every foreign key to a migrated table.
    fks: Vec<Edge>,
    /// Those whose parent can be hidden (soft-deleted, or below such a
    /// parent): the ones a soft delete cascades along.
    cascades: Vec<Edge>,
}

/// A foreign key a live row may break: its parent row is not live (or not
/// in the source at all), so D1 would refuse the row.
#[derive(Clone, Debug)]
pub struct OrphanCheck {
    pub foreign_key: String,
    pub columns: Vec<String>,
    pub parent: String,
    /// Met by the rows of the table whose parent is not written.
    pub condition: String,
}

/// The live-row conditions of a set of migrated tables.
#[derive(Clone, Debug, Default)]
pub struct LiveRows {
    nodes: Vec<Node>,
}

impl LiveRows {
    /// The migrated tables are `infos`; soft-delete columns come from the
    /// project's mappings.
    pub fn new(project: &Project, infos: &[&TableInfo]) -> LiveRows {
        let pos = |schema: &str, name: &str| {
            infos.iter().position(|i| i.spec.schema == schema && i.spec.name == name)
        };
        let mut nodes: Vec<Node> = infos
            .iter()
            .map(|i| {
                let m = project.tables.iter().find(|m| m.schema == i.spec.schema && m.table == i.spec.name);
                let soft = m.and_then(|m| m.soft_delete.as_deref()).and_then(|c| i.spec.column(c));
                let fks = i
                    .foreign_keys
                    .iter()
                    .filter(|f| !f.columns.is_empty() && f.columns.len() == f.ref_columns.len())
                    .filter_map(|f| {
                        Some(Edge {
                            name: f.name.clone(),
                            columns: f.columns.clone(),
                            parent: pos(&f.ref_schema, &f.ref_table)?,
                            ref_columns: f.ref_columns.clone(),
                        })
                    })
                    .collect();
                Node { spec: i.spec.clone(), soft: soft.map(SoftColumn::of), fks, cascades: Vec::new() }
            })
            .collect();
        // A table can hide rows when it has a soft-delete column or a
        // foreign key to a table that can.
        let mut hides: Vec<bool> = nodes.iter().map(|n| n.soft.is_some()).collect();
        loop {
            let next: Vec<bool> = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| hides[i] || n.fks.iter().any(|e| hides[e.parent]))
                .collect();
            if next == hides {
                break;
            }
            hides = next;
        }
        for n in &mut nodes {
            n.cascades = n.fks.iter().filter(|e| hides[e.parent]).cloned().collect();
        }
        LiveRows { nodes }
    }

    /// [`LiveRows::new`] for `infos` and the configured tables they
    /// reference (a load of some tables with `--table` still leaves out
    /// the children of parents that are not live), read from the catalog.
    pub async fn read(conn: &mut SourceConn, project: &Project, infos: &[TableInfo]) -> Result<LiveRows> {
        let configured =
            |schema: &str, name: &str| project.tables.iter().find(|m| m.schema == schema && m.table == name);
        let mut extra: Vec<TableInfo> = Vec::new();
        loop {
            let all: Vec<&TableInfo> = infos.iter().chain(&extra).collect();
            let have: BTreeSet<String> = all.iter().map(|i| i.spec.qualified()).collect();
            let missing: BTreeSet<String> = all
                .iter()
                .flat_map(|i| &i.foreign_keys)
                .filter(|f| configured(&f.ref_schema, &f.ref_table).is_some())
                .map(|f| format!("{}.{}", f.ref_schema, f.ref_table))
                .filter(|q| !have.contains(q))
                .collect();
            if missing.is_empty() {
                break;
            }
            let mut casts = std::collections::BTreeMap::new();
            for q in &missing {
                let m = project.tables.iter().find(|m| format!("{}.{}", m.schema, m.table) == *q);
                for (c, ty) in m.iter().flat_map(|m| &m.casts) {
                    casts.insert(format!("{q}.{c}"), ty.clone());
                }
            }
            let sel = Selection {
                schema: project.schema.clone(),
                tables: missing.into_iter().collect(),
                casts,
                excludes: Vec::new(),
            };
            extra.extend(introspect(conn, &sel).await?);
        }
        let all: Vec<&TableInfo> = infos.iter().chain(&extra).collect();
        Ok(LiveRows::new(project, &all))
    }

    fn node(&self, table: &TableSpec) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.schema == table.schema && n.spec.name == table.name)
    }

    /// The live rows of `table`: not soft-deleted, no soft-deleted
    /// ancestor. `None` when every row is live.
    pub fn live(&self, table: &TableSpec) -> Option<String> {
        let n = self.node(table)?;
        self.live_at(n, &self.nodes[n].spec.sql_name(), "")
    }

    /// [`LiveRows::live`] of node `n` named `at` (`own` qualifies its own
    /// columns: empty at the top level).
    fn live_at(&self, n: usize, at: &str, own: &str) -> Option<String> {
        let gen = Gen::new(self);
        let mut parts: Vec<String> = self.nodes[n].soft.iter().map(|s| s.live(own)).collect();
        parts.extend(
            gen.ancestors(n, at, &Base::Deleted, &mut vec![n], true).into_iter().map(|e| format!("NOT {e}")),
        );
        and(parts)
    }

    /// The tables, their soft-delete columns and the foreign keys hiding
    /// cascades along (parents by index into the same list).
    pub(super) fn graph(&self) -> Vec<NodeView<'_>> {
        self.nodes
            .iter()
            .map(|n| NodeView {
                spec: &n.spec,
                soft: n.soft.as_ref().map(|s| (&s.name, s.boolean)),
                cascades: &n.cascades,
            })
            .collect()
    }

    /// The soft-delete column of `table`: its name, and whether it is a
    /// boolean (`true` = deleted) rather than a mark that is NULL while live.
    pub fn soft_column(&self, table: &TableSpec) -> Option<(String, bool)> {
        let n = self.node(table)?;
        self.nodes[n].soft.as_ref().map(|s| (s.name.clone(), s.boolean))
    }

    /// The rows of `table` that are soft-deleted themselves.
    pub fn soft_deleted(&self, table: &TableSpec) -> Option<String> {
        let n = self.node(table)?;
        self.nodes[n].soft.as_ref().map(|s| s.deleted(""))
    }

    /// The rows of `table` that are not soft-deleted themselves but have a
    /// soft-deleted ancestor. `None` when no row can be.
    pub fn hidden_by_parent(&self, table: &TableSpec) -> Option<String> {
        let n = self.node(table)?;
        let gen = Gen::new(self);
        let at = self.nodes[n].spec.sql_name();
        let parents = or(gen.ancestors(n, &at, &Base::Deleted, &mut vec![n], true))?;
        and(self.nodes[n].soft.iter().map(|s| s.live("")).chain([parents]).collect())
    }

    /// The rows of `table` whose liveness may have changed with `changed`
    /// (a condition on a row's own columns, e.g. written since the
    /// checkpoint): the row itself, or an ancestor with a soft-delete
    /// column, meets it. A parent restored from a soft delete brings its
    /// children back although their own rows did not change. `None` (every
    /// row) when `changed` is `None`.
    pub fn touched(&self, table: &TableSpec, changed: Option<&str>) -> Option<String> {
        let changed = changed?;
        let Some(n) = self.node(table) else { return Some(changed.to_string()) };
        let gen = Gen::new(self);
        let at = self.nodes[n].spec.sql_name();
        let mut parts = vec![changed.to_string()];
        parts.extend(gen.ancestors(n, &at, &Base::Changed(changed), &mut vec![n], true));
        or(parts)
    }

    /// Whether the conditions of `table` follow a cycle through several
    /// tables only once around (deeper rows are then checked by
    /// [`LiveRows::orphans`] before anything is written).
    pub fn cut_short(&self, table: &TableSpec) -> bool {
        let Some(n) = self.node(table) else { return false };
        let gen = Gen::new(self);
        let at = self.nodes[n].spec.sql_name();
        gen.ancestors(n, &at, &Base::Deleted, &mut vec![n], true);
        gen.cut.get()
    }

    /// For each foreign key of `table` to a migrated table: the condition
    /// a row meets when its parent row is set but is not live (or missing).
    pub fn orphans(&self, table: &TableSpec) -> Vec<OrphanCheck> {
        let Some(n) = self.node(table) else { return Vec::new() };
        let node = &self.nodes[n];
        let at = node.spec.sql_name();
        node.fks
            .iter()
            .map(|e| {
                let parent = &self.nodes[e.parent];
                let a = format!("pgflare_p{}", e.parent);
                let set = e.columns.iter().map(|c| format!("{} IS NOT NULL", qualified(&at, c))).collect();
                let mut found = vec![join(&a, &e.ref_columns, &at, &e.columns)];
                found.extend(self.live_at(e.parent, &a, &a));
                let exists = format!(
                    "EXISTS (SELECT 1 FROM {} {a} WHERE {})",
                    parent.spec.sql_name(),
                    found.join(" AND ")
                );
                OrphanCheck {
                    foreign_key: e.name.clone(),
                    columns: e.columns.clone(),
                    parent: parent.spec.qualified(),
                    condition: and(vec![and(set).unwrap_or_else(|| "true".into()), format!("NOT {exists}")])
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// What an ancestor must meet.
enum Base<'a> {
    /// Soft-deleted.
    Deleted,
    /// The caller's condition (columns unqualified), checked only on
    /// ancestors with a soft-delete column: only their changes can change
    /// whether a descendant is live.
    Changed(&'a str),
}

/// Writes the conditions, with aliases unique within one condition.
struct Gen<'a> {
    rows: &'a LiveRows,
    next: Cell<usize>,
    /// A cycle was followed once around and cut there.
    cut: Cell<bool>,
}

impl<'a> Gen<'a> {
    fn new(rows: &'a LiveRows) -> Gen<'a> {
        Gen { rows, next: Cell::new(0), cut: Cell::new(false) }
    }

    fn alias(&self) -> String {
        self.next.set(self.next.get() + 1);
        format!("pgflare_r{}", self.next.get())
    }

    /// The row's own part of `base`. `Changed` is unqualified: the callers
    /// place it where the row's table is alone in its `FROM`.
    fn base(&self, n: usize, at: &str, base: &Base) -> Option<String> {
        let soft = self.rows.nodes[n].soft.as_ref()?;
        match base {
            Base::Deleted => Some(soft.deleted(at)),
            Base::Changed(c) => Some(c.to_string()),
        }
    }

    /// `base` on the row itself or on an ancestor.
    fn reach(&self, n: usize, at: &str, base: &Base, path: &mut Vec<usize>) -> Option<String> {
        let mut parts: Vec<String> = self.base(n, at, base).into_iter().collect();
        parts.extend(self.ancestors(n, at, base, path, true));
        or(parts)
    }

    /// One `EXISTS` per foreign key along which a parent of the row of
    /// node `n` (named `at`) meets `base`, itself or through its own
    /// ancestors; `path` holds the tables above, to stop at a cycle.
    fn ancestors(
        &self,
        n: usize,
        at: &str,
        base: &Base,
        path: &mut Vec<usize>,
        with_self: bool,
    ) -> Vec<String> {
        let node = &self.rows.nodes[n];
        let mut out = Vec::new();
        for e in node.cascades.iter().filter(|e| e.parent != n) {
            let a = self.alias();
            let cond = if path.contains(&e.parent) {
                self.cut.set(true);
                self.base(e.parent, &a, base)
            } else {
                path.push(e.parent);
                let c = self.reach(e.parent, &a, base, path);
                path.pop();
                c
            };
            if let Some(c) = cond {
                let parent = self.rows.nodes[e.parent].spec.sql_name();
                let on = join(&a, &e.ref_columns, at, &e.columns);
                out.push(format!("EXISTS (SELECT 1 FROM {parent} {a} WHERE {on} AND ({c}))"));
            }
        }
        let selfs: Vec<&Edge> = node.cascades.iter().filter(|e| e.parent == n).collect();
        if with_self && !selfs.is_empty() {
            // Self-references to different columns walk separately.
            let mut groups: Vec<Vec<&Edge>> = Vec::new();
            for e in selfs {
                match groups.iter_mut().find(|g| g[0].ref_columns == e.ref_columns) {
                    Some(g) => g.push(e),
                    None => groups.push(vec![e]),
                }
            }
            out.extend(groups.iter().filter_map(|g| self.walk(n, at, g, base, path)));
        }
        out
    }

    /// An ancestor up a self-referencing tree (edges `g`, all to the same
    /// key columns) meets `base`, itself or through its other parents.
    fn walk(&self, n: usize, at: &str, g: &[&Edge], base: &Base, path: &mut Vec<usize>) -> Option<String> {
        let (z, up, y) = (self.alias(), self.alias(), self.alias());
        let mut conds: Vec<String> = self.base(n, &z, base).into_iter().collect();
        conds.extend(self.ancestors(n, &z, base, path, false));
        let cond = or(conds)?;
        let table = self.rows.nodes[n].spec.sql_name();
        let keys = &g[0].ref_columns;
        // The walk carries each ancestor's key and its parent references.
        let mut carried: Vec<&String> = keys.iter().collect();
        for e in g {
            carried.extend(e.columns.iter().filter(|c| !carried.contains(c)).collect::<Vec<_>>());
        }
        let names: Vec<String> = (0..carried.len()).map(|i| format!("c{i}")).collect();
        let pos = |c: &String| carried.iter().position(|x| *x == c).map(|i| names[i].clone());
        let select = carried.iter().map(|c| qualified(&y, c)).collect::<Vec<_>>().join(", ");
        let from_row: Vec<String> = g.iter().map(|e| join(&y, keys, at, &e.columns)).collect();
        let from_up: Vec<String> = g
            .iter()
            .map(|e| {
                let pairs = keys
                    .iter()
                    .zip(&e.columns)
                    .filter_map(|(k, c)| Some(format!("{} = {up}.{}", qualified(&y, k), pos(c)?)));
                pairs.collect::<Vec<_>>().join(" AND ")
            })
            .collect();
        let key_names = names[..keys.len()].join(", ");
        let z_keys = keys.iter().map(|k| qualified(&z, k)).collect::<Vec<_>>().join(", ");
        Some(format!(
            "EXISTS (WITH RECURSIVE {up}({}) AS (SELECT {select} FROM {table} {y} WHERE {} UNION \
             SELECT {select} FROM {up} JOIN {table} {y} ON {}) \
             SELECT 1 FROM {table} {z} WHERE ({z_keys}) IN (SELECT {key_names} FROM {up}) AND ({cond}))",
            names.join(", "),
            any(&from_row),
            any(&from_up),
        ))
    }
}

/// `a.r1 = b.c1 AND ...`
fn join(a: &str, refs: &[String], b: &str, cols: &[String]) -> String {
    refs.iter()
        .zip(cols)
        .map(|(r, c)| format!("{} = {}", qualified(a, r), qualified(b, c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn any(parts: &[String]) -> String {
    match parts.len() {
        1 => parts[0].clone(),
        _ => parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" OR "),
    }
}

fn or(parts: Vec<String>) -> Option<String> {
    match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => Some(parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" OR ")),
    }
}

fn and(parts: Vec<String>) -> Option<String> {
    match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => Some(parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" AND ")),
    }
}

#[cfg(test)]
pub(super) mod tests;
