//! Reads the source catalog: which tables to move, their columns resolved
//! through the type table (domains unwrapped, casts applied), primary key,
//! constraints, indexes, size, row estimate, and the DDL that recreates
//! them (kept in the archive manifest).

use std::collections::BTreeMap;

use super::conn::SourceConn;
use sqlx::Row as _;

use super::constraints;
use super::table::{Constraint, TableInfo};
use super::unsupported::{refuse_unsupported, FixStyle, UnsupportedColumn};
use crate::batch::{quote_ident, ColumnSpec, TableSpec};
use crate::error::{Error, Result};
use crate::typemap::{self, ColumnType, PgTypeInfo};

/// Which tables and columns to read, and how.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Schema of unqualified table names and of "all tables".
    pub schema: String,
    /// `name` or `schema.name`; empty means every table of `schema`.
    pub tables: Vec<String>,
    /// `table.column` -> SQL type to read the column as.
    pub casts: BTreeMap<String, String>,
    /// `table.column` names to leave out.
    pub excludes: Vec<String>,
}

/// Finds the selected tables and describes them; refuses, all at once, the
/// columns that cannot be read (with their fixes as flags).
pub async fn introspect(conn: &mut SourceConn, sel: &Selection) -> Result<Vec<TableInfo>> {
    let tables = introspect_lenient(conn, sel).await?;
    refuse_unsupported(&tables, FixStyle::Flags, |_, _| true)?;
    Ok(tables)
}

/// [`introspect`], except that columns which cannot be read are listed in
/// [`TableInfo::unsupported`] instead of refused (for `inspect`, and for
/// commands that read only some columns).
pub async fn introspect_lenient(conn: &mut SourceConn, sel: &Selection) -> Result<Vec<TableInfo>> {
    // A partitioned table ('p') has no storage of its own and autovacuum
    // never analyzes it: its size and row estimate are its partitions'
    // (pg_partition_tree lists nothing for a plain table).
    let rows = sqlx::query(
        "SELECT c.oid::int8, n.nspname::text, c.relname::text,
                CASE WHEN c.relkind = 'p'
                     THEN coalesce((SELECT sum(p.reltuples) FROM pg_partition_tree(c.oid) t
                                      JOIN pg_class p ON p.oid = t.relid
                                     WHERE t.isleaf AND p.reltuples >= 0), c.reltuples)
                     ELSE c.reltuples END::float8,
                CASE WHEN c.relkind = 'p'
                     THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
                             FROM pg_partition_tree(c.oid) t)::int8
                     ELSE pg_total_relation_size(c.oid) END
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          ORDER BY n.nspname, c.relname",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db("listing tables"))?;
    let all: Vec<(i64, String, String, f64, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();

    let wanted: Vec<(String, String)> = if sel.tables.is_empty() {
        all.iter().filter(|t| t.1 == sel.schema).map(|t| (t.1.clone(), t.2.clone())).collect()
    } else {
        sel.tables
            .iter()
            .map(|t| match t.split_once('.') {
                Some((s, n)) => (s.to_string(), n.to_string()),
                None => (sel.schema.clone(), t.clone()),
            })
            .collect()
    };
    if wanted.is_empty() {
        return Err(Error::Source {
            message: format!("schema {} has no tables", sel.schema),
            hint: "name the schema with --schema, or tables with --table SCHEMA.TABLE".into(),
        });
    }

    let mut out = Vec::new();
    for (schema, name) in wanted {
        let Some(t) = all.iter().find(|t| t.1 == schema && t.2 == name) else {
            return Err(Error::Source {
                message: format!("table {schema}.{name} does not exist"),
                hint: "list the tables with `pgflare inspect` (no --table) or check the spelling and schema"
                    .into(),
            });
        };
        out.push(describe(conn, t.0, &schema, &name, t.3, t.4, sel).await?);
    }
    check_selection_used(sel, &out)?;
    Ok(out)
}

/// A cast or exclude naming a column that does not exist is a typo: say so.
fn check_selection_used(sel: &Selection, tables: &[TableInfo]) -> Result<()> {
    for (setting, names) in
        [("--cast", sel.casts.keys().cloned().collect::<Vec<_>>()), ("--exclude", sel.excludes.clone())]
    {
        for name in names {
            let found = tables.iter().any(|t| {
                name.strip_prefix(&format!("{}.", t.spec.name))
                    .or_else(|| name.strip_prefix(&format!("{}.", t.spec.qualified())))
                    .is_some_and(|col| {
                        t.spec.column(col).is_some()
                            || t.unsupported.iter().any(|u| u.column == col)
                            || setting == "--exclude"
                    })
            });
            if !found {
                return Err(Error::Config {
                    setting: setting.into(),
                    message: format!("{name} names no column of the selected tables; expected TABLE.COLUMN"),
                });
            }
        }
    }
    Ok(())
}

fn lookup<'a, T>(map: &'a BTreeMap<String, T>, schema: &str, table: &str, column: &str) -> Option<&'a T> {
    map.get(&format!("{table}.{column}")).or_else(|| map.get(&format!("{schema}.{table}.{column}")))
}

async fn describe(
    conn: &mut SourceConn,
    oid: i64,
    schema: &str,
    name: &str,
    reltuples: f64,
    total_bytes: i64,
    sel: &Selection,
) -> Result<TableInfo> {
    let table = format!("{schema}.{name}");
    let cols = sqlx::query(
        "SELECT a.attname::text, a.attnotnull, format_type(a.atttypid, a.atttypmod),
                CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
                b.typname::text, b.typtype::text, b.typcategory = 'A',
                e.typname::text, e.typtype::text
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
           LEFT JOIN pg_type e0 ON e0.oid = b.typelem AND b.typcategory = 'A'
           LEFT JOIN pg_type e ON e.oid = CASE WHEN e0.typtype = 'd' THEN e0.typbasetype ELSE e0.oid END
          WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the columns of {table}")))?;

    let excludes: BTreeMap<String, ()> = sel.excludes.iter().map(|e| (e.clone(), ())).collect();
    let (mut columns, mut unsupported) = (Vec::new(), Vec::new());
    for r in &cols {
        let col: String = r.get(0);
        if lookup(&excludes, schema, name, &col).is_some() {
            continue;
        }
        let not_null: bool = r.get(1);
        let pg_type: String = r.get(2);
        let resolved = match lookup(&sel.casts, schema, name, &col) {
            Some(sql_type) => {
                resolve_cast(conn, &table, &col, &pg_type, sql_type).await?.map(|(t, c)| (t, Some(c)))
            }
            None => {
                let is_array: bool = r.get(6);
                let (typname, typtype): (String, String) =
                    if is_array { (r.get(7), r.get(8)) } else { (r.get(4), r.get(5)) };
                resolve(&table, &col, &pg_type, &typname, &typtype, is_array, r.get(3)).map(|t| (t, None))
            }
        };
        match resolved {
            Ok((ty, cast)) => columns.push(ColumnSpec { name: col, pg_type, ty, nullable: !not_null, cast }),
            Err(u) => unsupported.push(*u),
        }
    }

    let primary_key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text
           FROM pg_index i
           JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = $1::oid AND i.indisprimary
          ORDER BY k.ord",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the primary key of {table}")))?;
    if let Some(missing) = primary_key
        .iter()
        .find(|k| !columns.iter().any(|c| &c.name == *k) && !unsupported.iter().any(|u| &u.column == *k))
    {
        return Err(Error::Config {
            setting: "--exclude".into(),
            message: format!("{table}.{missing} is part of the primary key and cannot be excluded"),
        });
    }

    let constraints: Vec<Constraint> = sqlx::query(
        "SELECT conname::text, contype::text, pg_get_constraintdef(oid)
           FROM pg_constraint WHERE conrelid = $1::oid ORDER BY contype, conname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the constraints of {table}")))?
    .iter()
    .map(|r| Constraint { name: r.get(0), kind: r.get(1), definition: r.get(2) })
    .collect();

    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
          WHERE i.indrelid = $1::oid
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
          ORDER BY 1",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the indexes of {table}")))?;

    let enums: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT format('CREATE TYPE %s AS ENUM (%s);', t.oid::regtype,
                (SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder)
                   FROM pg_enum WHERE enumtypid = t.oid))
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'e'",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the enum types of {table}")))?;

    // Domains (also of array elements), so the DDL replays on its own.
    let domains: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT format('CREATE DOMAIN %s AS %s%s%s;', d.oid::regtype,
                format_type(d.typbasetype, d.typtypmod),
                CASE WHEN d.typnotnull THEN ' NOT NULL' ELSE '' END,
                coalesce((SELECT string_agg(' CONSTRAINT ' || quote_ident(c.conname) || ' '
                                            || pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
                            FROM pg_constraint c WHERE c.contypid = d.oid AND c.contype <> 'n'), ''))
           FROM pg_attribute a
           JOIN pg_type t ON t.oid = a.atttypid
           JOIN pg_type d ON d.typtype = 'd'
                         AND d.oid = CASE WHEN t.typtype = 'd' THEN t.oid ELSE t.typelem END
          WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the domains of {table}")))?;

    let spec = TableSpec { schema: schema.into(), name: name.into(), columns, primary_key };
    let types: Vec<String> = enums.into_iter().chain(domains).collect();
    let ddl = ddl(&spec, &cols_all(&cols), &constraints, &indexes, &types);
    let structure = constraints::read(conn, oid, &table).await?;
    Ok(TableInfo {
        spec,
        row_estimate: (reltuples >= 0.0).then_some(reltuples as u64),
        total_bytes,
        constraints,
        indexes,
        ddl,
        foreign_keys: structure.foreign_keys,
        unique_keys: structure.unique_keys,
        btree_indexes: structure.btree_indexes,
        skipped_indexes: structure.skipped_indexes,
        unsupported,
    })
}

fn cols_all(rows: &[sqlx::postgres::PgRow]) -> Vec<(String, String, bool)> {
    rows.iter().map(|r| (r.get(0), r.get(2), r.get(1))).collect()
}

fn resolve(
    table: &str,
    column: &str,
    pg_type: &str,
    typname: &str,
    typtype: &str,
    is_array: bool,
    typmod: i32,
) -> std::result::Result<ColumnType, Box<UnsupportedColumn>> {
    let info = PgTypeInfo { typname, typtype: typtype.chars().next().unwrap_or('b'), is_array, typmod };
    typemap::resolve(&info).map_err(|u| {
        Box::new(UnsupportedColumn::new(
            table,
            column,
            pg_type,
            format!("type `{pg_type}` {}", u.reason),
            u.cast_to,
        ))
    })
}

/// Resolves the type a `--cast` names, through the same table; also returns
/// the type's canonical spelling, which is what goes into generated SQL.
/// The cast is tried on no rows first, so a conversion Postgres does not
/// have (jsonb to integer) is refused here, with Postgres's words, before
/// anything is written.
async fn resolve_cast(
    conn: &mut SourceConn,
    table: &str,
    column: &str,
    pg_type: &str,
    sql_type: &str,
) -> Result<std::result::Result<(ColumnType, String), Box<UnsupportedColumn>>> {
    let row = sqlx::query(
        "SELECT b.typname::text, b.typtype::text, b.typcategory = 'A', e.typname::text, e.typtype::text,
                format_type(t.oid, NULL)
           FROM pg_type t
           JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
           LEFT JOIN pg_type e0 ON e0.oid = b.typelem AND b.typcategory = 'A'
           LEFT JOIN pg_type e ON e.oid = CASE WHEN e0.typtype = 'd' THEN e0.typbasetype ELSE e0.oid END
          WHERE t.oid = to_regtype($1)",
    )
    .bind(sql_type)
    .fetch_optional(&mut *conn)
    .await
    .map_err(Error::db(format!("resolving --cast {table}.{column}={sql_type}")))?;
    let Some(r) = row else {
        return Err(Error::Config {
            setting: "--cast".into(),
            message: format!("{table}.{column}={sql_type}: `{sql_type}` is not a type this database knows"),
        });
    };
    let is_array: bool = r.get(2);
    let (typname, typtype): (String, String) =
        if is_array { (r.get(3), r.get(4)) } else { (r.get(0), r.get(1)) };
    let shown: String = r.get(5);
    let ty = match resolve(table, column, &shown, &typname, &typtype, is_array, -1) {
        Ok(ty) => ty,
        Err(mut u) => {
            u.pg_type = pg_type.into();
            u.reason = format!("the cast to {shown} gives a type that is not supported");
            return Ok(Err(u));
        }
    };
    let sql_name = table.split_once('.').map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)));
    let probe = format!(
        "SELECT {}::{shown} FROM {} LIMIT 0",
        quote_ident(column),
        sql_name.unwrap_or_else(|| quote_ident(table))
    );
    // Inside the snapshot's transaction a failed statement would abort it:
    // the probe runs in a savepoint there (outside one, SAVEPOINT fails
    // harmlessly and the probe runs on its own).
    let in_transaction = sqlx::raw_sql("SAVEPOINT pgflare_cast_probe").execute(&mut *conn).await.is_ok();
    let probed = sqlx::raw_sql(sqlx::AssertSqlSafe(probe)).execute(&mut *conn).await;
    if in_transaction {
        let undo = match probed {
            Ok(_) => "RELEASE SAVEPOINT pgflare_cast_probe",
            Err(_) => "ROLLBACK TO SAVEPOINT pgflare_cast_probe; RELEASE SAVEPOINT pgflare_cast_probe",
        };
        sqlx::raw_sql(undo).execute(&mut *conn).await.map_err(Error::db("ending the cast probe"))?;
    }
    match probed {
        Ok(_) => Ok(Ok((ty, shown))),
        Err(e @ sqlx::Error::Database(_)) => Ok(Err(Box::new(UnsupportedColumn::new(
            table,
            column,
            pg_type,
            format!("Postgres cannot read it as {shown}: {}", crate::error::pg_message(&e)),
            "text",
        )))),
        Err(e) => Err(Error::db(format!("trying --cast {table}.{column}={sql_type}"))(e)),
    }
}

fn ddl(
    spec: &TableSpec,
    all_columns: &[(String, String, bool)],
    constraints: &[Constraint],
    indexes: &[String],
    types: &[String],
) -> String {
    let mut out = String::new();
    for e in types {
        out.push_str(e);
        out.push('\n');
    }
    out.push_str(&format!("CREATE TABLE {} (\n", spec.sql_name()));
    let mut lines: Vec<String> = all_columns
        .iter()
        .map(|(name, ty, not_null)| {
            format!("    {} {}{}", quote_ident(name), ty, if *not_null { " NOT NULL" } else { "" })
        })
        .collect();
    lines.extend(
        constraints
            .iter()
            .filter(|c| c.kind != "n")
            .map(|c| format!("    CONSTRAINT {} {}", quote_ident(&c.name), c.definition)),
    );
    out.push_str(&lines.join(",\n"));
    out.push_str("\n);\n");
    for i in indexes {
        out.push_str(i);
        out.push_str(";\n");
    }
    out
}
