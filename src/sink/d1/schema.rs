//! The D1 (SQLite dialect) table for a source table: column types from the
//! type table, NOT NULL where the source has it, the primary key. Names
//! starting with `_cf_` are refused: D1 reserves them.

use crate::batch::{quote_ident, ColumnSpec, TableSpec};
use crate::error::Result;

/// One column of a D1 `CREATE TABLE`: name, type from the type table, NOT NULL.
pub fn column_line(c: &ColumnSpec) -> String {
    format!("  {} {}{}", quote_ident(&c.name), c.ty.d1_type(), if c.nullable { "" } else { " NOT NULL" })
}

/// `CREATE TABLE IF NOT EXISTS` for `spec` under the D1 name `d1_name`.
pub fn create_table(spec: &TableSpec, d1_name: &str) -> Result<String> {
    crate::d1::check_name("table", d1_name)?;
    let mut lines: Vec<String> = spec.columns.iter().map(column_line).collect();
    if !spec.primary_key.is_empty() {
        let keys = spec.primary_key.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ");
        lines.push(format!("  PRIMARY KEY ({keys})"));
    }
    Ok(format!("CREATE TABLE IF NOT EXISTS {} (\n{}\n);\n", quote_ident(d1_name), lines.join(",\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ColumnSpec;
    use crate::typemap::{ColumnType, Kind};

    #[test]
    fn reserved_names_are_refused() {
        assert!(crate::d1::check_name("table", "_CF_kv").is_err());
        assert!(crate::d1::check_name("table", "chunks").is_ok());
    }

    #[test]
    fn create_table_uses_the_type_table() {
        let spec = TableSpec {
            schema: "public".into(),
            name: "chunks".into(),
            columns: vec![
                ColumnSpec {
                    name: "id".into(),
                    pg_type: "uuid".into(),
                    ty: ColumnType::scalar(Kind::Uuid),
                    nullable: false,
                    cast: None,
                },
                ColumnSpec {
                    name: "n".into(),
                    pg_type: "int4".into(),
                    ty: ColumnType::scalar(Kind::Int4),
                    nullable: true,
                    cast: None,
                },
            ],
            primary_key: vec!["id".into()],
        };
        assert_eq!(
            create_table(&spec, "chunks").unwrap(),
            "CREATE TABLE IF NOT EXISTS \"chunks\" (\n  \"id\" TEXT NOT NULL,\n  \"n\" INTEGER,\n  PRIMARY KEY (\"id\")\n);\n"
        );
    }
}
