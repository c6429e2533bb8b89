//! `pgflare doctor`: checks, without writing anything anywhere, that a
//! migration can run with the settings given, and says what to do where it
//! cannot. Three areas, each a list of [`Check`]s:
//!
//! - [`settings`]: which pgflare.toml, wrangler file and environment were
//!   used, and where the account id, the D1 database id and the Vectorize
//!   index name came from (flag, environment, pgflare.toml, or which
//!   wrangler binding);
//! - [`postgres`]: the server and pgvector versions, a direct connection
//!   rather than a transaction pooler, privileges and row security on the
//!   configured tables, primary keys, and (for syncs by logical
//!   replication later) `wal_level` and replica identity;
//! - [`cloudflare`]: the token, the account, the D1 database and its size,
//!   the Vectorize index against pgflare.toml (dimensions, metric, metadata
//!   indexes), and the request budget the API reports.
//!
//! A check that cannot run because one it depends on failed is `skipped`
//! (a refused token says nothing about the D1 database). The verdict is
//! the worst status; `problem` means the migration would fail or lose
//! data as configured.

pub mod cloudflare;
mod index;
mod pooler;
pub mod postgres;
pub mod replication;
pub mod settings;

use serde::Serialize;

/// How a check came out, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Informational: nothing to do now (e.g. what a later sync by logical
    /// replication would need).
    Info,
    /// Works, but something deserves a look (and the check says what).
    Warning,
    /// Not checked: a check it depends on failed.
    Skipped,
    /// The migration would fail or lose data as configured.
    Problem,
}

/// Which side a check looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Settings,
    Postgres,
    Cloudflare,
}

/// One line of the checklist.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Stable name, e.g. `cloudflare.vectorize_index`.
    pub id: String,
    pub area: Area,
    pub status: Status,
    /// What was checked, for people.
    pub title: String,
    /// What was found.
    pub found: String,
    /// What to do (every problem and warning has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A check of this name; its outcome follows ([`CheckBuilder`]).
    pub fn named(id: &str, area: Area, title: impl Into<String>) -> CheckBuilder {
        CheckBuilder { id: id.to_string(), area, title: title.into() }
    }
}

/// A check's name and title, waiting for its outcome.
pub struct CheckBuilder {
    id: String,
    area: Area,
    title: String,
}

impl CheckBuilder {
    fn done(self, status: Status, found: impl Into<String>, fix: Option<String>) -> Check {
        Check { id: self.id, area: self.area, status, title: self.title, found: found.into(), fix }
    }

    pub fn ok(self, found: impl Into<String>) -> Check {
        self.done(Status::Ok, found, None)
    }

    pub fn info(self, found: impl Into<String>) -> Check {
        self.done(Status::Info, found, None)
    }

    pub fn warning(self, found: impl Into<String>, fix: impl Into<String>) -> Check {
        self.done(Status::Warning, found, Some(fix.into()))
    }

    pub fn problem(self, found: impl Into<String>, fix: impl Into<String>) -> Check {
        self.done(Status::Problem, found, Some(fix.into()))
    }

    pub fn skipped(self, why: impl Into<String>) -> Check {
        self.done(Status::Skipped, why, None)
    }
}

/// Counts by status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub info: usize,
    pub warning: usize,
    pub skipped: usize,
    pub problem: usize,
}

/// What `pgflare doctor --json` prints (schemas/doctor.schema.json).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `pgflare-doctor-v1`.
    pub format: &'static str,
    /// `problem` when any check found one, else `warning` when any did,
    /// else `ok` (a skipped check follows from a problem, or from a side
    /// left out on purpose).
    pub verdict: Status,
    pub counts: Counts,
    /// The settings as resolved (no secrets).
    pub resolved: settings::Resolved,
    pub checks: Vec<Check>,
}

pub const FORMAT: &str = "pgflare-doctor-v1";

impl Report {
    pub fn new(resolved: settings::Resolved, checks: Vec<Check>) -> Report {
        let mut counts = Counts::default();
        for c in &checks {
            *match c.status {
                Status::Ok => &mut counts.ok,
                Status::Info => &mut counts.info,
                Status::Warning => &mut counts.warning,
                Status::Skipped => &mut counts.skipped,
                Status::Problem => &mut counts.problem,
            } += 1;
        }
        let verdict = if counts.problem > 0 {
            Status::Problem
        } else if counts.warning > 0 {
            Status::Warning
        } else {
            Status::Ok
        };
        Report { format: FORMAT, verdict, counts, resolved, checks }
    }

    /// 0 without problems, 1 with.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.verdict == Status::Problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_the_worst_status_and_only_problems_fail() {
        let c = |s: Status| Check {
            id: "x".into(),
            area: Area::Postgres,
            status: s,
            title: "t".into(),
            found: "f".into(),
            fix: None,
        };
        let r = Report::new(Default::default(), vec![c(Status::Ok), c(Status::Info)]);
        assert_eq!((r.verdict, r.exit_code()), (Status::Ok, 0));
        let r = Report::new(Default::default(), vec![c(Status::Ok), c(Status::Warning)]);
        assert_eq!((r.verdict, r.exit_code()), (Status::Warning, 0));
        let r = Report::new(Default::default(), vec![c(Status::Warning), c(Status::Problem)]);
        assert_eq!((r.verdict, r.exit_code(), r.counts.problem), (Status::Problem, 1, 1));
    }
}
