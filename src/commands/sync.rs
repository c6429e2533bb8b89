//! `pgflare sync`: settings into sync options, then one run (`--once`) or
//! a run every interval (`--every`), with signals turned into a clean
//! stop, and each run's summary for people, for `--json`, and in a file.

use crate::output::{errln, outln};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::print_json;
use crate::cli::{SyncArgs, SyncTarget, SyncVectors};
use crate::config;
use crate::plan::{Target, VectorTarget};
use crate::progress::Progress;
use crate::sync::{run_once, Outcome, SyncOptions, SyncSummary};

/// Exit code when another runner holds the lease or the source lock.
pub const EXIT_BUSY: u8 = 3;

pub async fn run(
    args: SyncArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let mut project = config::file::load_project(args.config.as_deref())?;
    if let Some(s) = &args.schema {
        project.schema = s.clone();
    }
    crate::plan::cloudflare::resolve_cloudflare(&mut project, &args.cloudflare)?;
    let source = crate::plan::resolve::source(args.database_url.as_deref(), &project, timeouts)?;
    let (read, split) = crate::plan::resolve::tuning(&args.tuning)?;
    let target = match args.target {
        SyncTarget::Sqlite => Target::Sqlite {
            path: super::load::sqlite_path(args.sqlite.as_ref(), &args.cloudflare, &project)?,
        },
        SyncTarget::Api => Target::Api {
            settings: super::api_settings(&project, args.rate_limit.as_deref(), timeouts)?,
            database_id: project.cloudflare.d1.as_ref().map(|d| d.database_id.clone()).context(
                "no D1 database: pass --d1-database-id, or --wrangler FILE [--env NAME] --d1-binding NAME",
            )?,
            import_bytes: 32 << 20,
            query_bytes: 1 << 20,
        },
        SyncTarget::Files => Target::Files {
            dir: args.out.clone().context("--out DIR is required with --target files")?,
            file_bytes: 64 << 20,
        },
    };
    let wants_vectors = project.tables.iter().any(|t| t.vector.is_some());
    let vectorize = match (args.vectorize, &project.cloudflare.vectorize_index) {
        (SyncVectors::Off, _) => VectorTarget::Off,
        (_, _) if !wants_vectors => VectorTarget::Off,
        // The run's own folder is chosen by the run (OUT/sync/NNNNNN/vectorize).
        (SyncVectors::Auto, _) if args.target == SyncTarget::Files => {
            VectorTarget::Files { dir: args.out.clone().unwrap_or_default().join("vectorize") }
        }
        (SyncVectors::Auto, None) => VectorTarget::Off,
        (SyncVectors::Api, None) => anyhow::bail!(
            "--vectorize api needs an index: pass --vectorize-index NAME or --wrangler FILE --vectorize-binding NAME"
        ),
        (_, Some(index)) => VectorTarget::Api {
            settings: super::api_settings(&project, args.rate_limit.as_deref(), timeouts)?,
            index: index.clone(),
        },
    };
    // `auto` without an index: sync refuses it while the checkpoint says
    // vectors follow the source (an explicit `off` is a choice).
    let vectors_unnamed =
        args.vectorize == SyncVectors::Auto && wants_vectors && matches!(vectorize, VectorTarget::Off);
    let every = args.every.as_deref().map(parse_duration).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    watch_signals(stop.clone(), wake.clone(), progress.clone())?;
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
        stop: stop.clone(),
    };
    loop {
        let outcome = run_once(&source, &opts, progress).await;
        match (outcome, every) {
            (Ok(Outcome::Done(s)), _) => report(&s, json, args.summary.as_deref())?,
            (Ok(Outcome::Busy(who)), None) => {
                errln!("pgflare sync: not running: {who}; exiting with code {EXIT_BUSY}");
                return Ok(ExitCode::from(EXIT_BUSY));
            }
            (Ok(Outcome::Busy(who)), Some(_)) => progress.println(&format!("skipping this run: {who}")),
            (Err(e), None) => return Err(e.into()),
            (Err(e), Some(_)) => {
                let text = crate::redact::redact_text(&format!("{e:#}"));
                errln!("pgflare sync: this run failed (the next one runs on schedule): {text}");
            }
        }
        let Some(every) = every else { break };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let pause = jittered(every, args.jitter);
        progress.println(&format!("next run in {:.0}s", pause.as_secs_f64()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM/SIGINT: finish the ranges being written, record them, exit 0.
/// A second signal ends the process at once (the checkpoint is safe).
fn watch_signals(
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    progress: Progress,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if stop.swap(true, Ordering::Relaxed) {
                errln!("pgflare sync: second signal, stopping now (the next run redoes unrecorded ranges)");
                std::process::exit(130);
            }
            progress.println("stopping: finishing the key ranges being written, then recording them");
            wake.notify_one();
        }
    });
    Ok(())
}

fn jittered(every: Duration, percent: u8) -> Duration {
    let share = f64::from(percent.min(100)) / 100.0;
    let r: f64 = rand::random::<f64>() * 2.0 - 1.0;
    every.mul_f64((1.0 + share * r).max(0.0))
}

/// `--every`: a duration of at least one second (`30s`, `5m`, `1h`, `90`).
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let d = crate::timeouts::parse_duration(text).map_err(|e| anyhow::anyhow!("--every {e}"))?;
    anyhow::ensure!(d >= Duration::from_secs(1), "--every {text}: at least one second");
    Ok(d)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("0s").is_err());
        let j = jittered(Duration::from_secs(100), 10);
        assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110), "{j:?}");
    }
}
