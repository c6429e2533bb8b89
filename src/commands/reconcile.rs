//! `pgflare reconcile --into postgres`: Cloudflare's side read into an
//! archive of Cloudflare (or one given), written back into Postgres, and
//! compared again: the exit code says whether Postgres now holds
//! Cloudflare's rows.

use crate::output::outln;
use std::process::ExitCode;

use anyhow::Context;

use super::archive_cloudflare::{where_cloudflare_is, CloudflareAt, TempDir};
use super::{print_json, EXIT_DIFFERENCES};
use crate::archive::cloudflare::tables::Definitions;
use crate::archive::cloudflare::{self, CloudflareOptions};
use crate::archive::ParquetConfig;
use crate::cli::ReconcileArgs;
use crate::plan::targets::{self, Opening, OpeningFlags};
use crate::progress::Progress;
use crate::reconcile::{self, ReconcileOptions, ReconcileSummary};

pub async fn run(
    args: ReconcileArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let opening = targets::open(OpeningFlags::of(&args.project, &args.cloudflare, &args.tuning), timeouts)?;
    // This run's own folder (the D1 copy, the vector spool, and the
    // archive unless --keep names one) goes when this ends.
    let temp = TempDir(std::env::temp_dir().join(format!("pgflare-reconcile-{}", std::process::id())));
    let archive = match &args.from_archive {
        Some(dir) => dir.clone(),
        None => read_cloudflare(&args, &opening, &temp, json, progress, timeouts).await?,
    };
    let Opening { project, source, read, split } = opening;
    let mut opts = ReconcileOptions {
        archive,
        project,
        only_tables: args.project.tables.clone(),
        dry_run: args.dry_run,
        disable_triggers: args.disable_triggers,
        read,
        split,
    };
    let summary = reconcile::run(&source, &opts, progress).await?;
    // What was written is compared again, at a new snapshot.
    let check = match summary.written {
        true => {
            opts.dry_run = true;
            Some(reconcile::run(&source, &opts, progress).await.context("comparing again after writing")?)
        }
        false => None,
    };
    let remaining = match (&check, args.dry_run) {
        (Some(c), _) => c.differences(),
        (None, true) => 0,
        (None, false) => summary.differences(),
    };
    if json {
        print_json(&serde_json::json!({
            "format": reconcile::FORMAT,
            "reconcile": summary,
            "check": check,
            "remaining": remaining
        }))?;
    } else {
        print_human(&summary, check.as_ref());
    }
    Ok(match remaining {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_DIFFERENCES),
    })
}

/// Reads D1 and Vectorize into an archive of Cloudflare (in `--keep DIR`,
/// or this run's temporary folder); returns its folder.
async fn read_cloudflare(
    args: &ReconcileArgs,
    opening: &Opening,
    temp: &TempDir,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<std::path::PathBuf> {
    let at = CloudflareAt {
        sqlite: args.sqlite.as_deref(),
        no_vectorize: args.no_vectorize,
        rate_limit: args.rate_limit.as_deref(),
    };
    if let Some(dir) = &args.keep {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            anyhow::bail!(
                "--keep {}: the folder is not empty; name an empty or new folder, or pass it to \
                 --from-archive to write back the archive of Cloudflare already in it",
                dir.display()
            );
        }
    }
    let (project, source) = (&opening.project, &opening.source);
    let (d1, vectorize) = where_cloudflare_is(&at, project, progress, timeouts)?;
    let dir = args.keep.clone().unwrap_or_else(|| temp.0.join("cloudflare"));
    let opts = CloudflareOptions {
        project: project.clone(),
        only_tables: args.project.tables.clone(),
        definitions: Definitions::Live(source.clone()),
        d1,
        vectorize,
        work_dir: temp.0.join("work"),
        parquet: ParquetConfig {
            dir: dir.clone(),
            file_bytes: 256 << 20,
            row_group_bytes: 32 << 20,
            zstd_level: 1,
        },
        overwrite: false,
        batch_rows: opening.read.batch_rows,
    };
    let (_, read) =
        cloudflare::run(&opts, progress).await.context("reading Cloudflare's side into an archive")?;
    // The archive's own summary names its folder: only worth printing
    // when the folder stays.
    if !json && args.keep.is_some() {
        super::archive_cloudflare::print_human(&read);
    }
    Ok(dir)
}

fn print_human(s: &ReconcileSummary, check: Option<&ReconcileSummary>) {
    outln!("from {} (read {})", s.cloudflare, s.read_at);
    for t in &s.tables {
        let cols: Vec<String> = t.columns_updated.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let cols = if cols.is_empty() { String::new() } else { format!(" ({})", cols.join(", ")) };
        outln!(
            "  {:24} {:>7} inserts {:>7} updates{cols} {:>7} deletes",
            t.table,
            t.inserts,
            t.updates,
            t.deletes
        );
        for (kind, keys) in &t.first_keys {
            outln!("    first {kind}s: {}", keys.join("; "));
        }
        if !t.columns_kept.is_empty() && t.inserts + t.updates > 0 {
            outln!("    not on Cloudflare, left as they are: {}", t.columns_kept.join(", "));
        }
    }
    for n in &s.notes {
        outln!("note: {n}");
    }
    let n = s.differences();
    match (s.dry_run, s.written, check) {
        (true, _, _) if n == 0 => outln!("Postgres already holds Cloudflare's rows: nothing to write"),
        (true, _, _) => outln!("dry run: {n} rows would be written; nothing was written"),
        (false, false, _) => outln!("Postgres already holds Cloudflare's rows: nothing written"),
        (false, true, Some(c)) if c.differences() == 0 => {
            outln!("wrote {n} rows in {:.1}s; compared again: Postgres holds Cloudflare's rows", s.seconds)
        }
        (false, true, Some(c)) => outln!(
            "wrote {n} rows, but {} rows still differ (a trigger, or writes to Postgres meanwhile?): run with \
             --dry-run to see them",
            c.differences()
        ),
        (false, true, None) => outln!("wrote {n} rows"),
    }
}
