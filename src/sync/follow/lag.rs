//! What a follower reports: a status while it runs (`--json`: one line
//! every `--status-every`; otherwise the progress line) and a summary when
//! it stops, with how far behind the source the targets are, in WAL bytes
//! and in seconds from a transaction's commit to the moment the targets
//! confirmed it (`schemas/follow-summary.schema.json`).

use serde::Serialize;

use super::apply::Applied;

/// The follower's state now.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FollowStatus {
    pub format: &'static str,
    pub slot: String,
    /// Everything committed up to here is in the targets.
    pub applied_lsn: String,
    /// The end of the source's WAL as last heard.
    pub server_lsn: String,
    pub bytes_behind: u64,
    /// Since the commit of the last transaction applied, when one waits;
    /// 0 when caught up.
    pub seconds_behind: f64,
    pub transactions: u64,
    pub rows_upserted: u64,
    pub rows_deleted: u64,
}

/// Percentiles of the commit-to-applied delay of every transaction.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LagStats {
    pub transactions: u64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub max_seconds: f64,
}

/// When a follower stopped.
#[derive(Clone, Debug, Serialize)]
pub struct FollowSummary {
    pub format: &'static str,
    pub slot: String,
    pub publication: String,
    pub target: String,
    pub started_at: String,
    /// Where the stream started and where the targets are now.
    pub from_lsn: String,
    pub to_lsn: String,
    /// A new slot was made and one polling run covered what came before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover: Option<super::super::SyncSummary>,
    pub transactions: u64,
    /// Times changes were applied (each ends with a checkpoint).
    pub flushes: u64,
    /// Cloudflare API requests the flushes sent (0 for `--target sqlite`).
    pub requests: u64,
    #[serde(flatten)]
    pub applied: Applied,
    pub lag: LagStats,
    /// WAL the slot kept on the source when it stopped, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_wal_bytes: Option<i64>,
    pub seconds: f64,
}

/// Commit-to-applied delays, kept in 10 ms steps up to 10 minutes (a
/// fixed 60,000 counters, whatever the run's length).
pub struct Delays {
    counts: Vec<u64>,
    total: u64,
    max: f64,
}

const STEP: f64 = 0.01;

impl Default for Delays {
    fn default() -> Self {
        Delays { counts: vec![0; 60_000], total: 0, max: 0.0 }
    }
}

impl Delays {
    pub fn add(&mut self, seconds: f64) {
        let i = ((seconds / STEP) as usize).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(seconds);
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                // Whole steps, without the float noise of (i + 1) * 0.01.
                return (((i + 1) as f64) / 100.0).min(self.max);
            }
        }
        self.max
    }

    pub fn stats(&self) -> LagStats {
        LagStats {
            transactions: self.total,
            p50_seconds: self.quantile(0.5),
            p95_seconds: self.quantile(0.95),
            max_seconds: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_upper_bounds_within_a_step_and_never_above_the_max() {
        let mut d = Delays::default();
        for i in 0..100 {
            d.add(i as f64 / 100.0); // 0.00 .. 0.99 s
        }
        let s = d.stats();
        assert_eq!(s.transactions, 100);
        assert!((s.p50_seconds - 0.50).abs() < 0.011, "{s:?}");
        assert!((s.p95_seconds - 0.95).abs() < 0.011, "{s:?}");
        assert_eq!(s.max_seconds, 0.99);
        let mut one = Delays::default();
        one.add(1234.0); // beyond the last step
        assert_eq!(one.stats().p95_seconds, 600.0_f64.min(1234.0));
    }
}
