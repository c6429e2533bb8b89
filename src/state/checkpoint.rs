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
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cloudflare::{Api, Vectorize};
use crate::error::{Error, Result};
use crate::plan::VectorTarget;
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
    /// The Vectorize index those vectors are in: changes since the
    /// position are only enough for the index that holds the rest. Absent
    /// when no index was sent vectors (`--vectorize off`, NDJSON files),
    /// and in checkpoints written before pgflare recorded it (the next run
    /// with vectors records its index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectorize_index: Option<IndexRef>,
    /// A run that stopped (killed, SIGTERM) before it finished: the ranges
    /// it completed, so the next run does not send them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<InProgress>,
    /// `sync --follow`: the replication slot and the position in the WAL
    /// the targets hold every change up to. Absent until a follower
    /// started; a load (which starts a new history) leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowPosition>,
}

/// Where a follower is in the source's WAL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowPosition {
    pub slot: String,
    /// Every transaction that committed at or before this LSN is in the
    /// targets (Postgres's `16/B374D848` form).
    pub lsn: String,
    /// Commit time of the last transaction applied (UTC), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
}

/// A Vectorize index: its account and name (an index of the same name in
/// another account is another index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRef {
    pub account_id: String,
    pub name: String,
    /// When Cloudflare created it (`created_on`): an index deleted and
    /// created again under its name is another, empty index. `None` when
    /// not known (checkpoints written before it); for a run's index, when
    /// the index does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
}

impl IndexRef {
    /// The index vectors go to, when they go to one.
    pub fn of(target: &VectorTarget) -> Option<IndexRef> {
        match target {
            VectorTarget::Api { settings, index } => Some(IndexRef {
                account_id: settings.account_id.clone(),
                name: index.clone(),
                created_on: None,
            }),
            VectorTarget::Off | VectorTarget::Files { .. } => None,
        }
    }

    /// [`IndexRef::of`] with `created_on` asked of Cloudflare.
    pub async fn asked(target: &VectorTarget, api: Option<Arc<Api>>) -> Result<Option<IndexRef>> {
        let (Some(mut index), Some(api)) = (IndexRef::of(target), api) else { return Ok(None) };
        index.created_on = Vectorize::new(api, &index.name).created_on().await?;
        Ok(Some(index))
    }

    /// The same index by account and name (whatever its creation time).
    pub fn same_name(&self, other: &IndexRef) -> bool {
        self.account_id == other.account_id && self.name == other.name
    }

    pub fn describe(&self) -> String {
        format!("`{}` (account {})", self.name, self.account_id)
    }
}

/// How far the targets follow the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// Every transaction of this database with a (64-bit) id below `xmin`
    /// is in the targets: `xmin` is the oldest transaction still running
    /// when the snapshot was taken, leaving out those known to run in
    /// other databases (a long one elsewhere in the cluster does not hold
    /// it back), so anything committed later has an id at or above it.
    /// Checkpoints written before that hold the snapshot's own xmin
    /// (lower or equal: more is sent, never less).
    Snapshot {
        xmin: u64,
        /// `pg_current_snapshot()` of that snapshot (xmin:xmax:in-progress).
        txid_snapshot: String,
        taken_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wal_lsn: Option<String>,
        /// A higher horizon, when transactions of this database without
        /// subtransactions were in progress below `xmin`; `xmin` stays
        /// the plain one, so that a reader that does not know this field
        /// sends more, never less.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finer: Option<Finer>,
    },
}

/// Every transaction of this database below `xmin` is in the targets,
/// except those listed: they were in progress at the snapshot without a
/// subtransaction, so each of their rows carries the listed id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finer {
    pub xmin: u64,
    pub in_progress: Vec<u64>,
}

impl Position {
    pub fn of(snapshot: &SnapshotInfo) -> Result<Position> {
        let txids = parsed(&snapshot.txid_snapshot)?;
        let xmin = txids.horizon(&snapshot.in_progress_elsewhere);
        let mut known = snapshot.in_progress_elsewhere.clone();
        known.extend(&snapshot.in_progress_without_subtransactions);
        let finer_xmin = txids.horizon(&known);
        let listed: Vec<u64> = snapshot
            .in_progress_without_subtransactions
            .iter()
            .copied()
            .filter(|x| txids.xip.contains(x) && *x < finer_xmin)
            .collect();
        Ok(Position::Snapshot {
            xmin,
            txid_snapshot: snapshot.txid_snapshot.clone(),
            taken_at: snapshot.taken_at.clone(),
            wal_lsn: snapshot.wal_lsn.clone(),
            finer: (finer_xmin > xmin).then_some(Finer { xmin: finer_xmin, in_progress: listed }),
        })
    }

    /// The horizon: every transaction of this database below it is in the
    /// targets.
    pub fn xmin(&self) -> u64 {
        match self {
            Position::Snapshot { xmin, .. } => *xmin,
        }
    }

    pub fn finer(&self) -> Option<&Finer> {
        match self {
            Position::Snapshot { finer, .. } => finer.as_ref(),
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
            vectorize_index: None,
            in_progress: None,
            follow: None,
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

/// A `pg_current_snapshot()` text (`xmin:xmax:xip,...`), parsed: `xip`
/// lists the top-level transactions in progress, `xmin` is the oldest of
/// them (or `xmax`). See "Transaction ID and Snapshot Information
/// Functions" in the Postgres docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxidSnapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl TxidSnapshot {
    /// Parses the text; anything but ids in that shape is `None`.
    pub fn parse(text: &str) -> Option<TxidSnapshot> {
        let id = |s: &str| s.parse::<u64>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
        let mut parts = text.split(':');
        let (Some(xmin), Some(xmax), Some(xip), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let (xmin, xmax) = (id(xmin)?, id(xmax)?);
        let xip = match xip {
            "" => Vec::new(),
            list => list.split(',').map(id).collect::<Option<Vec<u64>>>()?,
        };
        if xmin > xmax || xip.iter().any(|x| *x < xmin || *x >= xmax) {
            return None;
        }
        Some(TxidSnapshot { xmin, xmax, xip })
    }

    /// The oldest transaction in progress that may belong to this
    /// database: every one but those in `elsewhere` (other databases', or
    /// also this database's that are treated apart), or `xmax` when none.
    /// A row written by a transaction below it was in the snapshot; a row
    /// at or above it may not have been.
    ///
    /// Not an exact "was this transaction visible to the snapshot" test
    /// (`pg_visible_in_snapshot`): the in-progress list holds top-level
    /// ids only, and a row written in a subtransaction (a SAVEPOINT, a
    /// PL/pgSQL EXCEPTION block) carries the subtransaction's id, which
    /// is absent from the list even while its transaction runs. Such an id
    /// is above its transaction's, so "at or above the oldest one of this
    /// database" catches it.
    pub fn horizon(&self, elsewhere: &[u64]) -> u64 {
        self.xip.iter().copied().filter(|x| !elsewhere.contains(x)).min().unwrap_or(self.xmax)
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
                finer: None,
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
        assert_eq!(TxidSnapshot::parse("7:7:").expect("empty list").xip, Vec::<u64>::new());
        for bad in ["7:7", "7:7::", "9:7:", "7:9:10", "7:9:6", "7:9:+8", "7:9:8,", "-1:9:"] {
            assert_eq!(TxidSnapshot::parse(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        // Whatever a stored checkpoint holds, parsing never panics and what
        // it accepts is a snapshot Postgres could have written.
        #[test]
        fn a_snapshot_text_is_read_or_refused(text in "[0-9:,' ;a-z+-]{0,40}") {
            if let Some(s) = TxidSnapshot::parse(&text) {
                proptest::prop_assert!(s.xmin <= s.xmax);
                proptest::prop_assert!(s.xip.iter().all(|x| *x >= s.xmin && *x < s.xmax));
                proptest::prop_assert!(s.horizon(&[]) >= s.xmin && s.horizon(&[]) <= s.xmax);
            }
        }
    }

    #[test]
    fn a_finer_horizon_lists_this_databases_transactions_without_subtransactions() {
        let info = |elsewhere: Vec<u64>, flat: Vec<u64>| SnapshotInfo {
            id: "s".into(),
            txid_snapshot: "100:130:100,104,110,120".into(),
            in_progress_elsewhere: elsewhere,
            in_progress_without_subtransactions: flat,
            wal_lsn: None,
            taken_at: "t".into(),
            server_version: "18".into(),
        };
        let of = |e, f| Position::of(&info(e, f)).expect("position");
        // 100 elsewhere; 104 ours without subtransactions; 110 unknown.
        let p = of(vec![100], vec![104]);
        assert_eq!(p.xmin(), 104);
        assert_eq!(p.finer(), Some(&Finer { xmin: 110, in_progress: vec![104] }));
        // Nothing placed: the plain horizon only.
        let p = of(vec![], vec![]);
        assert_eq!((p.xmin(), p.finer()), (100, None));
        // All of ours without subtransactions: up to xmax, listing them.
        let p = of(vec![100], vec![104, 110, 120]);
        assert_eq!(p.finer(), Some(&Finer { xmin: 130, in_progress: vec![104, 110, 120] }));
        // One above the first one with subtransactions is covered by it.
        let p = of(vec![100], vec![104, 120]);
        assert_eq!(p.finer(), Some(&Finer { xmin: 110, in_progress: vec![104] }));
    }

    #[test]
    fn the_horizon_leaves_out_other_databases_transactions() {
        let s = TxidSnapshot::parse("100:120:100,104,110").expect("parse");
        assert_eq!(s.horizon(&[]), 100, "unknown: taken as this database's");
        assert_eq!(s.horizon(&[100]), 104);
        assert_eq!(s.horizon(&[100, 104, 110]), 120, "none of ours: xmax");
        assert_eq!(TxidSnapshot::parse("7:7:").expect("parse").horizon(&[]), 7);
    }

    proptest::proptest! {
        // A text Postgres writes reads back exactly, and its horizon is the
        // oldest in-progress id not left out.
        #[test]
        fn a_snapshot_text_postgres_writes_reads_back_exactly(
            xmin in 0u64..(1 << 40), span in 0u64..1000, picks in proptest::collection::btree_set(0u64..1000, 0..50),
        ) {
            let xip: Vec<u64> = picks.into_iter().filter(|p| *p < span).map(|p| xmin + p).collect();
            let list: Vec<String> = xip.iter().map(u64::to_string).collect();
            let text = format!("{xmin}:{}:{}", xmin + span, list.join(","));
            let s = TxidSnapshot::parse(&text);
            proptest::prop_assert_eq!(s.as_ref().map(|s| &s.xip), Some(&xip));
            let left_out: Vec<u64> = xip.iter().copied().step_by(2).collect();
            let want = xip.iter().copied().filter(|x| !left_out.contains(x)).min().unwrap_or(xmin + span);
            proptest::prop_assert_eq!(s.map(|s| s.horizon(&left_out)), Some(want));
        }
    }
}
