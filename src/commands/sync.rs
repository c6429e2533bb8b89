//! `pgflare sync`: flags into sync options and a schedule, the runs
//! ([`crate::sync::schedule`]), and each run's summary for people, for
//! `--json`, and in a file.

use crate::output::{errln, outln};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::print_json;
use crate::cli::SyncArgs;
use crate::plan::targets::{self, D1Flags, Opening, OpeningFlags};
use crate::progress::Progress;
use crate::sync::schedule::{self, Ended, Schedule};
use crate::sync::{SyncOptions, SyncSummary};

/// Exit code when another runner holds the lease or the source lock.
pub const EXIT_BUSY: u8 = 3;

pub async fn run(
    args: SyncArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let Opening { project, source, read, split } = targets::open(
        OpeningFlags {
            config: args.config.as_deref(),
            schema: args.schema.as_deref(),
            database_url: args.database_url.as_deref(),
            cloudflare: &args.cloudflare,
            tuning: &args.tuning,
        },
        timeouts,
    )?;
    let d1 = D1Flags::of(args.d1.target, &args.d1.place, args.rate_limit.as_deref(), 64 << 20, 32 << 20);
    let target = targets::d1_target(&d1, &project, &args.cloudflare, timeouts)?;
    let (vectorize, vectors_unnamed) = targets::sync_vectors(
        args.vectorize,
        args.d1.target,
        args.d1.place.out.as_deref(),
        args.rate_limit.as_deref(),
        &project,
        timeouts,
    )?;
    let schedule = Schedule::parse(args.every.as_deref(), args.jitter)?;
    let signals = schedule::watch_signals(progress)?;
    let opts = SyncOptions {
        project,
        target,
        vectorize,
        vectors_unnamed,
        read,
        split,
        work_dir: args.work_dir.clone(),
        hard_deletes: !args.no_hard_deletes,
        lease_ttl: Duration::from_secs(args.lease_seconds.max(30)),
        stop: signals.stop.clone(),
    };
    let report = |s: &SyncSummary| report(s, json, args.summary.as_deref());
    match schedule::run_scheduled(&source, &opts, schedule, &signals, progress, report).await? {
        Ended::Stopped => Ok(ExitCode::SUCCESS),
        Ended::Busy(who) => {
            errln!("pgflare sync: not running: {who}; exiting with code {EXIT_BUSY}");
            Ok(ExitCode::from(EXIT_BUSY))
        }
    }
}

fn report(s: &SyncSummary, json: bool, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(f) = file {
        std::fs::write(f, serde_json::to_vec_pretty(s)?)
            .with_context(|| format!("writing {}", f.display()))?;
    }
    if json {
        return print_json(s);
    }
    for t in &s.tables {
        let mut line = format!(
            "{:24} -> {:20} {:>7} upserted  {:>6} soft-deleted  {:>6} deleted",
            t.table, t.d1_table, t.rows_upserted, t.rows_soft_deleted, t.rows_hard_deleted
        );
        if t.rows_hidden_by_deleted_parent > 0 {
            line.push_str(&format!("  {} below a soft-deleted parent", t.rows_hidden_by_deleted_parent));
        }
        if let Some(v) = &t.vectors {
            line.push_str(&format!(
                "  vectors: {} sent, {} unchanged, {} deleted",
                v.sent, v.unchanged, v.deleted
            ));
            if v.skipped > 0 {
                line.push_str(&format!(", {} skipped (Vectorize would refuse them)", v.skipped));
            }
        }
        outln!("{line}");
        for r in &t.skipped_vectors {
            outln!("{:26}skipped {}: {}", "", r.key, r.describe());
        }
        if let Some(sw) = t.sweep.as_ref().filter(|sw| sw.missing_in_d1 > 0) {
            outln!(
                "{:26}note: {} source rows are missing in D1 and were not written by a sync; run `pgflare verify`",
                "", sw.missing_in_d1
            );
        }
    }
    let state = if s.complete { "" } else { " (stopped early: the next run continues)" };
    outln!(
        "sync run {}{state}: {} rows upserted, {} deleted in {:.1}s; targets now at the source's snapshot of {} (lag {:.1}s)",
        s.run, s.rows_upserted, s.rows_deleted, s.seconds, s.to_snapshot_taken_at, s.lag_seconds
    );
    Ok(())
}
