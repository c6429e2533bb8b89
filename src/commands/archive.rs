//! `pgflare archive` (from Postgres, or from Cloudflare) and `pgflare
//! archive verify`.

use crate::output::outln;
use std::process::ExitCode;

use anyhow::Context;

use super::{human_bytes, print_json, EXIT_DIFFERENCES};
use crate::archive::{self, verify, ArchiveOptions, ParquetConfig};
use crate::cli::{ArchiveArgs, ArchiveFrom, VerifyArgs};
use crate::config;
use crate::progress::Progress;

pub async fn export(
    args: ArchiveArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    if args.from == ArchiveFrom::Cloudflare {
        return super::archive_cloudflare::run(args, json, progress, timeouts).await;
    }
    if let Some(flag) = super::archive_cloudflare::cloudflare_only(&args) {
        anyhow::bail!("{flag} reads Cloudflare: add --from cloudflare (or leave it out to archive Postgres)");
    }
    let (source, selection, _) = crate::plan::resolve::source_and_selection(&args.source, timeouts)?;
    let (read, split) = crate::plan::resolve::tuning(&args.tuning)?;
    let dir = args.out.context("--out is required: the folder to write the archive to")?;
    let opts = ArchiveOptions {
        selection,
        read,
        split,
        parquet: ParquetConfig {
            dir,
            file_bytes: args.file_size_mib.max(1) << 20,
            row_group_bytes: args.row_group_mib.max(1) << 20,
            zstd_level: args.zstd_level,
        },
        overwrite: args.overwrite,
    };
    let (_, summary) = archive::export(&source, &opts, progress).await?;
    if json {
        print_json(&summary)?;
    } else {
        for t in &summary.tables {
            outln!(
                "{:24} {:>10} rows  {:>4} files  {:>10}  ({} partitions)",
                t.table,
                t.rows,
                t.files,
                human_bytes(t.bytes),
                t.partitions
            );
        }
        let rate = summary.rows as f64 / summary.seconds.max(1e-9);
        outln!(
            "archived {} rows ({}) to {} in {:.1}s ({:.0} rows/s) at snapshot {}",
            summary.rows,
            human_bytes(summary.bytes),
            summary.out,
            summary.seconds,
            rate,
            summary.snapshot
        );
        outln!("check it any time with: pgflare archive verify {}", summary.out);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(
    args: VerifyArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let (read, _) = crate::plan::resolve::tuning(&args.tuning)?;
    let source = if args.against_source || args.database_url.is_some() {
        let project = config::file::load_project_with(args.config.as_deref(), &|_| None)?;
        Some(crate::plan::resolve::source(args.database_url.as_deref(), &project, timeouts)?)
    } else {
        None
    };
    let report = verify::verify(&args.dir, source.as_ref(), read, progress).await?;
    if json {
        print_json(&report)?;
    } else {
        for p in &report.problems {
            let at = match (&p.file, p.row) {
                (Some(f), Some(r)) => format!("{f} row {r}: "),
                (Some(f), None) => format!("{f}: "),
                _ => String::new(),
            };
            outln!("{} [{}] {at}{}", p.table, p.kind, p.message);
        }
        if report.unlisted_problems > 0 {
            outln!("... and {} more differences not listed", report.unlisted_problems);
        }
        for n in &report.notes {
            outln!("note: {n}");
        }
        let against = if report.source_checked { " and the source" } else { "" };
        if report.ok() {
            outln!(
                "OK: {} tables, {} files, {} rows match the manifest{against}",
                report.tables_checked,
                report.files_checked,
                report.rows_checked
            );
        } else {
            outln!(
                "FAILED: {} problems in {} ({} files, {} rows checked against the manifest{against})",
                report.problems.len() as u64 + report.unlisted_problems,
                report.archive,
                report.files_checked,
                report.rows_checked
            );
        }
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_DIFFERENCES) })
}
