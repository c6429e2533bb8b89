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
    /// What the vectors in Vectorize look like ([`super::vectorize_fingerprint`]),
    /// or [`super::VECTORS_OFF`] when the load or a run left Vectorize out:
    /// changes since the position are only enough for vectors of the same
    /// form. Absent in checkpoints written before pgflare recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectorize: Option<String>,
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

    /// The snapshot the targets reflect: which transactions they hold.
    pub fn seen(&self) -> Result<TxidSnapshot> {
        match self {
            Position::Snapshot { txid_snapshot, .. } => {
                TxidSnapshot::parse(txid_snapshot).ok_or_else(|| Error::Config {
                    setting: "the sync checkpoint's position.txid_snapshot".into(),
                    message: format!(
                        "{txid_snapshot:?} is not a pg_current_snapshot() text (xmin:xmax:xip,...); \
                         run `pgflare load --restart` to start over"
                    ),
                })
            }
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
            vectorize: None,
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

/// A `pg_current_snapshot()` text (`xmin:xmax:xip,...`), parsed. The
/// snapshot saw (the writes of) every transaction below `xmin` and every
/// one below `xmax` that is not in `xip`, the ones still in progress; see
/// "Transaction ID and Snapshot Information Functions" in the Postgres
/// docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxidSnapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl TxidSnapshot {
    /// Parses the text; anything but ids in that shape is `None` (the text
    /// of a checkpoint comes from D1 and ends up in SQL).
    pub fn parse(text: &str) -> Option<TxidSnapshot> {
        let id = |s: &str| s.parse::<u64>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
        let mut parts = text.split(':');
        let (Some(xmin), Some(xmax), Some(xip), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let (xmin, xmax) = (id(xmin)?, id(xmax)?);
        let mut xip = match xip {
            "" => Vec::new(),
            list => list.split(',').map(id).collect::<Option<Vec<u64>>>()?,
        };
        // Postgres' pg_snapshot input wants them ascending, within [xmin, xmax).
        xip.sort_unstable();
        xip.dedup();
        if xmin > xmax || xip.iter().any(|x| *x < xmin || *x >= xmax) {
            return None;
        }
        Some(TxidSnapshot { xmin, xmax, xip })
    }

    /// The text again, as Postgres writes it (digits, `:` and `,` only).
    pub fn to_text(&self) -> String {
        let xip: Vec<String> = self.xip.iter().map(u64::to_string).collect();
        format!("{}:{}:{}", self.xmin, self.xmax, xip.join(","))
    }
}

/// The 64-bit xmin of a `pg_current_snapshot()` text (`xmin:xmax:xip,...`).
pub fn snapshot_xmin(txid_snapshot: &str) -> Result<u64> {
    Ok(parsed(txid_snapshot)?.xmin)
}

/// The 64-bit xmax (next transaction id) of a snapshot text.
pub fn snapshot_xmax(txid_snapshot: &str) -> Result<u64> {
    Ok(parsed(txid_snapshot)?.xmax)
}

fn parsed(txid_snapshot: &str) -> Result<TxidSnapshot> {
    TxidSnapshot::parse(txid_snapshot)
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
        let s = TxidSnapshot::parse("26713:26720:26714,26716").expect("parse");
        assert_eq!(s.xip, vec![26714, 26716]);
        assert_eq!(s.to_text(), "26713:26720:26714,26716");
        assert_eq!(TxidSnapshot::parse("7:7:").expect("empty list").xip, Vec::<u64>::new());
    }

    proptest::proptest! {
        // Whatever the stored text holds, what comes back (and goes into
        // SQL) is digits, colons and commas, and reads back the same.
        #[test]
        fn a_snapshot_text_reads_back_or_is_refused(text in "[0-9:,' ;a-z-]{0,40}") {
            if let Some(s) = TxidSnapshot::parse(&text) {
                let back = s.to_text();
                proptest::prop_assert!(back.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b','));
                proptest::prop_assert_eq!(TxidSnapshot::parse(&back), Some(s));
            }
        }

        #[test]
        fn a_snapshot_text_postgres_writes_reads_back_exactly(
            xmin in 0u64..(1 << 40), span in 0u64..1000, picks in proptest::collection::btree_set(0u64..1000, 0..50),
        ) {
            let xip: Vec<u64> = picks.into_iter().filter(|p| *p < span).map(|p| xmin + p).collect();
            let s = TxidSnapshot { xmin, xmax: xmin + span, xip };
            proptest::prop_assert_eq!(TxidSnapshot::parse(&s.to_text()), Some(s));
        }
    }
}
