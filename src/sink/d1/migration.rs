//! The D1 schema as one migration file (what `pgflare init` writes for
//! `wrangler d1 migrations apply`, and what `pgflare load` runs on a fresh
//! target): tables parents first, each with its D1 columns, NOT NULL,
//! primary key, the UNIQUE constraints and FOREIGN KEYs that survive the
//! column selection, then plain b-tree indexes. What cannot be carried over
//! (HNSW/GIN, expression and partial indexes; keys on columns left out of
//! D1; referential actions SQLite would carry out differently) is named in
//! an SQL comment with the reason. D1 refuses BEGIN/COMMIT and most
//! PRAGMAs, so the file has none.

use std::collections::BTreeSet;

use crate::batch::quote_ident;
use crate::config::mapping::D1Table;
use crate::error::Result;
use crate::sink::d1::schema::{check_name, column_line};
use crate::source::constraints::ForeignKey;
use crate::source::TableInfo;

/// The header: how to apply the file and the exact value forms pgflare
/// writes into the TEXT columns (see `value.rs`), so queries written against
/// D1 compare and sort them correctly.
const HEADER: &str = "\
-- D1 schema written by `pgflare init` from the Postgres source.
-- Apply it with: npx wrangler d1 migrations apply <DATABASE> --local (or --remote)
-- then load rows with: pgflare load --target ...
--
-- How values are stored (what `pgflare load` writes):
--   boolean                 INTEGER 0 or 1
--   smallint/integer/bigint INTEGER;  real/double precision REAL (NaN as NULL)
--   numeric                 TEXT, exact decimal digits (e.g. 12345.678)
--   uuid                    TEXT, lower-case hyphenated
--   timestamptz             TEXT, ISO 8601 in UTC with microseconds and Z: 2024-05-01T12:34:56.789012Z
--   timestamp               TEXT, ISO 8601 with microseconds, no zone:     2024-05-01T12:34:56.789012
--   date / time             TEXT, 2024-05-01 / 12:34:56.789012
--   json, jsonb             TEXT holding the JSON document
--   arrays, vector, halfvec TEXT holding a JSON array
--   bytea                   BLOB
-- These TEXT forms sort in time order, so ORDER BY and range filters work.
-- D1 always enforces foreign keys; a table appears after the tables it references.
";

/// The clause D1 gets for one referential action of `fk` (`on` is DELETE
/// or UPDATE), `None` for NO ACTION, or why it is left out. SQLite's SET
/// NULL sets every column of the key, and its SET DEFAULT writes the D1
/// column's default, which pgflare does not carry (D1 columns have none:
/// SQLite writes NULL). Where that would change columns Postgres keeps (the
/// tenant of a composite key under `SET NULL (created_by)`, Postgres 15+) or
/// write another value, the action is left out: D1 then refuses the parent's
/// delete (NO ACTION) instead of silently doing something else.
fn d1_action(fk: &ForeignKey, on: &str, action: &str) -> std::result::Result<Option<String>, String> {
    let subset = on == "DELETE" && !fk.on_delete_columns.is_empty() && fk.on_delete_columns != fk.columns;
    let named = if subset { format!(" ({})", fk.on_delete_columns.join(", ")) } else { String::new() };
    let cols = if subset { &fk.on_delete_columns } else { &fk.columns };
    match action {
        "NO ACTION" => Ok(None),
        "SET NULL" if subset => Err(format!(
            "ON {on} SET NULL{named} left out (NO ACTION in D1): SQLite would set every column of the \
             key ({}) to NULL; set {} to NULL before deleting the referenced row",
            fk.columns.join(", "),
            cols.join(", ")
        )),
        "SET DEFAULT" => Err(format!(
            "ON {on} SET DEFAULT{named} left out (NO ACTION in D1): D1 columns carry no DEFAULT, SQLite \
             would write NULL; set {} to their default before {} the referenced row",
            cols.join(", "),
            if on == "DELETE" { "deleting" } else { "changing the key of" }
        )),
        _ => Ok(Some(format!(" ON {on} {action}"))),
    }
}

/// The whole migration for `tables` (any order; written parents first).
pub fn migration_sql(tables: &[(TableInfo, D1Table)]) -> Result<String> {
    let mut out = String::from(HEADER);
    for i in fk_order(&tables.iter().map(|(t, _)| t).collect::<Vec<_>>()) {
        out.push('\n');
        out.push_str(&table_sql(&tables[i].0, &tables[i].1, tables)?);
    }
    Ok(out)
}

/// Indices of `infos` with every table after the tables it references
/// (among `infos`); tables in a reference cycle keep their relative order
/// at the end.
pub fn fk_order(infos: &[&TableInfo]) -> Vec<usize> {
    fk_waves(infos).into_iter().flatten().collect()
}

/// `infos` grouped into waves: a table's parents (by foreign key, among
/// `infos`) are all in earlier waves; tables in a cycle share the last.
/// `pgflare load` loads wave by wave, since D1 checks foreign keys at the
/// end of every request and a child row cannot arrive before its parent.
pub fn fk_waves(infos: &[&TableInfo]) -> Vec<Vec<usize>> {
    let pos =
        |schema: &str, name: &str| infos.iter().position(|t| t.spec.schema == schema && t.spec.name == name);
    let parents: Vec<BTreeSet<usize>> = infos
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.foreign_keys
                .iter()
                .filter_map(|f| pos(&f.ref_schema, &f.ref_table))
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut placed = vec![false; infos.len()];
    let mut waves = Vec::new();
    while placed.iter().any(|p| !p) {
        let ready: Vec<usize> =
            (0..infos.len()).filter(|&i| !placed[i] && parents[i].iter().all(|&p| placed[p])).collect();
        if ready.is_empty() {
            waves.push((0..infos.len()).filter(|&i| !placed[i]).collect());
            break;
        }
        ready.iter().for_each(|&i| placed[i] = true);
        waves.push(ready);
    }
    waves
}

fn list(cols: &[String]) -> String {
    cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
}

/// D1 names of `source` columns, or the first one that does not go to D1.
fn d1_names(t: &D1Table, source: &[String]) -> Result<Vec<String>, String> {
    source.iter().map(|c| t.d1_name(c).map(str::to_string).ok_or_else(|| c.clone())).collect()
}

/// Column sets the table is unique on in D1 (key, UNIQUE, unique indexes).
fn unique_sets(info: &TableInfo, t: &D1Table) -> Vec<BTreeSet<String>> {
    let mut sets = vec![t.primary_key.iter().cloned().collect()];
    let from_source =
        info.unique_keys.iter().chain(info.btree_indexes.iter().filter(|i| i.unique).map(|i| &i.columns));
    sets.extend(from_source.filter_map(|cols| d1_names(t, cols).ok()).map(|c| c.into_iter().collect()));
    sets
}

fn table_sql(info: &TableInfo, t: &D1Table, all: &[(TableInfo, D1Table)]) -> Result<String> {
    check_name("table", &t.name)?;
    let mut notes: Vec<String> = Vec::new();
    let mut lines: Vec<String> = t.spec.columns.iter().map(column_line).collect();
    lines.push(format!("  PRIMARY KEY ({})", list(&t.primary_key)));
    let pk: BTreeSet<&String> = t.primary_key.iter().collect();
    for u in &info.unique_keys {
        match d1_names(t, u) {
            Ok(cols) if cols.iter().collect::<BTreeSet<_>>() == pk => {}
            Ok(cols) => lines.push(format!("  UNIQUE ({})", list(&cols))),
            Err(c) => notes.push(format!("UNIQUE ({}) skipped: column {c} does not go to D1", u.join(", "))),
        }
    }
    for fk in &info.foreign_keys {
        let parent = all.iter().find(|(p, _)| p.spec.schema == fk.ref_schema && p.spec.name == fk.ref_table);
        let what = format!("FOREIGN KEY {} -> {}.{}", fk.name, fk.ref_schema, fk.ref_table);
        let Some((pinfo, ptable)) = parent else {
            notes.push(format!("{what} skipped: that table does not go to D1"));
            continue;
        };
        let (cols, refs) = match (d1_names(t, &fk.columns), d1_names(ptable, &fk.ref_columns)) {
            (Ok(c), Ok(r)) => (c, r),
            (Err(c), _) | (_, Err(c)) => {
                notes.push(format!("{what} skipped: column {c} does not go to D1"));
                continue;
            }
        };
        // SQLite needs the parent columns to be unique in the parent.
        if !unique_sets(pinfo, ptable).contains(&refs.iter().cloned().collect()) {
            notes.push(format!(
                "{what} skipped: ({}) is not unique in D1 table {}",
                refs.join(", "),
                ptable.name
            ));
            continue;
        }
        let mut line = format!(
            "  FOREIGN KEY ({}) REFERENCES {} ({})",
            list(&cols),
            quote_ident(&ptable.name),
            list(&refs)
        );
        for (on, action) in [("DELETE", &fk.on_delete), ("UPDATE", &fk.on_update)] {
            match d1_action(fk, on, action) {
                Ok(Some(clause)) => line.push_str(&clause),
                Ok(None) => {}
                Err(why) => notes.push(format!("FOREIGN KEY {}: {why}", fk.name)),
            }
        }
        lines.push(line);
    }
    let mut out = format!("-- {} -> D1 table {}\n", info.spec.qualified(), t.name);
    out.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n);\n",
        quote_ident(&t.name),
        lines.join(",\n")
    ));
    for ix in &info.btree_indexes {
        match d1_names(t, &ix.columns) {
            Ok(cols) => {
                check_name("index", &ix.name)?;
                out.push_str(&format!(
                    "CREATE {}INDEX IF NOT EXISTS {} ON {} ({});\n",
                    if ix.unique { "UNIQUE " } else { "" },
                    quote_ident(&ix.name),
                    quote_ident(&t.name),
                    list(&cols)
                ));
            }
            Err(c) => notes.push(format!("index {} skipped: column {c} does not go to D1", ix.name)),
        }
    }
    for s in &info.skipped_indexes {
        notes.push(format!("index {} skipped: {} ({})", s.name, s.reason, s.definition));
    }
    for n in notes {
        // One comment line each, whatever the definition holds.
        out.push_str(&format!("-- {}\n", n.replace(['\n', '\r'], " ")));
    }
    Ok(out)
}
