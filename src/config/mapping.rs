//! Checks one `[[tables]]` entry against the table the source really has and
//! builds what the D1 side needs: the columns that go to D1, in order, under
//! their D1 names, with their types, and the D1 key. This is where a typo
//! in a column name is caught, with the table's real columns listed.

use std::collections::HashMap;

use serde::Serialize;

use super::project::{ColumnMapping, OnInvalid, TableMapping};
use super::vector_metadata::{FlagColumn, JsonMetadata};
use crate::batch::TableSpec;
use crate::cloudflare::limits::D1_MAX_COLUMNS;
use crate::error::{Error, Result};
use crate::source::TableInfo;
use crate::typemap::Kind;

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
        crate::d1::check_name("column", &m.d1).map_err(|e| reword(e, k.clone()))?;
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
    if let Some(c) = &mapping.soft_delete {
        must_exist(key("soft_delete"), c)?;
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

/// The Vectorize side of a table, when it has a `vector` column: checked
/// against the catalog (the id column must give a short text id, each
/// metadata column must have a form Vectorize metadata can hold).
pub fn vector_mapping(
    mapping: &TableMapping,
    info: &TableInfo,
    settings: &super::project::VectorizeSettings,
) -> Result<Option<crate::config::mapping::VectorMapping>> {
    let Some(vector) = &mapping.vector else { return Ok(None) };
    let spec = &info.spec;
    let key = |k: &str| format!("{}.{k}", mapping.setting);
    let col = |k: &str, c: &str| {
        spec.column(c).ok_or_else(|| Error::Config {
            setting: key(k),
            message: format!("{} has no column `{c}`", spec.qualified()),
        })
    };
    let v = col("vector", vector)?;
    if let Some(d) = v.ty.dims.filter(|d| *d > crate::cloudflare::limits::VECTORIZE_MAX_DIMS) {
        return Err(Error::Config {
            setting: key("vector"),
            message: format!(
                "`{vector}` is {} ({d} dimensions); Vectorize takes at most {}: reduce the dimensions \
                 (e.g. a Matryoshka-truncated model), or leave `vector` out",
                v.pg_type,
                crate::cloudflare::limits::VECTORIZE_MAX_DIMS
            ),
        });
    }
    let dims = match (v.ty.dims, settings.dimensions) {
        (Some(c), Some(s)) if c != s => {
            return Err(Error::Config {
                setting: "[vectorize] dimensions".into(),
                message: format!("is {s}, but `{vector}` is {} ({c} dimensions)", v.pg_type),
            })
        }
        (c, s) => c.or(s),
    };
    let id = match (&mapping.vector_id, &mapping.primary_key) {
        (Some(c), _) => c.clone(),
        (None, Some(k)) if k.len() == 1 => k[0].clone(),
        (None, None) if spec.primary_key.len() == 1 => spec.primary_key[0].clone(),
        _ => {
            return Err(Error::Config {
                setting: key("vector_id"),
                message: format!(
                    "{} has a key of several columns; name one column whose value is the vector id \
                     (vector_id = \"...\", at most 64 bytes of text)",
                    spec.qualified()
                ),
            })
        }
    };
    let textual = |c: &crate::batch::ColumnSpec| {
        !c.ty.array
            && matches!(
                c.ty.kind,
                Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Uuid | Kind::Text | Kind::Enum
            )
    };
    let id_col = col("vector_id", &id)?;
    if !textual(id_col) {
        return Err(Error::Config {
            setting: key("vector_id"),
            message: format!(
                "`{id}` is {}; a vector id comes from an integer, uuid or text column",
                id_col.pg_type
            ),
        });
    }
    if let Some(ns) = &mapping.vector_namespace {
        let c = col("vector_namespace", ns)?;
        if !textual(c) {
            return Err(Error::Config {
                setting: key("vector_namespace"),
                message: format!(
                    "`{ns}` is {}; a namespace comes from an integer, uuid or text column",
                    c.pg_type
                ),
            });
        }
    }
    for (j, m) in mapping.vector_metadata.iter().enumerate() {
        let c = col(&format!("vector_metadata[{j}]"), m)?;
        if c.ty.metadata_form().is_none() {
            return Err(Error::Config {
                setting: key(&format!("vector_metadata[{j}]")),
                message: format!(
                    "`{m}` is {}, which Vectorize metadata cannot hold (strings, numbers, booleans, \
                     string arrays and JSON only)",
                    c.pg_type
                ),
            });
        }
    }
    super::vector_metadata::check_columns(&mapping.setting, &mapping.vector_json, info)?;
    super::vector_metadata::check_flag_columns(&mapping.setting, &mapping.vector_flags, info)?;
    for (j, m) in mapping.vector_metadata_indexes.iter().enumerate() {
        if !mapping.vector_metadata.contains(m) {
            // A JSON path property: its declared type was checked with the file.
            continue;
        }
        let form = col(&format!("vector_metadata_indexes[{j}]"), m)?.ty.metadata_form();
        if form.and_then(|f| f.index_type()).is_none() {
            return Err(Error::Config {
                setting: key(&format!("vector_metadata_indexes[{j}]")),
                message: format!(
                    "`{m}` is not a string, number or boolean, so it cannot have a metadata index"
                ),
            });
        }
    }
    Ok(Some(crate::config::mapping::VectorMapping {
        vector: vector.clone(),
        id,
        namespace: mapping.vector_namespace.clone(),
        metadata: mapping.vector_metadata.clone(),
        json: mapping.vector_json.clone(),
        flags: mapping.vector_flags.clone(),
        dims,
        on_invalid: settings.on_invalid,
    }))
}

/// The metadata indexes a table asks for: (property, type).
pub fn metadata_index_types(mapping: &TableMapping, info: &TableInfo) -> Vec<(String, String)> {
    mapping
        .vector_metadata_indexes
        .iter()
        .filter_map(|m| {
            let declared = super::vector_metadata::index_type(
                m,
                &mapping.vector_metadata,
                &mapping.vector_json,
                &mapping.vector_flags,
            );
            let t = match declared {
                Ok(Some(declared)) => declared,
                _ => info.spec.column(m)?.ty.metadata_form()?.index_type()?.to_string(),
            };
            Some((m.clone(), t))
        })
        .chain(
            // Every flag is indexed (listed or not): it exists to be filtered on.
            mapping
                .vector_flags
                .iter()
                .flat_map(|f| f.properties())
                .filter(|p| !mapping.vector_metadata_indexes.contains(p))
                .map(|p| (p, "boolean".to_string())),
        )
        .collect()
}

fn reword(e: Error, setting: String) -> Error {
    match e {
        Error::Config { message, .. } => Error::Config { setting, message },
        other => other,
    }
}

/// How one source table feeds Vectorize (source column names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VectorMapping {
    pub vector: String,
    pub id: String,
    pub namespace: Option<String>,
    /// Whole columns; metadata keys are the column names.
    pub metadata: Vec<String>,
    /// JSON paths and spread json columns (top-level properties).
    pub json: JsonMetadata,
    /// Boolean properties for listed values of text array columns.
    pub flags: Vec<FlagColumn>,
    /// The dimension every vector must have (the index's or the column's).
    pub dims: Option<u32>,
    pub on_invalid: OnInvalid,
}

/// Mappings by qualified source table name; tables without one send nothing.
#[derive(Clone, Debug, Default)]
pub struct VectorMappings(pub HashMap<String, VectorMapping>);

impl VectorMappings {
    pub fn get(&self, spec: &TableSpec) -> Option<&VectorMapping> {
        self.0.get(&spec.qualified())
    }
}

impl VectorMapping {
    /// Every source column the vectors are made from.
    pub fn columns(&self) -> Vec<&String> {
        let mut out: Vec<&String> =
            [&self.vector, &self.id].into_iter().chain(self.namespace.iter()).collect();
        out.extend(&self.metadata);
        out.extend(self.json.columns());
        out.extend(self.flags.iter().map(|f| &f.column));
        out
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
            unsupported: vec![],
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
    fn vector_mappings_are_checked_against_the_catalog() {
        use crate::config::project::VectorizeSettings;
        let settings = VectorizeSettings::default();
        let m = TableMapping {
            vector: Some("embedding".into()),
            vector_metadata: vec!["updated_at".into()],
            ..mapping()
        };
        let v = vector_mapping(&m, &info(), &settings).expect("ok").expect("some");
        assert_eq!((v.id.as_str(), v.dims), ("id", Some(3)));

        let mut wide = info();
        wide.spec.columns[2].ty.dims = Some(2000);
        wide.spec.columns[2].pg_type = "vector(2000)".into();
        let e = vector_mapping(&m, &wide, &settings).expect_err("too wide").to_string();
        assert!(e.contains("tables[0].vector: `embedding` is vector(2000) (2000 dimensions); Vectorize takes at most 1536"), "{e}");

        let composite = TableMapping { primary_key: Some(vec!["id".into(), "content".into()]), ..m.clone() };
        let e = vector_mapping(&composite, &info(), &settings).expect_err("composite").to_string();
        assert!(e.contains("tables[0].vector_id") && e.contains("several columns"), "{e}");

        let ts_id = TableMapping { vector_id: Some("updated_at".into()), ..m.clone() };
        let e = vector_mapping(&ts_id, &info(), &settings).expect_err("timestamp id").to_string();
        assert!(e.contains("integer, uuid or text"), "{e}");

        let dims = VectorizeSettings { dimensions: Some(4), ..VectorizeSettings::default() };
        let e = vector_mapping(&m, &info(), &dims).expect_err("dims disagree").to_string();
        assert!(e.contains("is 4, but `embedding`"), "{e}");
        assert_eq!(
            metadata_index_types(
                &TableMapping { vector_metadata_indexes: vec!["updated_at".into()], ..m },
                &info()
            ),
            vec![("updated_at".to_string(), "string".to_string())]
        );
    }

    #[test]
    fn json_metadata_columns_must_be_json_and_typed_paths_give_index_types() {
        use crate::config::json_path::JsonPath;
        use crate::config::project::VectorizeSettings;
        use crate::config::vector_metadata::{JsonMetadata, PathProperty};
        let mut i = info();
        let mut meta = i.spec.columns[1].clone();
        (meta.name, meta.ty, meta.pg_type) = ("meta".into(), ColumnType::scalar(Kind::Jsonb), "jsonb".into());
        i.spec.columns.push(meta);
        let prop = |p: &str| PathProperty {
            name: "page".into(),
            path: JsonPath::parse(p).expect("path"),
            ty: Some(crate::typemap::MetadataForm::Number),
        };
        let json = |p: &str| JsonMetadata { paths: vec![prop(p)], ..JsonMetadata::default() };
        let m = TableMapping {
            vector: Some("embedding".into()),
            vector_json: json("meta.loc.pageNumber"),
            vector_metadata_indexes: vec!["page".into()],
            ..mapping()
        };
        let v = vector_mapping(&m, &i, &VectorizeSettings::default()).expect("ok").expect("some");
        assert_eq!(v.json.paths[0].name, "page");
        assert!(v.columns().contains(&&"meta".to_string()), "the json column is read");
        assert_eq!(metadata_index_types(&m, &i), vec![("page".to_string(), "number".to_string())]);
        let text = TableMapping { vector_json: json("content.x"), ..m.clone() };
        let e = vector_mapping(&text, &i, &VectorizeSettings::default()).expect_err("text").to_string();
        assert!(
            e.contains("tables[0].vector_metadata_paths.page: `content` is text: JSON paths and spreading need a json or jsonb column"),
            "{e}"
        );
        let missing = TableMapping { vector_json: json("nope.x"), ..m };
        let e = vector_mapping(&missing, &i, &VectorizeSettings::default()).expect_err("missing").to_string();
        assert!(e.contains("has no column `nope`"), "{e}");
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
