//! Foreign keys, unique constraints and indexes of a source table in
//! structured form (column lists, referential actions), which the D1
//! migration `pgflare init` writes needs; the `pg_get_*def` text that
//! introspection also keeps is for people and the archive's DDL.

use super::conn::SourceConn;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::error::{Error, Result};

/// A FOREIGN KEY constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    /// Referential actions as SQL spells them (`NO ACTION`, `CASCADE`, ...).
    pub on_delete: String,
    pub on_update: String,
    /// The columns `ON DELETE SET NULL (...)` / `SET DEFAULT (...)` name
    /// (Postgres 15+); empty when the action applies to every column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_delete_columns: Vec<String>,
}

/// A plain b-tree index on columns (not backing a constraint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

/// An index SQLite cannot have as it is, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedIndex {
    pub name: String,
    pub definition: String,
    pub reason: String,
}

/// What [`read`] returns for one table.
#[derive(Clone, Debug, Default)]
pub struct Structure {
    pub foreign_keys: Vec<ForeignKey>,
    pub unique_keys: Vec<Vec<String>>,
    pub btree_indexes: Vec<Index>,
    pub skipped_indexes: Vec<SkippedIndex>,
}

/// Column names of an attnum array, in array order.
const COLS: &str = "ARRAY(SELECT a.attname::text FROM unnest({k}) WITH ORDINALITY AS k(n, o)
                          JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.n ORDER BY k.o)";

fn cols(array: &str, rel: &str) -> String {
    COLS.replace("{k}", array).replace("{rel}", rel)
}

/// Reads the structure of table `oid` (`table` is its name, for messages).
pub async fn read(conn: &mut SourceConn, oid: i64, table: &str) -> Result<Structure> {
    // confdelsetcols exists from Postgres 15 on: read through to_jsonb so
    // older servers (no such column) give an empty list instead of an error.
    let fk_sql = format!(
        "SELECT c.conname::text, rn.nspname::text, rc.relname::text, {}, {},
                c.confdeltype::text, c.confupdtype::text,
                ARRAY(SELECT a.attname::text
                        FROM jsonb_array_elements_text(coalesce(nullif(to_jsonb(c) -> 'confdelsetcols',
                                 'null'::jsonb), '[]'::jsonb)) WITH ORDINALITY AS k(n, o)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n::int2
                       ORDER BY k.o)
           FROM pg_constraint c
           JOIN pg_class rc ON rc.oid = c.confrelid
           JOIN pg_namespace rn ON rn.oid = rc.relnamespace
          WHERE c.conrelid = $1::oid AND c.contype = 'f'
          ORDER BY c.conname",
        cols("c.conkey", "c.conrelid"),
        cols("c.confkey", "c.confrelid")
    );
    let foreign_keys = sqlx::query(sqlx::AssertSqlSafe(fk_sql))
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(format!("reading the foreign keys of {table}")))?
        .iter()
        .map(|r| ForeignKey {
            name: r.get(0),
            ref_schema: r.get(1),
            ref_table: r.get(2),
            columns: r.get(3),
            ref_columns: r.get(4),
            on_delete: action(&r.get::<String, _>(5)),
            on_update: action(&r.get::<String, _>(6)),
            on_delete_columns: r.get(7),
        })
        .collect();

    let unique_sql = format!(
        "SELECT {} FROM pg_constraint c WHERE c.conrelid = $1::oid AND c.contype = 'u' ORDER BY c.conname",
        cols("c.conkey", "c.conrelid")
    );
    let unique_keys: Vec<Vec<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(unique_sql))
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(format!("reading the unique constraints of {table}")))?;

    // Indexes backing this table's own key/unique/exclusion constraints are
    // covered by those; an FK's conindid points at the *parent's* index,
    // hence the conrelid condition.
    let index_sql = "SELECT ci.relname::text, am.amname::text, i.indisunique, i.indpred IS NOT NULL,
                0 = ANY (i.indkey::int2[]), pg_get_indexdef(i.indexrelid),
                ARRAY(SELECT a.attname::text
                        FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                       WHERE k.o <= i.indnkeyatts ORDER BY k.o)
           FROM pg_index i
           JOIN pg_class ci ON ci.oid = i.indexrelid
           JOIN pg_am am ON am.oid = ci.relam
          WHERE i.indrelid = $1::oid
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                             WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                               AND c.contype IN ('p', 'u', 'x'))
          ORDER BY 1";
    let rows = sqlx::query(index_sql)
        .bind(oid)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::db(format!("reading the indexes of {table}")))?;
    let mut out = Structure { foreign_keys, unique_keys, ..Structure::default() };
    for r in &rows {
        let (name, am, unique, partial, expression): (String, String, bool, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let reason = if am != "btree" {
            Some(format!("{am} index: SQLite has only b-tree indexes"))
        } else if expression {
            Some("on an expression written in Postgres SQL".into())
        } else if partial {
            Some("partial (its WHERE clause is Postgres SQL)".into())
        } else {
            None
        };
        match reason {
            Some(reason) => out.skipped_indexes.push(SkippedIndex { name, definition: r.get(5), reason }),
            None => out.btree_indexes.push(Index { name, columns: r.get(6), unique }),
        }
    }
    Ok(out)
}

/// `pg_constraint.confdeltype` / `confupdtype` code as SQL.
fn action(code: &str) -> String {
    match code {
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        _ => "NO ACTION",
    }
    .into()
}
