//! Sync as a service: one run (`--once`) or a run every interval
//! (`--every`, each start moved by up to ±`--jitter` so that many runners
//! do not fire together), with SIGTERM/SIGINT turned into a clean stop: the
//! ranges being written finish and are recorded, then the process ends. A
//! scheduled run that fails is reported and the next one runs on time; a
//! single run's failure is the command's. The command only prints what
//! each run did ([`run_scheduled`]'s `report`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::run::{run_once, Outcome, SyncOptions};
use super::summary::SyncSummary;
use crate::error::{Error, Result};
use crate::output::errln;
use crate::progress::Progress;
use crate::source::Source;

/// When runs start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// `None`: one run.
    pub every: Option<Duration>,
    /// Random share of `every`, in percent, by which each start moves.
    pub jitter: u8,
}

impl Schedule {
    /// `--every` (a duration of at least one second: `30s`, `5m`, `1h`,
    /// `90`) and `--jitter`.
    pub fn parse(every: Option<&str>, jitter: u8) -> Result<Schedule> {
        let bad = |message: String| Error::Config { setting: "--every".into(), message };
        let every = match every {
            None => None,
            Some(text) => {
                let d = crate::timeouts::parse_duration(text).map_err(bad)?;
                if d < Duration::from_secs(1) {
                    return Err(bad(format!("{text}: at least one second")));
                }
                Some(d)
            }
        };
        Ok(Schedule { every, jitter })
    }

    /// The pause before the next start.
    fn pause(&self, every: Duration) -> Duration {
        let share = f64::from(self.jitter.min(100)) / 100.0;
        let r: f64 = rand::random::<f64>() * 2.0 - 1.0;
        every.mul_f64((1.0 + share * r).max(0.0))
    }
}

/// The stop flag a run watches and the bell that ends a pause, both rung
/// by SIGTERM/SIGINT. A second signal ends the process at once (the
/// checkpoint is safe: the next run redoes unrecorded ranges).
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

/// Starts listening for SIGTERM and SIGINT.
pub fn watch_signals(progress: &Progress) -> Result<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen =
        |kind, name: &str| signal(kind).map_err(|e| Error::Internal(format!("cannot watch {name}: {e}")));
    let mut term = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut int = listen(SignalKind::interrupt(), "SIGINT")?;
    let (stop, wake) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
    let (s, w, progress) = (stop.clone(), wake.clone(), progress.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if s.swap(true, Ordering::Relaxed) {
                errln!("pgflare sync: second signal, stopping now (the next run redoes unrecorded ranges)");
                std::process::exit(130);
            }
            progress.println("stopping: finishing the key ranges being written, then recording them");
            w.notify_one();
        }
    });
    Ok(Signals { stop, wake })
}

/// How the runs ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The one run finished, or a signal stopped the schedule.
    Stopped,
    /// The one run found another runner (who, and since when).
    Busy(String),
}

/// Runs sync on `schedule` until a signal stops it (or once), handing
/// each finished run's summary to `report`.
pub async fn run_scheduled<E: From<Error>>(
    source: &Source,
    opts: &SyncOptions,
    schedule: Schedule,
    signals: &Signals,
    progress: &Progress,
    mut report: impl FnMut(&SyncSummary) -> std::result::Result<(), E>,
) -> std::result::Result<Ended, E> {
    loop {
        let outcome = run_once(source, opts, progress).await;
        match (outcome, schedule.every) {
            (Ok(Outcome::Done(s)), _) => report(&s)?,
            (Ok(Outcome::Busy(who)), None) => return Ok(Ended::Busy(who)),
            (Ok(Outcome::Busy(who)), Some(_)) => progress.println(&format!("skipping this run: {who}")),
            (Err(e), None) => return Err(e.into()),
            (Err(e), Some(_)) => {
                let text = crate::redact::redact_text(&e.to_string());
                errln!("pgflare sync: this run failed (the next one runs on schedule): {text}");
            }
        }
        let Some(every) = schedule.every else { return Ok(Ended::Stopped) };
        if signals.stop.load(Ordering::Relaxed) {
            return Ok(Ended::Stopped);
        }
        let pause = schedule.pause(every);
        progress.println(&format!("next run in {:.0}s", pause.as_secs_f64()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = signals.wake.notified() => {}
        }
        if signals.stop.load(Ordering::Relaxed) {
            return Ok(Ended::Stopped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        let every = |t: &str| Schedule::parse(Some(t), 10).ok().and_then(|s| s.every);
        assert_eq!(every("5m"), Some(Duration::from_secs(300)));
        assert_eq!(every("30s"), Some(Duration::from_secs(30)));
        assert_eq!(every("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(every("90"), Some(Duration::from_secs(90)));
        assert!(Schedule::parse(Some("5 minutes"), 10).is_err());
        assert!(Schedule::parse(Some("0s"), 10).is_err());
        let s = Schedule { every: None, jitter: 10 };
        let j = s.pause(Duration::from_secs(100));
        assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110), "{j:?}");
    }
}
