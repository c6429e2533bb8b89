//! `pgflare init` as a job: reads the source catalog once (and samples
//! json/jsonb columns for their keys) and writes the two files a migration
//! starts from: `pgflare.toml` (what moves where) and the D1 migration for
//! `wrangler d1 migrations apply`. The configuration is parsed back and
//! checked against the catalog before anything is written, so what init
//! writes is always accepted by `pgflare load`; existing files are left
//! alone unless `force`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{file, mapping};
use crate::error::{Error, Result};
use crate::sink::d1::migration;
use crate::source::{introspect, Selection, Source};

/// wrangler applies `NNNN_name.sql` files in number order.
const MIGRATION_NAME: &str = "pgflare_initial";

/// What init proposed for one table.
#[derive(Serialize)]
pub struct TableReport {
    pub table: String,
    pub d1_table: String,
    pub d1_columns: Vec<String>,
    pub primary_key: Vec<String>,
    pub cursor: Option<String>,
    pub vector: Option<String>,
    pub vector_metadata: Vec<String>,
    /// JSON paths proposed as top-level metadata properties.
    pub vector_metadata_paths: Vec<crate::config::vector_metadata::PathProperty>,
    pub vector_metadata_indexes: Vec<String>,
    /// Array columns' frequent values as boolean properties (filterable).
    pub vector_metadata_flags: Vec<crate::config::vector_metadata::FlagColumn>,
    /// What the json/jsonb columns hold (a sample), which the proposal is made from.
    pub json_keys: Vec<crate::init::survey::JsonSurvey>,
}

/// The files init wrote, and what they propose per table.
pub struct Written {
    pub config: PathBuf,
    pub migration: PathBuf,
    pub tables: Vec<TableReport>,
    /// The `[[queries]]` shapes proposed.
    pub queries: Vec<crate::config::queries::QueryShape>,
}

/// Writes `config_path` and a new migration in `migrations_dir` for the
/// tables of `selection`.
pub async fn run(
    source: &Source,
    selection: &Selection,
    config_path: &Path,
    migrations_dir: &Path,
    force: bool,
) -> Result<Written> {
    refuse_overwrite(config_path, force)?;
    let migration_path = migration_file(migrations_dir);
    refuse_overwrite(&migration_path, force)?;
    let mut conn = source.connect().await?;
    let infos = introspect(&mut conn, selection).await?;
    let order = migration::fk_order(&infos.iter().collect::<Vec<_>>());
    let mut surveys = Vec::new();
    let mut arrays = Vec::new();
    for info in &infos {
        surveys.push(super::survey::survey_table(&mut conn, info).await?);
        arrays.push(super::filters::survey_arrays(&mut conn, info).await?);
    }
    let mut suggested = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let at = format!("{}: tables[{n}]", config_path.display());
        let m = super::suggest(&infos[i], at, &surveys[i], &arrays[i]);
        if m.primary_key.is_none() {
            return Err(Error::Config {
                setting: format!("table {}", infos[i].spec.qualified()),
                message: "has no primary key, which D1 upserts need: add one in Postgres, \
                          or leave the table out (--table)"
                    .into(),
            });
        }
        suggested.push((&infos[i], m, surveys[i].as_slice()));
    }
    let text = super::config_toml(
        &selection.schema,
        &suggested.iter().map(|(i, m, s)| (*i, m, *s)).collect::<Vec<_>>(),
    );
    // Parse what we are about to write, exactly as `load` will.
    let project = file::parse_project(&text, config_path)
        .map_err(|e| Error::Internal(format!("the generated pgflare.toml does not parse back: {e}")))?;
    let mut pairs = Vec::new();
    let mut tables = Vec::new();
    for (m, (info, _, json_keys)) in project.tables.iter().zip(&suggested) {
        let d1 = mapping::d1_table(m, info)?;
        tables.push(TableReport {
            table: info.spec.qualified(),
            d1_table: d1.name.clone(),
            d1_columns: d1.spec.columns.iter().map(|c| c.name.clone()).collect(),
            primary_key: d1.primary_key.clone(),
            cursor: m.cursor.clone(),
            vector: m.vector.clone(),
            vector_metadata: m.vector_metadata.clone(),
            vector_metadata_paths: m.vector_json.paths.clone(),
            vector_metadata_indexes: m.vector_metadata_indexes.clone(),
            vector_metadata_flags: m.vector_flags.clone(),
            json_keys: json_keys.to_vec(),
        });
        pairs.push(((*info).clone(), d1));
    }
    let sql = migration::migration_sql(&pairs)?;
    std::fs::write(config_path, &text).map_err(Error::io(config_path))?;
    if let Some(dir) = migration_path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    std::fs::write(&migration_path, &sql).map_err(Error::io(&migration_path))?;
    Ok(Written {
        config: config_path.to_path_buf(),
        migration: migration_path,
        tables,
        queries: project.queries,
    })
}

fn refuse_overwrite(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(Error::Config {
            setting: path.display().to_string(),
            message: "already exists; pgflare init does not overwrite it (it may hold your edits): \
                      move it away or pass --force"
                .into(),
        });
    }
    Ok(())
}

/// `DIR/NNNN_pgflare_initial.sql`: the existing pgflare file when there is
/// one (so --force replaces it), else numbered after the migrations already
/// in DIR, since wrangler applies them in number order.
fn migration_file(dir: &Path) -> PathBuf {
    let mut highest = 0u32;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((num, rest)) = name.split_once('_') else { continue };
            if rest == format!("{MIGRATION_NAME}.sql") {
                return e.path();
            }
            if let (Ok(n), true) = (num.parse::<u32>(), name.ends_with(".sql")) {
                highest = highest.max(n);
            }
        }
    }
    dir.join(format!("{:04}_{MIGRATION_NAME}.sql", highest + 1))
}
