//! Rows of the WAL back into the readers' form. `pgoutput` sends each
//! value as its type's text output; rather than parse every type's text
//! in Rust (dates, numerics, arrays, JSON, pgvector...), the follower
//! hands the texts back to Postgres as typed literals in a `VALUES` list
//! and reads the result with `COPY ... (FORMAT binary)`, so the change
//! reaches the sinks through the same decoder, casts and type table as a
//! bulk read. A value the stream left out (a TOASTed column an update did
//! not change) is read from the table by the row's key instead.
//!
//! Literals are written `E'...'::type`, with `\` and `'` doubled: that
//! form means the same under either `standard_conforming_strings`
//! setting (property-tested against Postgres in tests/integration/follow.rs).

use crate::batch::{quote_ident, TableSpec};
use crate::error::{Error, Result};

/// One value of a row to write.
#[derive(Clone, Copy, Debug)]
pub enum Cell<'a> {
    Null,
    /// The type's text form.
    Text(&'a str),
    /// Not in the stream: read it from the table by the row's key.
    FromTable,
}

/// Appends `E'text'::pg_type`.
pub fn push_literal(out: &mut String, text: &str, pg_type: &str) {
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push_str("'::");
    out.push_str(pg_type);
}

/// The rows as a `SELECT` whose columns are `spec`'s in order (through
/// their casts), ready for [`crate::source::reader::read_sql`]. `rows`
/// hold one cell per column of `spec`; the key columns must be `Text`.
pub fn rows_select(spec: &TableSpec, rows: &[Vec<Cell<'_>>]) -> Result<String> {
    let key = key_positions(spec)?;
    let names: Vec<String> = spec.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let mut sql = String::from("SELECT ");
    for (i, c) in spec.columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        match &c.cast {
            Some(t) => sql.push_str(&format!("v.{}::{t} AS {}", names[i], names[i])),
            None => sql.push_str(&format!("v.{}", names[i])),
        }
    }
    sql.push_str(" FROM (VALUES ");
    for (r, row) in rows.iter().enumerate() {
        if row.len() != spec.columns.len() {
            return Err(Error::Internal(format!(
                "{}: a change row has {} values for {} columns",
                spec.qualified(),
                row.len(),
                spec.columns.len()
            )));
        }
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let ty = &spec.columns[i].pg_type;
            match cell {
                Cell::Null => sql.push_str(&format!("NULL::{ty}")),
                Cell::Text(t) => push_literal(&mut sql, t, ty),
                Cell::FromTable => {
                    sql.push_str(&format!("(SELECT t.{} FROM {} t WHERE ", names[i], spec.sql_name()));
                    for (n, &k) in key.iter().enumerate() {
                        if n > 0 {
                            sql.push_str(" AND ");
                        }
                        let Cell::Text(kt) = row[k] else {
                            return Err(key_missing(spec, &spec.columns[k].name));
                        };
                        sql.push_str(&format!("t.{} = ", names[k]));
                        push_literal(&mut sql, kt, &spec.columns[k].pg_type);
                    }
                    sql.push(')');
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(") AS v(");
    sql.push_str(&names.join(", "));
    sql.push(')');
    Ok(sql)
}

/// `(k1, k2) IN (VALUES (..), ..)` over `spec`'s own columns, for keys
/// given as text in key order.
pub fn keys_in(spec: &TableSpec, keys: &[Vec<&str>]) -> Result<String> {
    let key = key_positions(spec)?;
    let cols: Vec<String> = key.iter().map(|&k| quote_ident(&spec.columns[k].name)).collect();
    let mut sql = format!("({}) IN (VALUES ", cols.join(", "));
    for (r, row) in keys.iter().enumerate() {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for (n, &k) in key.iter().enumerate() {
            if n > 0 {
                sql.push_str(", ");
            }
            push_literal(&mut sql, row[n], &spec.columns[k].pg_type);
        }
        sql.push(')');
    }
    sql.push(')');
    Ok(sql)
}

/// The keys as a `SELECT` of `keys_spec`'s columns (the key columns only,
/// in key order, as [`crate::digest::pass::key_views`] gives them).
pub fn keys_select(keys_spec: &TableSpec, keys: &[Vec<&str>]) -> Result<String> {
    let rows: Vec<Vec<Cell<'_>>> = keys.iter().map(|k| k.iter().map(|t| Cell::Text(t)).collect()).collect();
    rows_select(keys_spec, &rows)
}

/// Positions of the primary key's columns in `spec`.
pub fn key_positions(spec: &TableSpec) -> Result<Vec<usize>> {
    if spec.primary_key.is_empty() {
        return Err(Error::Config {
            setting: spec.qualified(),
            message: "has no primary key: sync --follow applies changes by key".into(),
        });
    }
    spec.primary_key
        .iter()
        .map(|k| spec.columns.iter().position(|c| &c.name == k).ok_or_else(|| key_missing(spec, k)))
        .collect()
}

fn key_missing(spec: &TableSpec, column: &str) -> Error {
    Error::Config {
        setting: format!("{}.{column}", spec.qualified()),
        message:
            "the key column is not among the columns read (d1_columns): sync --follow applies changes by \
                  key, so keep the key in D1"
                .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads back what [`push_literal`] wrote, as Postgres reads an `E''`
    /// string: `''` is a quote, `\\` a backslash, nothing else escapes.
    fn read_back(lit: &str) -> Option<String> {
        let body = lit.strip_prefix("E'")?.rsplit_once("'::")?.0;
        let mut out = String::new();
        let mut it = body.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '\'' => {
                    if it.next()? != '\'' {
                        return None;
                    }
                    out.push('\'');
                }
                '\\' => {
                    if it.next()? != '\\' {
                        return None;
                    }
                    out.push('\\');
                }
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn a_literal_reads_back_as_its_text_and_never_ends_early(text in "\\PC*|[\\\\'\"eE{}\\[\\]$ ]*") {
            let mut lit = String::new();
            push_literal(&mut lit, &text, "text");
            prop_assert_eq!(read_back(&lit), Some(text.clone()));
            // No quote is left alone before the closing one.
            let body = &lit[2..lit.len() - "'::text".len()];
            prop_assert_eq!(body.replace("''", "").matches('\'').count(), 0);
        }
    }

    fn spec() -> TableSpec {
        let col = |name: &str, pg_type: &str, cast: Option<&str>| crate::batch::ColumnSpec {
            name: name.into(),
            pg_type: pg_type.into(),
            ty: crate::typemap::ColumnType {
                kind: crate::typemap::Kind::Text,
                array: false,
                dims: None,
                decimal: None,
            },
            nullable: true,
            cast: cast.map(str::to_string),
        };
        TableSpec {
            schema: "public".into(),
            name: "chunks".into(),
            columns: vec![
                col("id", "bigint", None),
                col("body", "text", None),
                col("n", "numeric", Some("text")),
            ],
            primary_key: vec!["id".into()],
        }
    }

    #[test]
    fn an_unsent_value_is_read_from_the_table_by_key_and_casts_apply() {
        let sql = rows_select(&spec(), &[vec![Cell::Text("7"), Cell::FromTable, Cell::Null]]).expect("sql");
        assert_eq!(
            sql,
            "SELECT v.\"id\", v.\"body\", v.\"n\"::text AS \"n\" FROM (VALUES (E'7'::bigint, (SELECT t.\"body\" \
             FROM \"public\".\"chunks\" t WHERE t.\"id\" = E'7'::bigint), NULL::numeric)) AS v(\"id\", \"body\", \"n\")"
        );
        assert_eq!(
            keys_in(&spec(), &[vec!["1"], vec!["2"]]).expect("in"),
            "(\"id\") IN (VALUES (E'1'::bigint), (E'2'::bigint))"
        );
    }
}
