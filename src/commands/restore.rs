//! `pgflare restore`: flags into a restore, the restore, and its summary
//! for people or for `--json`.

use std::process::ExitCode;

use super::print_json;
use crate::cli::RestoreArgs;
use crate::output::outln;
use crate::plan::targets::{self, D1Flags};
use crate::progress::Progress;
use crate::restore::{self, RestoreOptions};

pub async fn run(
    args: RestoreArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    // Where D1 is comes from flags, the environment, ./pgflare.toml's
    // [cloudflare] and wrangler, as for load; its table mappings play no
    // part: the D1 side is every archived column under its own name.
    let mut project = crate::config::file::load_project(None)?;
    crate::plan::cloudflare::resolve_cloudflare(&mut project, &args.cloudflare)?;
    let d1 = D1Flags {
        kind: args.target,
        out: args.out.as_deref(),
        sqlite: args.sqlite.as_deref(),
        rate_limit: args.rate_limit.as_deref(),
        file_bytes: 64 << 20,
        import_bytes: 32 << 20,
    };
    let opts = RestoreOptions {
        dir: args.archive.clone(),
        target: targets::d1_target(&d1, &project, &args.cloudflare, timeouts)?,
        only_tables: args.tables.clone(),
        create_tables: !args.no_create_tables,
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
