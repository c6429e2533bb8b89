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
use crate::d1::check_name;
use crate::error::Result;
use crate::sink::d1::links::{d1_names, source_waves, D1ForeignKey, FkPlan, Placeholder, Role};
use crate::sink::d1::schema::column_line;
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
-- A foreign key on a cycle (a table referencing itself, or tables referencing
-- each other) is set by pgflare load after the rows it links are all in.
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
    let plan = FkPlan::new(tables);
    let mut out = String::from(HEADER);
    for &i in plan.waves.iter().flatten() {
        out.push('\n');
        out.push_str(&table_sql(&tables[i].0, &tables[i].1, &plan.tables[i])?);
    }
    Ok(out)
}

/// Indices of `infos` with every table after the tables it references
/// (among `infos`), foreign keys inside a cycle aside (see `links`).
pub fn fk_order(infos: &[&TableInfo]) -> Vec<usize> {
    source_waves(infos).into_iter().flatten().collect()
}

fn list(cols: &[String]) -> String {
    cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
}

/// An index on the columns of each foreign key D1 enforces, unless the
/// primary key, a UNIQUE constraint or an index already starts with them.
/// SQLite looks up the children of every parent row it deletes (or whose
/// key changes), and without such an index that is a scan of the whole
/// child table per parent row: deleting a document's thousands of chunks
/// or a subtree of a page tree becomes quadratic and can pass D1's 30 s per
/// query (sqlite.org/foreignkeys.html, "Required and Suggested Database
/// Indexes"). Postgres does not require these indexes, so a source often
/// lacks them.
fn fk_indexes(info: &TableInfo, t: &D1Table, fks: &[D1ForeignKey]) -> String {
    let mut leading: Vec<Vec<String>> = vec![t.primary_key.clone()];
    leading.extend(info.unique_keys.iter().filter_map(|u| d1_names(t, u).ok()));
    leading.extend(info.btree_indexes.iter().filter_map(|ix| d1_names(t, &ix.columns).ok()));
    let covered = |cols: &[String]| {
        let want: BTreeSet<&String> = cols.iter().collect();
        leading
            .iter()
            .any(|l| l.len() >= cols.len() && l[..cols.len()].iter().collect::<BTreeSet<_>>() == want)
    };
    let mut out = String::new();
    let mut done: Vec<Vec<String>> = Vec::new();
    for fk in fks {
        if matches!(fk.role, Role::Skipped(_)) || fk.columns.is_empty() || covered(&fk.columns) {
            continue;
        }
        if done.contains(&fk.columns) {
            continue;
        }
        let name = format!("{}_{}_fkey_idx", t.name, fk.columns.join("_"));
        out.push_str(&format!(
            "-- index for the foreign key {}: D1 looks up children when a parent row is deleted\n",
            fk.source.name.replace(['\n', '\r'], " ")
        ));
        out.push_str(&format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({});\n",
            quote_ident(&name),
            quote_ident(&t.name),
            list(&fk.columns)
        ));
        done.push(fk.columns.clone());
    }
    out
}

fn table_sql(info: &TableInfo, t: &D1Table, fks: &[D1ForeignKey]) -> Result<String> {
    check_name("table", &t.name)?;
    let mut notes: Vec<String> = Vec::new();
    // NOT NULL columns a link writes NULL into until the link step runs.
    let relaxed: BTreeSet<&String> = fks
        .iter()
        .filter_map(|f| match &f.role {
            Role::Link(l) if l.placeholder == Placeholder::Null => Some(l),
            _ => None,
        })
        .flat_map(|l| l.set_columns())
        .filter(|c| t.spec.column(c).is_some_and(|c| !c.nullable))
        .collect();
    let mut lines: Vec<String> = t
        .spec
        .columns
        .iter()
        .map(|c| match relaxed.contains(&c.name) {
            true => column_line(&crate::batch::ColumnSpec { nullable: true, ..c.clone() }),
            false => column_line(c),
        })
        .collect();
    for c in relaxed {
        notes.push(format!(
            "{c} is NOT NULL in the source but allows NULL here: its foreign key is on a cycle, so \
             pgflare load writes it after every row it may point at is in (NULL until then)"
        ));
    }
    lines.push(format!("  PRIMARY KEY ({})", list(&t.primary_key)));
    let pk: BTreeSet<&String> = t.primary_key.iter().collect();
    for u in &info.unique_keys {
        match d1_names(t, u) {
            Ok(cols) if cols.iter().collect::<BTreeSet<_>>() == pk => {}
            Ok(cols) => lines.push(format!("  UNIQUE ({})", list(&cols))),
            Err(c) => notes.push(format!("UNIQUE ({}) skipped: column {c} does not go to D1", u.join(", "))),
        }
    }
    for fk in fks {
        let what =
            format!("FOREIGN KEY {} -> {}.{}", fk.source.name, fk.source.ref_schema, fk.source.ref_table);
        if let Role::Skipped(reason) = &fk.role {
            notes.push(format!("{what} skipped: {reason}"));
            continue;
        }
        let mut line = format!(
            "  FOREIGN KEY ({}) REFERENCES {} ({})",
            list(&fk.columns),
            quote_ident(&fk.ref_table),
            list(&fk.ref_columns)
        );
        for (on, action) in [("DELETE", &fk.source.on_delete), ("UPDATE", &fk.source.on_update)] {
            match d1_action(&fk.source, on, action) {
                Ok(Some(clause)) => line.push_str(&clause),
                Ok(None) => {}
                Err(why) => notes.push(format!("FOREIGN KEY {}: {why}", fk.source.name)),
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
    out.push_str(&fk_indexes(info, t, fks));
    for s in &info.skipped_indexes {
        notes.push(format!("index {} skipped: {} ({})", s.name, s.reason, s.definition));
    }
    for n in notes {
        // One comment line each, whatever the definition holds.
        out.push_str(&format!("-- {}\n", n.replace(['\n', '\r'], " ")));
    }
    Ok(out)
}
