//! `pgflare init`: the flags into the init job ([`crate::init::run`]), and
//! what it wrote for people or for `--json`.

use crate::output::outln;
use std::process::ExitCode;

use super::print_json;
use crate::cli::InitArgs;

pub async fn run(
    args: InitArgs,
    json: bool,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let (source, selection, _) = crate::plan::resolve::source_and_selection(&args.source, timeouts)?;
    let w = crate::init::run::run(&source, &selection, &args.out_config, &args.migrations_dir, args.force)
        .await?;
    if json {
        print_json(&serde_json::json!({
            "config": w.config, "migration": w.migration, "tables": w.tables, "queries": w.queries,
        }))?;
    } else {
        outln!("wrote {} ({} tables) and {}", w.config.display(), w.tables.len(), w.migration.display());
        for t in &w.tables {
            let vector = match &t.vector {
                Some(v) => format!(", vector {v} + metadata [{}]", t.vector_metadata.join(", ")),
                None => String::new(),
            };
            let flags: Vec<String> = t
                .vector_metadata_flags
                .iter()
                .map(|f| format!(", {} flags for {}", f.values.len(), f.column))
                .collect();
            let vector = format!("{vector}{}", flags.concat());
            let cursor = t.cursor.as_deref().unwrap_or("none found");
            outln!(
                "  {} -> D1 {}: {} columns, cursor {cursor}{vector}",
                t.table,
                t.d1_table,
                t.d1_columns.len()
            );
        }
        for q in &w.queries {
            let filters: Vec<String> = q
                .filters
                .iter()
                .map(|f| format!("{} {} via {}", f.column, f.op.as_str(), f.vectorize.as_str()))
                .collect();
            let filters = if filters.is_empty() { "no filter".to_string() } else { filters.join(", ") };
            outln!(
                "  query `{}`: top {} of {}, context [{}], {filters}",
                q.name,
                q.k,
                q.table,
                q.context.join(", ")
            );
        }
        outln!("next:");
        outln!(
            "  1. review {} (columns, cursor, vector metadata, the [[queries]] verify replays)",
            w.config.display()
        );
        outln!("  2. npx wrangler d1 migrations apply <DATABASE> --local   (then --remote)");
        outln!(
            "  3. pgflare load --target sqlite --no-create-tables --wrangler wrangler.jsonc --d1-binding DB"
        );
    }
    Ok(ExitCode::SUCCESS)
}
