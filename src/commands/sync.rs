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
use crate::sync::follow::{parse_size, FollowOptions, FollowStatus, Followed};
use crate::sync::schedule::{self, Ended, Schedule};
use crate::sync::{SyncOptions, SyncSummary};
use crate::timeouts::parse_duration;

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
    if args.drop_slot {
        let dropped = crate::sync::follow::drop_slot(&source, &args.slot).await?;
        if json {
            print_json(&serde_json::json!({ "format": "pgflare-drop-slot-v1", "dropped": dropped }))?;
        } else if dropped.is_empty() {
            outln!("pgflare sync --drop-slot: no replication slot or publication named {}", args.slot);
        } else {
            outln!("pgflare sync --drop-slot: dropped {}", dropped.join(" and "));
        }
        return Ok(ExitCode::SUCCESS);
    }
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
    if args.follow {
        return follow(&source, &opts, &args, json, progress).await;
    }
    let report = |s: &SyncSummary| report(s, json, args.summary.as_deref());
    match schedule::run_scheduled(&source, &opts, schedule, &signals, progress, report).await? {
        Ended::Stopped => Ok(ExitCode::SUCCESS),
        Ended::Busy(who) => {
            errln!("pgflare sync: not running: {who}; exiting with code {EXIT_BUSY}");
            Ok(ExitCode::from(EXIT_BUSY))
        }
    }
}

async fn follow(
    source: &crate::source::Source,
    opts: &SyncOptions,
    args: &SyncArgs,
    json: bool,
    progress: &Progress,
) -> anyhow::Result<ExitCode> {
    let setting = |flag: &str, message: String| crate::error::Error::Config { setting: flag.into(), message };
    let fo = FollowOptions {
        slot: args.slot.clone(),
        max_retained_wal: parse_size(&args.max_retained_wal).map_err(|m| setting("--max-retained-wal", m))?,
        status_every: parse_duration(&args.status_every).map_err(|m| setting("--status-every", m))?,
        max_delay: Duration::from_millis(500),
        stop_after: args
            .follow_for
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|m| setting("--follow-for", m))?,
    };
    let mut status = |s: &FollowStatus| {
        if json {
            if let Ok(line) = serde_json::to_string(s) {
                outln!("{line}");
            }
        }
    };
    match crate::sync::follow::follow(source, opts, &fo, progress, &mut status).await? {
        Followed::Busy(who) => {
            errln!("pgflare sync --follow: not running: {who}; exiting with code {EXIT_BUSY}");
            Ok(ExitCode::from(EXIT_BUSY))
        }
        Followed::Stopped(s) => {
            if let Some(f) = args.summary.as_deref() {
                std::fs::write(f, serde_json::to_vec_pretty(&s)?)
                    .with_context(|| format!("writing {}", f.display()))?;
            }
            if json {
                outln!("{}", serde_json::to_string(&s)?);
            } else {
                if let Some(h) = &s.handover {
                    outln!(
                        "hand-over: one polling run upserted {} rows and deleted {}",
                        h.rows_upserted,
                        h.rows_deleted
                    );
                }
                let a = &s.applied;
                outln!(
                    "sync --follow stopped: {} transactions applied in {} flushes ({} rows upserted, {} deleted \
                     (also soft deletes), {} Cloudflare requests); the targets hold everything up to {} (slot {}); \
                     lag p50 {:.2}s, p95 {:.2}s, max {:.2}s",
                    s.transactions,
                    s.flushes,
                    a.rows_upserted,
                    a.rows_deleted,
                    s.requests,
                    s.to_lsn,
                    s.slot,
                    s.lag.p50_seconds,
                    s.lag.p95_seconds,
                    s.lag.max_seconds
                );
            }
            Ok(ExitCode::SUCCESS)
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
