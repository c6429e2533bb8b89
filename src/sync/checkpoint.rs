//! The sync checkpoint: where the targets stand relative to the source, as
//! one JSON document (`pgflare-sync-state-v1`). It lives with the target
//! (a row of `pgflare_sync_state` in D1, see [`super::store`]) so that a
//! runner on a fresh machine continues where the last one stopped.
//!
//! The position is tagged by kind so that other ways of following the
//! source can be added without a format break: today `snapshot` (the
//! transaction-id horizon of the last snapshot the targets reflect); a
//! change-data-capture mode would add `{"kind": "lsn", "slot": ..,
//! "lsn": ..}`, with the bulk load handing over at the slot's snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::source::{Partition, SnapshotInfo};

pub const FORMAT: &str = "pgflare-sync-state-v1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    /// blake3 of the tables and their D1 and Vectorize mappings: changes
    /// since the position are only enough when nothing else changed.
    pub fingerprint: String,
    pub position: Position,
    /// Completed sync runs since the load.
    pub runs: u64,
    /// Who wrote this checkpoint last (`load` or `sync`) and when (UTC).
    pub written_by: String,
    pub written_at: String,
    /// A run that stopped (killed, SIGTERM) before it finished: the ranges
    /// it completed, so the next run does not send them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<InProgress>,
}

/// How far the targets follow the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// Every transaction with a (64-bit) id below `xmin` is in the targets:
    /// `xmin` is the oldest transaction still running when the snapshot
    /// was taken, so anything committed later has an id at or above it.
    Snapshot {
        xmin: u64,
        /// `pg_current_snapshot()` of that snapshot (xmin:xmax:in-progress).
        txid_snapshot: String,
        taken_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wal_lsn: Option<String>,
    },
}

impl Position {
    pub fn of(snapshot: &SnapshotInfo) -> Result<Position> {
        Ok(Position::Snapshot {
            xmin: snapshot_xmin(&snapshot.txid_snapshot)?,
            txid_snapshot: snapshot.txid_snapshot.clone(),
            taken_at: snapshot.taken_at.clone(),
            wal_lsn: snapshot.wal_lsn.clone(),
        })
    }

    pub fn xmin(&self) -> u64 {
        match self {
            Position::Snapshot { xmin, .. } => *xmin,
        }
    }

    pub fn taken_at(&self) -> &str {
        match self {
            Position::Snapshot { taken_at, .. } => taken_at,
        }
    }
}

/// The unfinished run: its key ranges, each with its own horizon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InProgress {
    /// When the run that last advanced a range started (UTC).
    pub taken_at: String,
    /// Per source table: its ranges and how far each one is.
    pub tables: BTreeMap<String, TableProgress>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    /// Key ranges (without filters).
    pub partitions: Vec<Partition>,
    /// Per range, like [`Position::xmin`]: every transaction below it is in
    /// the targets for that range. A range a run finished carries that
    /// run's xmin; the others still the position's.
    pub horizon: Vec<u64>,
}

impl Checkpoint {
    pub fn new(fingerprint: &str, position: Position, written_by: &str) -> Self {
        Checkpoint {
            format: FORMAT.into(),
            fingerprint: fingerprint.into(),
            position,
            runs: 0,
            written_by: written_by.into(),
            written_at: now(),
            in_progress: None,
        }
    }

    pub fn parse(text: &str, location: &str) -> Result<Checkpoint> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Config {
            setting: location.into(),
            message: format!(
                "the sync checkpoint is not JSON ({e}); run `pgflare load --restart` to start over"
            ),
        })?;
        let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(Error::Config {
                setting: location.into(),
                message: format!(
                    "the sync checkpoint has format `{format}`, this pgflare reads `{FORMAT}`; \
                     use the pgflare version that wrote it, or `pgflare load --restart` to start over"
                ),
            });
        }
        serde_json::from_value(v).map_err(|e| Error::Config {
            setting: location.into(),
            message: format!(
                "the sync checkpoint is damaged ({e}); run `pgflare load --restart` to start over"
            ),
        })
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Internal(format!("sync checkpoint: {e}")))
    }
}

/// The 64-bit xmin of a `pg_current_snapshot()` text (`xmin:xmax:xip,...`).
pub fn snapshot_xmin(txid_snapshot: &str) -> Result<u64> {
    txid_snapshot
        .split(':')
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| Error::Internal(format!("unexpected pg_current_snapshot() text {txid_snapshot:?}")))
}

/// The 64-bit xmax (next transaction id) of a snapshot text.
pub fn snapshot_xmax(txid_snapshot: &str) -> Result<u64> {
    txid_snapshot
        .split(':')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| Error::Internal(format!("unexpected pg_current_snapshot() text {txid_snapshot:?}")))
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_is_tagged_for_later_kinds() {
        let c = Checkpoint::new(
            "f",
            Position::Snapshot {
                xmin: 7,
                txid_snapshot: "7:9:8".into(),
                taken_at: "t".into(),
                wal_lsn: None,
            },
            "load",
        );
        let text = c.to_json().expect("json");
        assert!(text.contains(r#""position":{"kind":"snapshot","xmin":7"#), "{text}");
        assert_eq!(Checkpoint::parse(&text, "x").expect("parse"), c);
        let foreign = text.replace(FORMAT, "pgflare-sync-state-v9");
        let e = Checkpoint::parse(&foreign, "D1 pgflare_sync_state").err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("pgflare-sync-state-v9"));
    }

    #[test]
    fn snapshot_bounds_are_read_from_the_text() {
        assert_eq!(snapshot_xmin("26713:26720:26714,26716").ok(), Some(26713));
        assert_eq!(snapshot_xmax("26713:26720:26714,26716").ok(), Some(26720));
        assert!(snapshot_xmin("garbage").is_err());
    }
}
