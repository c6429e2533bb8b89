//! The tables an archive of Cloudflare writes, as the source defines them:
//! read from the live Postgres (as `verify` reads them, through the same
//! mapping `load` used: [`crate::plan::prepare`]) or, once Postgres is
//! gone, from the manifest of a Postgres archive (`--like`, through
//! [`crate::plan::map_tables`]). Each table's archived spec is the
//! source's, restricted to the columns D1 holds, plus the vector column
//! Vectorize holds; the other source columns are named as omitted.

use std::path::{Path, PathBuf};

use crate::batch::{ColumnSpec, TableSpec};
use crate::config::mapping::{D1Table, VectorMapping};
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::source::archive::manifest::Manifest;
use crate::source::{Snapshot, Source, TableInfo};

/// Where the table definitions come from.
// One value per run: boxing the source would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Definitions {
    /// The source Postgres (read at a snapshot, released at once).
    Live(Source),
    /// A pgflare archive's manifest (made from Postgres before it went).
    Like(PathBuf),
}

/// One table to archive.
#[derive(Clone, Debug)]
pub struct CfTable {
    /// The source table, every column (its constraints and DDL go to the
    /// manifest).
    pub info: TableInfo,
    /// The table in D1 (names, columns, key) as `load` made it.
    pub d1: D1Table,
    /// Its Vectorize side, when it sends vectors.
    pub vector: Option<VectorMapping>,
    /// What the archive holds: source names and types, the columns D1
    /// holds and the vector column, in source order.
    pub spec: TableSpec,
    /// Source columns the archive does not hold.
    pub omitted: Vec<String>,
}

impl CfTable {
    /// Builds the archived spec from the source table and its D1 side.
    pub fn new(info: TableInfo, d1: D1Table, vector: Option<VectorMapping>) -> CfTable {
        let held = |c: &ColumnSpec| {
            d1.source_columns.contains(&c.name) || vector.as_ref().is_some_and(|v| v.vector == c.name)
        };
        let mut columns: Vec<ColumnSpec> = info.spec.columns.iter().filter(|c| held(c)).cloned().collect();
        // A vector column Vectorize fills is NULL for a row the index has
        // no vector for, whatever the source declares.
        for c in columns.iter_mut().filter(|c| !d1.source_columns.contains(&c.name)) {
            c.nullable = true;
        }
        let omitted = info.spec.columns.iter().filter(|c| !held(c)).map(|c| c.name.clone()).collect();
        // The source's key when D1 holds it, else D1's key (which `load`
        // requires D1 to hold) under its source names.
        let primary_key = if !info.spec.primary_key.is_empty()
            && info.spec.primary_key.iter().all(|k| columns.iter().any(|c| &c.name == k))
        {
            info.spec.primary_key.clone()
        } else {
            d1.primary_key
                .iter()
                .filter_map(|k| d1.spec.columns.iter().position(|c| &c.name == k))
                .map(|i| d1.source_columns[i].clone())
                .collect()
        };
        let spec = TableSpec {
            schema: info.spec.schema.clone(),
            name: info.spec.name.clone(),
            columns,
            primary_key,
        };
        CfTable { info, d1, vector, spec, omitted }
    }

    /// The source column the vector's id comes from, when it sends vectors.
    pub fn vector_column(&self) -> Option<&str> {
        self.vector.as_ref().map(|v| v.vector.as_str())
    }
}

/// The tables of `project` (`only` those, when given), defined by
/// `definitions`; vectors mapped when `vectors_on`. Returns them and a
/// description of where their definitions came from (for the manifest).
pub async fn resolve(
    definitions: &Definitions,
    project: &Project,
    only: &[String],
    vectors_on: bool,
) -> Result<(Vec<CfTable>, String)> {
    match definitions {
        Definitions::Live(src) => {
            let mut snapshot = Snapshot::export(src).await.map_err(|e| Error::Source {
                message: format!(
                    "the tables' definitions are read from the source Postgres, which failed: {e}"
                ),
                hint: "once the source is gone, pass --like ARCHIVE_DIR (an archive of it) instead".into(),
            })?;
            let prepared = crate::plan::prepare(&mut snapshot, project, only, vectors_on).await;
            snapshot.release().await?;
            let p = prepared?;
            let tables =
                p.d1.into_iter()
                    .map(|(info, d1)| {
                        let v = p.vectors.mappings.get(&info.spec).cloned();
                        CfTable::new(info, d1, v)
                    })
                    .collect();
            Ok((tables, format!("the source Postgres {}", src.display())))
        }
        Definitions::Like(dir) => like(dir, project, only, vectors_on),
    }
}

/// The tables from the manifest of the archive in `dir`.
fn like(dir: &Path, project: &Project, only: &[String], vectors_on: bool) -> Result<(Vec<CfTable>, String)> {
    let manifest = Manifest::read(dir)?;
    let path = dir.join(crate::source::archive::manifest::FILE_NAME);
    let names = |t: &TableSpec| [t.name.clone(), t.qualified()];
    for o in only {
        if !manifest.tables.iter().any(|t| names(&t.spec).contains(o)) {
            let held: Vec<String> = manifest.tables.iter().map(|t| t.spec.qualified()).collect();
            return Err(Error::Config {
                setting: format!("--table {o}"),
                message: format!(
                    "the archive named by --like holds no such table; it holds {}",
                    held.join(", ")
                ),
            });
        }
    }
    // With [[tables]] in pgflare.toml, the configured ones (as load).
    let configured = |t: &TableSpec| {
        project.tables.is_empty() || project.tables.iter().any(|m| m.schema == t.schema && m.table == t.name)
    };
    let mut infos = manifest
        .tables
        .iter()
        .filter(|t| {
            configured(&t.spec) && (only.is_empty() || only.iter().any(|o| names(&t.spec).contains(o)))
        })
        .map(|t| crate::source::archive::table_info(t, &path))
        .collect::<Result<Vec<_>>>()?;
    if let Some(t) = project.tables.iter().find(|m| {
        !manifest.tables.iter().any(|t| t.spec.schema == m.schema && t.spec.name == m.table)
            && (only.is_empty()
                || only.iter().any(|o| *o == m.table || *o == format!("{}.{}", m.schema, m.table)))
    }) {
        return Err(Error::Config {
            setting: t.setting.clone(),
            message: format!(
                "the archive named by --like does not hold {}.{}: archive it from Postgres, or leave it out with --table",
                t.schema, t.table
            ),
        });
    }
    let mapped = crate::plan::map_tables(project, &mut infos, vectors_on)?;
    let tables = mapped
        .d1
        .into_iter()
        .map(|(info, d1)| {
            let v = mapped.vectors.mappings.get(&info.spec).cloned();
            CfTable::new(info, d1, v)
        })
        .collect();
    let what = format!(
        "the archive {} (made {} from {})",
        std::path::absolute(dir).unwrap_or(dir.to_path_buf()).display(),
        manifest.created_at,
        manifest.source.url
    );
    Ok((tables, what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typemap::{ColumnType, Kind};

    fn col(name: &str, kind: Kind) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            pg_type: format!("{kind:?}").to_lowercase(),
            ty: ColumnType { dims: (kind == Kind::Vector).then_some(3), ..ColumnType::scalar(kind) },
            nullable: name != "id",
            cast: None,
        }
    }

    fn info() -> TableInfo {
        let spec = TableSpec {
            schema: "public".into(),
            name: "chunks".into(),
            columns: vec![
                col("id", Kind::Int8),
                col("secret", Kind::Text),
                col("body", Kind::Text),
                col("embedding", Kind::Vector),
            ],
            primary_key: vec!["id".into()],
        };
        TableInfo {
            spec,
            row_estimate: None,
            total_bytes: 0,
            constraints: Vec::new(),
            indexes: Vec::new(),
            ddl: "CREATE TABLE chunks ()".into(),
            foreign_keys: Vec::new(),
            unique_keys: Vec::new(),
            btree_indexes: Vec::new(),
            skipped_indexes: Vec::new(),
            unsupported: Vec::new(),
        }
    }

    #[test]
    fn the_archived_spec_is_the_sources_columns_d1_and_vectorize_hold_under_source_names() {
        let info = info();
        let mut d1_spec = info.spec.clone();
        d1_spec.name = "chunk_rows".into();
        d1_spec.columns =
            vec![ColumnSpec { name: "chunk_id".into(), ..col("id", Kind::Int8) }, col("body", Kind::Text)];
        d1_spec.primary_key = vec!["chunk_id".into()];
        let d1 = D1Table {
            name: "chunk_rows".into(),
            spec: d1_spec,
            source_columns: vec!["id".into(), "body".into()],
            primary_key: vec!["chunk_id".into()],
        };
        let vector = VectorMapping {
            vector: "embedding".into(),
            id: "id".into(),
            namespace: None,
            metadata: Vec::new(),
            json: Default::default(),
            flags: Vec::new(),
            dims: Some(3),
            on_invalid: crate::config::project::OnInvalid::Fail,
        };
        let t = CfTable::new(info, d1.clone(), Some(vector));
        let names: Vec<&str> = t.spec.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "body", "embedding"]);
        assert_eq!(t.spec.primary_key, ["id"]);
        assert_eq!(t.omitted, ["secret"]);
        assert_eq!(t.spec.name, "chunks", "the source's name, not D1's");
        // Without vectors, the vector column is not archived.
        let t = CfTable::new(t.info.clone(), d1, None);
        assert_eq!(t.omitted, ["secret", "embedding"]);
    }
}
