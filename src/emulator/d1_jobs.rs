//! D1's imports and exports as the real service runs them: asynchronous
//! jobs under a bookmark, one at a time per database, that hold the
//! database while they run. What each answer looks like is built in
//! [`super::d1_import`]; this module keeps the state.
//!
//! What the real service does, and where it is known from:
//!
//! - A job answers `status: "active"` to polls until it ends (workers-sdk
//!   `packages/wrangler/src/d1/execute.ts` `pollUntilComplete` and
//!   `export.ts` `pollExport` poll again on any other status); the emulator
//!   answers `active` to [`TransferOptions::polls`] answers at least, even
//!   for a file that took no time, so clients meet the polling path.
//! - While a job runs the database serves nothing else (wrangler warns
//!   "your D1 database will be unavailable to serve queries"; the API
//!   reference for import says "Imports block the D1 for their duration",
//!   for export "during which your D1 will be unavailable to serve
//!   queries").
//! - An export "must be continually polled or will automatically cancel"
//!   (API reference, Export D1 Database As Sql; imports observed cancelled
//!   with "Cancelled due to no poll() received"): a job not polled for
//!   [`TransferOptions::poll_timeout`] is dropped and frees the database.
//! - Once a job's end has been answered, its bookmark is no longer known
//!   (observed: a poll after the end answers "Not currently importing
//!   anything.", the same for a finished and a failed import).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the emulated imports and exports behave (`pgflare emulate`
/// `--transfer-polls`, `--transfer-failure`, `--transfer-poll-timeout`).
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Answers of `status: "active"` a job gives before its end.
    pub polls: u32,
    /// How a failed job reports its failure.
    pub failure: FailureForm,
    /// A job not polled for this long is dropped (the database is free again).
    pub poll_timeout: Duration,
}

impl Default for TransferOptions {
    /// Two active answers: every client meets the polling path at least twice.
    fn default() -> Self {
        TransferOptions { polls: 2, failure: FailureForm::Wrangler, poll_timeout: Duration::from_secs(60) }
    }
}

/// The shapes a failed import or export may take. Which one the real
/// service sends for which failure is not documented, so the emulator can
/// send each and the client must read them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailureForm {
    /// What wrangler reads (workers-sdk `packages/wrangler/src/d1/types.ts`):
    /// `status: "error"` with `errors: [string]` for an import, with
    /// `error: string` for an export.
    Wrangler,
    /// What the OpenAPI schema describes (cloudflare-python
    /// `types/d1/database_import_response.py`, `database_export_response.py`):
    /// `status: "error"` with `error: string` for both.
    Schema,
    /// wrangler's `PollingFailure`: `result.success === false` with `error`.
    Refusal,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Import,
    Export,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Import => "import",
            Kind::Export => "export",
        }
    }

    /// What D1 answers any other request while a job of this kind runs
    /// (observed wording: "D1_ERROR: Currently processing a long-running
    /// import." through the Worker binding; the REST API answers HTTP 400
    /// with code 7500 and "Currently processing a long-running export.").
    pub fn busy(self) -> String {
        format!("Currently processing a long-running {}.", self.name())
    }

    /// What a poll with a bookmark D1 does not know (or no longer) gets
    /// (observed for imports; the export wording is assumed alike).
    pub fn nothing(self) -> &'static str {
        match self {
            Kind::Import => "Not currently importing anything.",
            Kind::Export => "Not currently exporting anything.",
        }
    }
}

/// How a job ended.
#[derive(Clone, Debug)]
pub enum Ended {
    /// The `result` of the final answer.
    Complete(Value),
    Failed(String),
}

struct Job {
    kind: Kind,
    db: String,
    ended: Option<Ended>,
    active_left: u32,
    seen: Instant,
}

/// What a poll finds.
pub enum Seen {
    Unknown,
    Active,
    Ended(Ended),
}

pub struct Jobs {
    opts: TransferOptions,
    jobs: Mutex<HashMap<String, Job>>,
}

impl Jobs {
    pub fn new(opts: TransferOptions) -> Jobs {
        Jobs { opts, jobs: Mutex::default() }
    }

    pub fn options(&self) -> &TransferOptions {
        &self.opts
    }

    /// The jobs still alive: those not polled for the poll timeout are dropped.
    fn live(&self) -> MutexGuard<'_, HashMap<String, Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let timeout = self.opts.poll_timeout;
        jobs.retain(|_, j| j.seen.elapsed() < timeout);
        jobs
    }

    /// The kind of job holding database `db`, if one does.
    pub fn busy(&self, db: &str) -> Option<Kind> {
        self.live().values().find(|j| j.db == db).map(|j| j.kind)
    }

    /// Starts a job on `db` under `bookmark`; when another job holds the
    /// database, says which kind it is instead.
    pub fn start(&self, db: &str, kind: Kind, bookmark: &str) -> Result<(), Kind> {
        let mut jobs = self.live();
        if let Some(j) = jobs.values().find(|j| j.db == db) {
            return Err(j.kind);
        }
        let job =
            Job { kind, db: db.to_string(), ended: None, active_left: self.opts.polls, seen: Instant::now() };
        jobs.insert(bookmark.to_string(), job);
        Ok(())
    }

    /// Records how the job under `bookmark` ended (a dropped job stays dropped).
    pub fn end(&self, bookmark: &str, ended: Ended) {
        if let Some(j) = self.live().get_mut(bookmark) {
            j.ended = Some(ended);
        }
    }

    /// A poll of the `kind` job under `bookmark`. Its end is answered
    /// once; the bookmark is forgotten then, and the database free.
    pub fn poll(&self, bookmark: &str, kind: Kind) -> Seen {
        let mut jobs = self.live();
        let Some(job) = jobs.get_mut(bookmark).filter(|j| j.kind == kind) else {
            return Seen::Unknown;
        };
        job.seen = Instant::now();
        if job.active_left > 0 || job.ended.is_none() {
            job.active_left = job.active_left.saturating_sub(1);
            return Seen::Active;
        }
        match jobs.remove(bookmark).and_then(|j| j.ended) {
            Some(e) => Seen::Ended(e),
            None => Seen::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_active_for_the_set_polls_then_ends_once_and_frees_the_database() {
        let jobs = Jobs::new(TransferOptions { polls: 2, ..TransferOptions::default() });
        jobs.start("db", Kind::Import, "b1").expect("free");
        assert_eq!(jobs.start("db", Kind::Export, "b2"), Err(Kind::Import));
        jobs.end("b1", Ended::Failed("boom".into()));
        assert!(matches!(jobs.poll("b1", Kind::Export), Seen::Unknown), "a bookmark belongs to one kind");
        assert!(matches!(jobs.poll("b1", Kind::Import), Seen::Active));
        assert!(matches!(jobs.poll("b1", Kind::Import), Seen::Active));
        assert_eq!(jobs.busy("db"), Some(Kind::Import));
        assert!(matches!(jobs.poll("b1", Kind::Import), Seen::Ended(Ended::Failed(m)) if m == "boom"));
        assert!(matches!(jobs.poll("b1", Kind::Import), Seen::Unknown), "the end is answered once");
        assert_eq!(jobs.busy("db"), None);
    }

    #[test]
    fn a_job_not_polled_in_time_is_dropped() {
        let jobs =
            Jobs::new(TransferOptions { poll_timeout: Duration::from_millis(20), ..Default::default() });
        jobs.start("db", Kind::Export, "b").expect("free");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(jobs.busy("db"), None);
        assert!(matches!(jobs.poll("b", Kind::Export), Seen::Unknown));
    }
}
