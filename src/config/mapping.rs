//! Checks one `[[tables]]` entry against the table the source really has and
//! builds what the D1 side needs: the columns that go to D1, in order, under
//! their D1 names, with their types, and the D1 key. This is where a typo
//! in a column name is caught, with the table's real columns listed.

use serde::Serialize;

use super::project::{ColumnMapping, TableMapping};
use crate::batch::TableSpec;
use crate::error::{Error, Result};
use crate::source::TableInfo;
use crate::typemap::Kind;

/// D1 allows at most this many columns in a table.
pub const D1_MAX_COLUMNS: usize = 100;

/// A table as it lands in D1.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct D1Table {
    /// D1 table name.
    pub name: String,
    /// The D1 table: `schema` is the source schema, `name` the D1 name,
    /// columns filtered and ordered as they go to D1, each under its D1 name
    /// (types and nullability from the source), `primary_key` in D1 names.
    pub spec: TableSpec,
    /// The source column of each `spec.columns` entry, same order.
    pub source_columns: Vec<String>,
    /// Key columns, D1 names.
    pub primary_key: Vec<String>,
}

impl D1Table {
    /// The D1 name of source column `source`, if it goes to D1.
    pub fn d1_name(&self, source: &str) -> Option<&str> {
        self.source_columns.iter().position(|s| s == source).map(|i| self.spec.columns[i].name.as_str())
    }
}

/// The mapping used for a table that pgflare.toml does not list: every
/// column but a vector column under its own name, the source's key.
pub fn default_mapping(info: &TableInfo) -> TableMapping {
    TableMapping {
        setting: format!("table {}", info.spec.qualified()),
        schema: info.spec.schema.clone(),
        table: info.spec.name.clone(),
        d1_table: info.spec.name.clone(),
        ..TableMapping::default()
    }
}

/// Checks `mapping` against `info` and returns the D1 table.
pub fn d1_table(mapping: &TableMapping, info: &TableInfo) -> Result<D1Table> {
    let spec = &info.spec;
    let key = |k: &str| format!("{}.{k}", mapping.setting);
    let available = || spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let no_column = |k: String, c: &str| Error::Config {
        setting: k,
        message: format!("{} has no column `{c}`; columns are: {}", spec.qualified(), available()),
    };
    let must_exist = |k: String, c: &str| match spec.column(c) {
        Some(col) => Ok(col),
        None => Err(no_column(k, c)),
    };

    let columns: Vec<(ColumnMapping, String)> = match &mapping.d1_columns {
        Some(cols) => {
            cols.iter().enumerate().map(|(i, c)| (c.clone(), key(&format!("d1_columns[{i}]")))).collect()
        }
        None => {
            for r in &mapping.renames {
                must_exist(key(&format!("d1_names.{}", r.source)), &r.source)?;
            }
            spec.columns
                .iter()
                .filter(|c| Some(&c.name) != mapping.vector.as_ref())
                .map(|c| {
                    let d1 = mapping.renames.iter().find(|r| r.source == c.name).map(|r| r.d1.clone());
                    let m =
                        ColumnMapping { source: c.name.clone(), d1: d1.unwrap_or_else(|| c.name.clone()) };
                    (m, key("d1_columns"))
                })
                .collect()
        }
    };
    let mut d1_columns = Vec::new();
    let mut source_columns = Vec::new();
    for (m, k) in &columns {
        let col = must_exist(k.clone(), &m.source)?;
        crate::sink::d1::schema::check_name("column", &m.d1).map_err(|e| reword(e, k.clone()))?;
        if let Some(j) =
            d1_columns.iter().position(|c: &crate::batch::ColumnSpec| c.name.eq_ignore_ascii_case(&m.d1))
        {
            return Err(Error::Config {
                setting: k.clone(),
                message: format!("`{}` and `{}` would both be `{}` in D1", m.source, source_columns[j], m.d1),
            });
        }
        d1_columns.push(crate::batch::ColumnSpec { name: m.d1.clone(), ..col.clone() });
        source_columns.push(m.source.clone());
    }
    if d1_columns.len() > D1_MAX_COLUMNS {
        return Err(Error::Config {
            setting: key("d1_columns"),
            message: format!(
                "{} would have {} columns in D1, which allows at most {D1_MAX_COLUMNS} per table: \
                 list the ones D1 needs in d1_columns",
                spec.qualified(),
                d1_columns.len()
            ),
        });
    }

    let (key_source, key_setting) = match &mapping.primary_key {
        Some(k) => (k.clone(), "primary_key"),
        None => (spec.primary_key.clone(), "primary_key (the source's)"),
    };
    if key_source.is_empty() {
        return Err(Error::Config {
            setting: key("primary_key"),
            message: format!(
                "{} has no primary key: name the columns that identify a row, e.g. primary_key = [\"id\"]; \
                 columns are: {}",
                spec.qualified(),
                available()
            ),
        });
    }
    let mut primary_key = Vec::new();
    for (i, k) in key_source.iter().enumerate() {
        let setting = key(&format!("{key_setting}[{i}]"));
        must_exist(setting.clone(), k)?;
        let Some(pos) = source_columns.iter().position(|s| s == k) else {
            return Err(Error::Config {
                setting,
                message: format!("key column `{k}` must go to D1 (add it to d1_columns): upserts need it"),
            });
        };
        primary_key.push(d1_columns[pos].name.clone());
    }

    if let Some(c) = &mapping.cursor {
        must_exist(key("cursor"), c)?;
    }
    if let Some(v) = &mapping.vector {
        let col = must_exist(key("vector"), v)?;
        if !matches!(col.ty.kind, Kind::Vector | Kind::Halfvec) || col.ty.array {
            return Err(Error::Config {
                setting: key("vector"),
                message: format!("`{v}` is {}, not a vector or halfvec column", col.pg_type),
            });
        }
    }
    for (i, m) in mapping.vector_metadata.iter().enumerate() {
        must_exist(key(&format!("vector_metadata[{i}]")), m)?;
    }
    for (c, _) in &mapping.casts {
        must_exist(key(&format!("casts.{c}")), c)?;
    }

    let name = mapping.d1_table.clone();
    let spec = TableSpec {
        schema: spec.schema.clone(),
        name: name.clone(),
        columns: d1_columns,
        primary_key: primary_key.clone(),
    };
    Ok(D1Table { name, spec, source_columns, primary_key })
}

fn reword(e: Error, setting: String) -> Error {
    match e {
        Error::Config { message, .. } => Error::Config { setting, message },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ColumnSpec;
    use crate::typemap::ColumnType;

    fn info() -> TableInfo {
        let col = |name: &str, kind: Kind| ColumnSpec {
            name: name.into(),
            pg_type: format!("{kind:?}").to_lowercase(),
            ty: ColumnType { dims: (kind == Kind::Vector).then_some(3), ..ColumnType::scalar(kind) },
            nullable: name != "id",
            cast: None,
        };
        TableInfo {
            spec: TableSpec {
                schema: "public".into(),
                name: "chunks".into(),
                columns: vec![
                    col("id", Kind::Uuid),
                    col("content", Kind::Text),
                    col("embedding", Kind::Vector),
                    col("updated_at", Kind::Timestamptz),
                ],
                primary_key: vec!["id".into()],
            },
            row_estimate: None,
            total_bytes: 0,
            constraints: vec![],
            indexes: vec![],
            ddl: String::new(),
            foreign_keys: vec![],
            unique_keys: vec![],
            btree_indexes: vec![],
            skipped_indexes: vec![],
        }
    }

    fn mapping() -> TableMapping {
        TableMapping {
            setting: "pgflare.toml: tables[0]".into(),
            schema: "public".into(),
            table: "chunks".into(),
            d1_table: "chunks".into(),
            ..TableMapping::default()
        }
    }

    #[test]
    fn defaults_leave_the_vector_out() {
        let m = TableMapping { vector: Some("embedding".into()), ..mapping() };
        let t = d1_table(&m, &info()).expect("ok");
        assert_eq!(t.source_columns, ["id", "content", "updated_at"]);
        assert_eq!(t.primary_key, ["id"]);
        assert_eq!(t.spec.columns[0].ty.d1_type(), "TEXT");
    }

    #[test]
    fn renames_and_order_follow_d1_columns() {
        let cm = |s: &str, d: &str| ColumnMapping { source: s.into(), d1: d.into() };
        let m =
            TableMapping { d1_columns: Some(vec![cm("content", "body"), cm("id", "chunk_id")]), ..mapping() };
        let t = d1_table(&m, &info()).expect("ok");
        assert_eq!(t.spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["body", "chunk_id"]);
        assert_eq!(t.primary_key, ["chunk_id"]);
        assert_eq!(t.d1_name("content"), Some("body"));
    }

    #[test]
    fn errors_name_the_key_and_list_the_columns() {
        let cm = |s: &str| ColumnMapping { source: s.into(), d1: s.into() };
        let m = TableMapping { d1_columns: Some(vec![cm("id"), cm("contnet")]), ..mapping() };
        let e = d1_table(&m, &info()).expect_err("typo").to_string();
        assert_eq!(
            e,
            "pgflare.toml: tables[0].d1_columns[1]: public.chunks has no column `contnet`; \
             columns are: id, content, embedding, updated_at"
        );
        let m = TableMapping { d1_columns: Some(vec![cm("content")]), ..mapping() };
        let e = d1_table(&m, &info()).expect_err("key").to_string();
        assert!(e.contains("primary_key (the source's)[0]: key column `id` must go to D1"), "{e}");
        let m = TableMapping { vector: Some("content".into()), ..mapping() };
        assert!(d1_table(&m, &info()).expect_err("vec").to_string().contains("not a vector"));
    }

    #[test]
    fn more_than_100_columns_is_refused() {
        let mut i = info();
        for n in 0..100 {
            let mut c = i.spec.columns[1].clone();
            c.name = format!("c{n}");
            i.spec.columns.push(c);
        }
        let e = d1_table(&mapping(), &i).expect_err("wide").to_string();
        assert!(e.contains("at most 100"), "{e}");
    }
}
