//! `pgflare restore`: flags into a restore, the restore, and its summary
//! for people or for `--json`.

use std::process::ExitCode;

use super::print_json;
use crate::cli::{PostgresTargetArgs, RestoreArgs};
use crate::output::outln;
use crate::plan::targets::{self, D1Flags, LoadVectorFlags};
use crate::progress::Progress;
use crate::restore::{self, PgRestore, RestoreOptions, RestoreTo};

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
    let to = match args.target.d1() {
        Some(kind) => {
            let d1 = D1Flags::of(kind, &args.d1, args.rate_limit.as_deref(), 64 << 20, 32 << 20);
            let vectors =
                LoadVectorFlags::of(&args.vectors, kind, &args.d1, args.rate_limit.as_deref(), &args.tables);
            RestoreTo::D1 {
                target: targets::d1_target(&d1, &project, &args.cloudflare, timeouts)?,
                vectorize: targets::load_vectors(&vectors, &project, timeouts)?,
                create_tables: !args.no_create_tables,
            }
        }
        None => RestoreTo::Postgres(postgres_target(&args.postgres, timeouts)?),
    };
    let opts = RestoreOptions { dir: args.archive.clone(), only_tables: args.tables.clone(), to, project };
    let summary = restore::run(&opts, progress).await?;
    if json {
        print_json(&summary)?;
    } else {
        for t in &summary.tables {
            let left = match t.not_live {
                0 => String::new(),
                n => format!(" ({n} not live left out: soft-deleted, or below a soft-deleted parent)"),
            };
            outln!(
                "{:24} -> {:20} {:>10} rows from {} files{left}",
                t.table,
                t.target_table,
                t.rows,
                t.files
            );
        }
        if summary.files_already_copied > 0 {
            outln!("{} files were already copied by an interrupted run", summary.files_already_copied);
        }
        for l in &summary.left_out {
            outln!("left out: {}\n  because {}", l.statement, l.reason);
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

/// The Postgres target: `--target-url` (or $PGFLARE_TARGET_URL).
fn postgres_target(
    args: &PostgresTargetArgs,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<PgRestore> {
    let url =
        args.target_url.as_deref().filter(|u| !u.is_empty()).ok_or_else(|| crate::error::Error::Config {
            setting: "--target-url".into(),
            message: "--target postgres needs the database to restore into: --target-url \
                  postgres://USER:PASSWORD@HOST:PORT/DB (or $PGFLARE_TARGET_URL), e.g. a new database made \
                  with createdb"
                .into(),
        })?;
    Ok(PgRestore {
        target: crate::source::Source::parse_from(url, "--target-url")?.with_timeouts(timeouts),
        into_existing: args.into_existing,
        jobs: args.jobs.max(1),
        vector_indexes: !args.no_vector_indexes,
    })
}
