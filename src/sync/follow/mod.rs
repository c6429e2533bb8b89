//! `pgflare sync --follow`: the targets kept seconds behind the source by
//! reading its write-ahead log through a replication slot (`pgoutput`),
//! instead of scanning the tables for changes as a polling run does. In
//! order:
//!
//! 1. take the runner's lease and the source lock, as a polling run does
//!    ([`super::run::hold`]): one follower (or runner) per target;
//! 2. check the source can be followed ([`crate::source::wal::slot::check_ready`]),
//!    set the publication's tables, and find where to start: the slot and
//!    position the checkpoint holds, or (first start, a load since, a slot
//!    that was dropped or advanced by someone else) a new slot followed by
//!    one polling run, whose snapshot is later than the slot's start, so
//!    that the two overlap and nothing falls between ([`handover`]);
//! 3. stream: changes are merged per key transaction by transaction
//!    ([`changes`]) and applied when the stream goes quiet, half a second
//!    after the first unapplied commit, or past a size ([`apply`]); then the
//!    checkpoint in D1 takes the last applied commit's LSN and only then is
//!    that LSN reported to Postgres as flushed, so a kill at any point loses
//!    nothing and repeats only upserts and deletes, which are idempotent;
//! 4. TRUNCATE and a table whose shape changed stop the stream with a
//!    message, after applying every transaction before them.

pub mod apply;
pub mod changes;
mod handover;
pub mod lag;
mod stream;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::plan::Target;
use crate::progress::Progress;
use crate::source::Source;

pub use lag::{FollowStatus, FollowSummary};

use super::run::{hold, Holding, SyncOptions};

/// `--follow`'s settings.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// The slot's name, also the publication's.
    pub slot: String,
    /// Warn when the slot keeps more WAL than this, in bytes.
    pub max_retained_wal: u64,
    /// How often a status is reported (`--json`: a line; else the progress line).
    pub status_every: Duration,
    /// Apply at most this long after the first unapplied commit.
    pub max_delay: Duration,
    /// End after this long (tests, benchmarks); `None`: until a signal.
    pub stop_after: Option<Duration>,
}

/// How a follower ended.
pub enum Followed {
    Stopped(Box<FollowSummary>),
    Busy(String),
}

/// Follows until SIGTERM/SIGINT (or an error that stops the stream).
pub async fn follow(
    src: &Source,
    opts: &SyncOptions,
    fo: &FollowOptions,
    progress: &Progress,
    status: &mut (dyn FnMut(&FollowStatus) + Send),
) -> Result<Followed> {
    if matches!(opts.target, Target::Files { .. }) {
        return Err(Error::Config {
            setting: "--follow".into(),
            message:
                "follows into D1 itself (--target api or --target sqlite); the files target is for runs \
                      applied later (--once / --every)"
                    .into(),
        });
    }
    crate::source::wal::slot::check_slot_name(&fo.slot)?;
    crate::source::wal::slot::refuse_pooler(src)?;
    let held = match hold(src, opts, progress).await? {
        Holding::Held(h) => h,
        Holding::Busy(who) => return Ok(Followed::Busy(who)),
    };
    let result = stream::run(src, opts, fo, progress, &held, status).await;
    let released = held.release().await;
    let summary = result?;
    released?;
    Ok(Followed::Stopped(Box::new(summary)))
}

/// `sync --drop-slot`: removes the slot and the publication (the
/// follower must be stopped). Returns what was dropped.
pub async fn drop_slot(src: &Source, slot: &str) -> Result<Vec<String>> {
    crate::source::wal::slot::check_slot_name(slot)?;
    let mut conn = src.connect().await?;
    crate::source::wal::slot::drop_slot(&mut conn, slot).await
}

/// Seconds since `micros` after 2000-01-01 (Postgres's epoch).
pub(crate) fn seconds_since_pg(micros: i64) -> f64 {
    let unix_us = micros + crate::source::decode::PG_EPOCH_US;
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(unix_us);
    ((now_us - unix_us) as f64 / 1e6).max(0.0)
}

/// `--max-retained-wal`: bytes, or a number with KB/MB/GB/TB (powers of
/// 1000) or KiB/MiB/GiB/TiB (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let at = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(at);
    let n: f64 = num.parse().map_err(|_| format!("`{text}`: expected a size such as 500MB or 2GiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!("`{text}`: unknown unit `{u}` (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"))
        }
    };
    Ok((n * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_with_decimal_and_binary_units_and_refuse_the_rest() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1.5 kib"), Ok(1536));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("ten GB").is_err());
        assert!(parse_size("5 parsecs").expect_err("unit").contains("unknown unit"));
    }
}
