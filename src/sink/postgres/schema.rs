//! The tables of a Postgres target, rebuilt from an archive's manifest for
//! `restore --target postgres`, in the order `pg_restore` uses and for the
//! same reason (rows load fastest into bare tables, and a key checked once
//! over all rows costs less than one checked per row):
//!
//! 1. before the rows, in one transaction: the extensions the column types
//!    need (`vector`, `citext`), the tables' schemas, the enum and domain
//!    types (the manifest's DDL holds them, written by introspection from
//!    `pg_enum` and `pg_constraint`), and each table with its columns and
//!    NOT NULL;
//! 2. after the rows: per table its primary key, unique, exclusion and
//!    check constraints, then every foreign key (their tables all exist and
//!    hold their rows by then), then the other indexes.
//!
//! Constraint and index texts are Postgres's own (`pg_get_constraintdef`,
//! `pg_get_indexdef`), replayed as they are. Each step says how to tell it
//! already happened ([`Exists`]), so a rerun after a kill does only what is
//! left. What the manifest does not hold is not rebuilt: column defaults,
//! identity and sequences, triggers, policies, grants and comments (the
//! README says so).

use crate::batch::{quote_ident, TableSpec};
use crate::source::archive::manifest::ManifestTable;
use crate::source::constraint_text;
use crate::source::table::Constraint;
use crate::typemap::Kind;

/// How to tell that a step already ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exists {
    /// `CREATE ... IF NOT EXISTS`: the statement says it itself.
    Statement,
    /// A type: `to_regtype(name)`.
    Type(String),
    /// A constraint `name` on the table `table` (SQL name).
    Constraint { table: String, name: String },
    /// An index: `to_regclass(name)` (schema-qualified SQL name).
    Index(String),
}

/// One statement of the schema, with what it is for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// e.g. `constraint documents_pkey of public.documents`.
    pub what: String,
    pub sql: String,
    pub exists: Exists,
    /// A table the statement references, which must exist for it to run
    /// (a foreign key's parent, when the restore does not bring it).
    pub needs: Option<String>,
}

/// The schema of the restored tables, in the order it is applied.
#[derive(Clone, Debug, Default)]
pub struct PgSchema {
    /// Extensions, schemas, types and tables: before the rows.
    pub tables: Vec<Step>,
    /// Primary keys, unique, exclusion and check constraints, then
    /// foreign keys: after the rows.
    pub constraints: Vec<Step>,
    /// The other indexes, after the constraints.
    pub indexes: Vec<Step>,
    /// Vector indexes (hnsw, ivfflat) left out on request: their
    /// statements, for the user to run later.
    pub skipped_indexes: Vec<String>,
}

/// A statement a restore did not run, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeftOut {
    pub statement: String,
    pub reason: String,
}

/// The schema for `tables`; `vector_indexes` false leaves hnsw and ivfflat
/// indexes out (building one reads every vector; it can run later with
/// `CREATE INDEX CONCURRENTLY` while the database serves).
pub fn plan(tables: &[&ManifestTable], vector_indexes: bool) -> PgSchema {
    let mut s = PgSchema::default();
    for ext in extensions(tables) {
        s.tables.push(Step {
            what: format!("extension {ext}"),
            sql: format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(ext)),
            exists: Exists::Statement,
            needs: None,
        });
    }
    let mut schemas: Vec<&str> = tables.iter().map(|t| t.spec.schema.as_str()).collect();
    schemas.sort_unstable();
    schemas.dedup();
    for schema in schemas {
        s.tables.push(Step {
            what: format!("schema {schema}"),
            sql: format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
            exists: Exists::Statement,
            needs: None,
        });
    }
    for t in tables {
        for sql in types_of(t) {
            if let Some(name) = type_name(&sql) {
                if !s.tables.iter().any(|st| st.exists == Exists::Type(name.clone())) {
                    s.tables.push(Step {
                        what: format!("type {name}"),
                        sql,
                        exists: Exists::Type(name),
                        needs: None,
                    });
                }
            }
        }
    }
    for t in tables {
        s.tables.push(Step {
            what: format!("table {}", t.spec.qualified()),
            sql: create_table(&t.spec),
            exists: Exists::Statement,
            needs: None,
        });
    }
    // Keys of each table before any foreign key: a foreign key needs the
    // unique index of the columns it references.
    for kinds in [&["p", "u", "x", "c"][..], &["f"][..]] {
        for t in tables {
            for c in t.constraints.iter().filter(|c| kinds.contains(&c.kind.as_str())) {
                s.constraints.push(Step {
                    what: format!("constraint {} of {}", c.name, t.spec.qualified()),
                    sql: format!(
                        "ALTER TABLE {} ADD CONSTRAINT {} {}",
                        t.spec.sql_name(),
                        quote_ident(&c.name),
                        c.definition
                    ),
                    exists: Exists::Constraint { table: t.spec.sql_name(), name: c.name.clone() },
                    needs: parent(c, &t.spec.schema, tables),
                });
            }
        }
    }
    for t in tables {
        for def in &t.indexes {
            if !vector_indexes && is_vector_index(def) {
                s.skipped_indexes.push(format!("{def};"));
                continue;
            }
            let name = index_name(def).map(|n| format!("{}.{n}", quote_ident(&t.spec.schema)));
            s.indexes.push(Step {
                what: format!("index of {}: {def}", t.spec.qualified()),
                sql: def.clone(),
                exists: name.map_or(Exists::Statement, Exists::Index),
                needs: None,
            });
        }
    }
    s
}

/// The parent table of a foreign key, when the restore does not bring it
/// (it must then be in the target already).
fn parent(c: &Constraint, schema: &str, tables: &[&ManifestTable]) -> Option<String> {
    let fk = constraint_text::foreign_key(&c.name, &c.definition, schema)?;
    let restored = tables.iter().any(|t| t.spec.schema == fk.ref_schema && t.spec.name == fk.ref_table);
    (!restored).then(|| format!("{}.{}", quote_ident(&fk.ref_schema), quote_ident(&fk.ref_table)))
}

/// `CREATE TABLE IF NOT EXISTS` with the archived columns, their types
/// (a column read through `--cast` comes back as the cast's type: that is
/// what the archive holds) and NOT NULL.
pub fn create_table(spec: &TableSpec) -> String {
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| {
            let ty = c.cast.as_deref().unwrap_or(&c.pg_type);
            format!("    {} {ty}{}", quote_ident(&c.name), if c.nullable { "" } else { " NOT NULL" })
        })
        .collect();
    format!("CREATE TABLE IF NOT EXISTS {} (\n{}\n)", spec.sql_name(), columns.join(",\n"))
}

/// The extensions the archived column types need.
fn extensions(tables: &[&ManifestTable]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in tables.iter().flat_map(|t| &t.spec.columns) {
        let ty = c.cast.as_deref().unwrap_or(&c.pg_type);
        let base = ty.trim_end_matches("[]");
        let ext = match c.ty.kind {
            Kind::Vector | Kind::Halfvec => Some("vector"),
            Kind::Text if base == "citext" || base.ends_with(".citext") => Some("citext"),
            _ => None,
        };
        if let Some(e) = ext.filter(|e| !out.contains(e)) {
            out.push(e);
        }
    }
    out
}

/// The `CREATE TYPE` and `CREATE DOMAIN` statements before the table's
/// `CREATE TABLE` in its manifest DDL (see `source::introspect`).
fn types_of(t: &ManifestTable) -> Vec<String> {
    let head = format!("CREATE TABLE {} (", t.spec.sql_name());
    let Some(end) = t.ddl.find(&head) else { return Vec::new() };
    crate::d1::split::split(&t.ddl[..end])
        .into_iter()
        .filter(|s| s.starts_with("CREATE TYPE ") || s.starts_with("CREATE DOMAIN "))
        .collect()
}

/// The name a `CREATE TYPE x AS ENUM` / `CREATE DOMAIN x AS` creates, as
/// written (quoted and qualified as Postgres printed it).
pub fn type_name(sql: &str) -> Option<String> {
    let rest = sql.strip_prefix("CREATE TYPE ").or_else(|| sql.strip_prefix("CREATE DOMAIN "))?;
    leading_name(rest)
}

/// The index name in `CREATE [UNIQUE] INDEX name ON ...`.
pub fn index_name(def: &str) -> Option<String> {
    let rest = def.strip_prefix("CREATE UNIQUE INDEX ").or_else(|| def.strip_prefix("CREATE INDEX "))?;
    leading_name(rest)
}

fn is_vector_index(def: &str) -> bool {
    def.contains(" USING hnsw ") || def.contains(" USING ivfflat ")
}

/// A possibly qualified SQL name at the start of `s`: plain or `"quoted"`
/// (with `""` inside) parts joined by `.`.
fn leading_name(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                    None => return None,
                }
            }
            i += 1;
        } else {
            let start = i;
            while b
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$' || *c >= 0x80)
            {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        if b.get(i) != Some(&b'.') {
            return Some(s[..i].to_string());
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_read_as_postgres_prints_them() {
        assert_eq!(type_name("CREATE TYPE mood AS ENUM ('a', 'b');").as_deref(), Some("mood"));
        assert_eq!(
            type_name("CREATE DOMAIN \"odd \"\" AS x\".short_text AS text CHECK (length(VALUE) < 5);")
                .as_deref(),
            Some("\"odd \"\" AS x\".short_text")
        );
        assert_eq!(
            index_name("CREATE INDEX chunks_doc_idx ON public.chunks USING btree (document_id)").as_deref(),
            Some("chunks_doc_idx")
        );
        assert_eq!(
            index_name("CREATE UNIQUE INDEX \"Idx.1\" ON public.t USING btree (a)").as_deref(),
            Some("\"Idx.1\"")
        );
        assert!(is_vector_index("CREATE INDEX e ON public.c USING hnsw (embedding vector_cosine_ops)"));
        assert!(!is_vector_index("CREATE INDEX e ON public.c USING btree (hnsw)"));
    }

    proptest! {
        /// Any name Postgres can print, quoted as `quote_ident` does, is
        /// read back whole, whatever follows it.
        #[test]
        fn any_quoted_name_is_read_whole(schema in "\\PC{1,12}", name in "\\PC{1,12}", tail in " (AS|ON) \\PC{0,20}") {
            let qualified = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
            let sql = format!("CREATE DOMAIN {qualified}{tail}");
            prop_assert_eq!(type_name(&sql), Some(qualified));
        }
    }
}
