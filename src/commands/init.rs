//! `pgflare init`: reads the source catalog once (and samples json/jsonb
//! columns for their keys) and writes the two files a
//! migration starts from: `pgflare.toml` (what moves where) and the D1
//! migration for `wrangler d1 migrations apply`. The configuration is
//! parsed back and checked against the catalog before anything is written,
//! so what init writes is always accepted by `pgflare load`.

use crate::output::outln;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::print_json;
use crate::cli::InitArgs;
use crate::config::{file, mapping};
use crate::error::Error;
use crate::init;
use crate::sink::d1::migration;
use crate::source::introspect;

/// wrangler applies `NNNN_name.sql` files in number order.
const MIGRATION_NAME: &str = "pgflare_initial";

#[derive(Serialize)]
struct TableReport {
    table: String,
    d1_table: String,
    d1_columns: Vec<String>,
    primary_key: Vec<String>,
    cursor: Option<String>,
    vector: Option<String>,
    vector_metadata: Vec<String>,
    /// JSON paths proposed as top-level metadata properties.
    vector_metadata_paths: Vec<crate::config::vector_metadata::PathProperty>,
    vector_metadata_indexes: Vec<String>,
    /// What the json/jsonb columns hold (a sample), which the proposal is made from.
    json_keys: Vec<crate::init::survey::JsonSurvey>,
}

pub async fn run(
    args: InitArgs,
    json: bool,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let config_path = args.out_config.clone();
    refuse_overwrite(&config_path, args.force)?;
    let migration_path = migration_file(&args.migrations_dir)?;
    refuse_overwrite(&migration_path, args.force)?;

    let (source, selection, _) = crate::plan::resolve::source_and_selection(&args.source, timeouts)?;
    let mut conn = source.connect().await?;
    let infos = introspect(&mut conn, &selection).await?;
    let order = migration::fk_order(&infos.iter().collect::<Vec<_>>());

    let mut surveys = Vec::new();
    for info in &infos {
        surveys.push(crate::init::survey::survey_table(&mut conn, info).await?);
    }
    let mut suggested = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let m = init::suggest(&infos[i], format!("{}: tables[{n}]", config_path.display()), &surveys[i]);
        if m.primary_key.is_none() {
            return Err(Error::Config {
                setting: format!("table {}", infos[i].spec.qualified()),
                message: "has no primary key, which D1 upserts need: add one in Postgres, \
                          or leave the table out (--table)"
                    .into(),
            }
            .into());
        }
        suggested.push((&infos[i], m, surveys[i].as_slice()));
    }
    let text = init::config_toml(
        &selection.schema,
        &suggested.iter().map(|(i, m, s)| (*i, m, *s)).collect::<Vec<_>>(),
    );
    // Parse what we are about to write, exactly as `load` will.
    let project = file::parse_project(&text, &config_path)
        .context("internal: the generated pgflare.toml does not parse back")?;
    let mut pairs = Vec::new();
    let mut report = Vec::new();
    for (m, (info, _, json_keys)) in project.tables.iter().zip(&suggested) {
        let d1 = mapping::d1_table(m, info)?;
        report.push(TableReport {
            table: info.spec.qualified(),
            d1_table: d1.name.clone(),
            d1_columns: d1.spec.columns.iter().map(|c| c.name.clone()).collect(),
            primary_key: d1.primary_key.clone(),
            cursor: m.cursor.clone(),
            vector: m.vector.clone(),
            vector_metadata: m.vector_metadata.clone(),
            vector_metadata_paths: m.vector_json.paths.clone(),
            vector_metadata_indexes: m.vector_metadata_indexes.clone(),
            json_keys: json_keys.to_vec(),
        });
        pairs.push(((*info).clone(), d1));
    }
    let sql = migration::migration_sql(&pairs)?;

    write(&config_path, &text)?;
    if let Some(dir) = migration_path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    write(&migration_path, &sql)?;

    if json {
        print_json(&serde_json::json!({
            "config": config_path, "migration": migration_path, "tables": report,
        }))?;
    } else {
        outln!("wrote {} ({} tables) and {}", config_path.display(), report.len(), migration_path.display());
        for t in &report {
            let vector = match &t.vector {
                Some(v) => format!(", vector {v} + metadata [{}]", t.vector_metadata.join(", ")),
                None => String::new(),
            };
            let cursor = t.cursor.as_deref().unwrap_or("none found");
            outln!(
                "  {} -> D1 {}: {} columns, cursor {cursor}{vector}",
                t.table,
                t.d1_table,
                t.d1_columns.len()
            );
        }
        outln!("next:");
        outln!("  1. review {} (columns, cursor, vector metadata)", config_path.display());
        outln!("  2. npx wrangler d1 migrations apply <DATABASE> --local   (then --remote)");
        outln!(
            "  3. pgflare load --target sqlite --no-create-tables --wrangler wrangler.jsonc --d1-binding DB"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        return Err(Error::Config {
            setting: path.display().to_string(),
            message: "already exists; pgflare init does not overwrite it (it may hold your edits): \
                      move it away or pass --force"
                .into(),
        }
        .into());
    }
    Ok(())
}

/// `DIR/NNNN_pgflare_initial.sql`: the existing pgflare file when there is
/// one (so --force replaces it), else numbered after the migrations already
/// in DIR, since wrangler applies them in number order.
fn migration_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut highest = 0u32;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((num, rest)) = name.split_once('_') else { continue };
            if rest == format!("{MIGRATION_NAME}.sql") {
                return Ok(e.path());
            }
            if let (Ok(n), true) = (num.parse::<u32>(), name.ends_with(".sql")) {
                highest = highest.max(n);
            }
        }
    }
    Ok(dir.join(format!("{:04}_{MIGRATION_NAME}.sql", highest + 1)))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(Error::io(path))?;
    Ok(())
}
