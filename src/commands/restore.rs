//! `pgflare restore`: flags into a restore, the restore, and its summary
//! for people or for `--json`.

use std::process::ExitCode;

use super::print_json;
use crate::cli::RestoreArgs;
use crate::output::outln;
use crate::plan::targets::{self, D1Flags, LoadVectorFlags};
use crate::progress::Progress;
use crate::restore::{self, RestoreOptions};

pub async fn run(
    args: RestoreArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    // As for load: flags over the environment over pgflare.toml over wrangler.
    let mut project = crate::config::file::load_project(args.config.as_deref())?;
    crate::plan::cloudflare::resolve_cloudflare(&mut project, &args.cloudflare)?;
    if args.vectors.create_index {
        project.vectorize.create_index = true;
    }
    let d1 = D1Flags::of(&args.d1, args.rate_limit.as_deref(), 64 << 20, 32 << 20);
    let vectors = LoadVectorFlags::of(&args.vectors, &args.d1, args.rate_limit.as_deref(), &args.tables);
    let opts = RestoreOptions {
        dir: args.archive.clone(),
        target: targets::d1_target(&d1, &project, &args.cloudflare, timeouts)?,
        vectorize: targets::load_vectors(&vectors, &project, timeouts)?,
        only_tables: args.tables.clone(),
        create_tables: !args.no_create_tables,
        project,
    };
    let summary = restore::run(&opts, progress).await?;
    if json {
        print_json(&summary)?;
    } else {
        for t in &summary.tables {
            outln!("{:24} -> {:20} {:>10} rows from {} files", t.table, t.d1_table, t.rows, t.files);
        }
        outln!(
            "restored {} rows into {} in {:.1}s (the archive of the source's snapshot at {})",
            summary.rows,
            summary.target,
            summary.seconds,
            summary.snapshot_taken_at
        );
    }
    Ok(ExitCode::SUCCESS)
}
