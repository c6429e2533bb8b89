//! Rows changed since the last verify: a value source of their own. The
//! last report in the report folder names the source and the snapshot it
//! was taken at; the rows written by a transaction at or after that
//! snapshot's xmin (sync's own test, [`changed_since`]: transaction ids,
//! not timestamps) have their vectors' values compared, every one up to
//! [`MAX_CHANGED`] per table. Each one is a change since values were last
//! sampled: a change sync missed (say, to the embedding alone, which no
//! D1 column shows) is found for certain, not by chance. The report is
//! only a hint of where to look: it can make verify compare more values,
//! never fewer, so a report edited by hand or from another source costs
//! requests at worst (another source's report is not used).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::run::Verification;
use crate::batch::TableSpec;
use crate::error::Result;
use crate::state::changes::changed_since;
use crate::state::checkpoint::{snapshot_xmax, TxidSnapshot};

/// Changed rows whose values are all compared, per table; past it (500
/// `get_by_ids` requests) they are left to the sample, and the report says so.
pub const MAX_CHANGED: usize = 10_000;

/// The vector ids of the rows changed since the last verify, and what the
/// report should say about them: per vector table, or (when there is no
/// last verify to go by) the same for every table.
#[derive(Debug, Default)]
pub struct Since {
    pub ids: HashSet<String>,
    pub by_table: HashMap<String, String>,
    pub general: Option<String>,
}

impl Since {
    /// The report's note on `table`'s Vectorize target, if any.
    pub fn note_for(&self, table: &str) -> Option<String> {
        self.by_table.get(table).or(self.general.as_ref()).cloned()
    }
}

/// The last verify of `source` written to `report` (report.json): its
/// snapshot (`pg_current_snapshot()` text) and when it was taken.
pub fn last_verify(report: &Path, source: &str) -> Option<(TxidSnapshot, String)> {
    let text = std::fs::read_to_string(report).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v.get("source")?.as_str()? != source {
        return None;
    }
    let (txid, at) = v.get("snapshot")?.as_str()?.split_once(" at ")?;
    Some((TxidSnapshot::parse(txid)?, at.to_string()))
}

impl Verification<'_> {
    /// The vector ids of the rows changed since the last verify (none, and
    /// a note saying why, when there is no last verify to go by).
    pub(super) async fn changed_since_last_verify(&self, txid_snapshot: &str) -> Result<Since> {
        let vmaps = &self.prepared.vectors.mappings;
        let mut since = Since::default();
        if self.opts.vectorize.is_none() || vmaps.0.is_empty() {
            return Ok(since);
        }
        let Some(report) = &self.opts.last_report else { return Ok(since) };
        let Some((last, at)) = last_verify(report, self.src.display()) else {
            since.general = Some(format!(
                "no earlier verify of this source in {}: the rows changed since the last verify are not \
                 singled out this time (the next run with the same --report-dir compares all of them)",
                report.display()
            ));
            return Ok(since);
        };
        let Some(changed) = changed_since(last.xmin, snapshot_xmax(txid_snapshot)?) else {
            since.general = Some(format!(
                "the last verify ({at}) is too many transactions ago to tell which rows changed since"
            ));
            return Ok(since);
        };
        // Vector ids are read as the table's key: only where the mapping's
        // id is the key's one column.
        let keyed = |spec: &TableSpec| vmaps.get(spec).is_some_and(|vm| spec.primary_key == [vm.id.as_str()]);
        let condition = |spec: &TableSpec| keyed(spec).then(|| changed.clone());
        let keys = super::pending::keys_where(
            self.src,
            &self.snapshot_id,
            &self.prepared,
            self.opts.read,
            &condition,
        )
        .await?;
        for info in self.prepared.infos.iter().filter(|i| vmaps.get(&i.spec).is_some()) {
            let table = info.spec.qualified();
            let none = HashSet::new();
            let ids = keys.get(&table).map_or(&none, |p| &p.vector_ids);
            let note = match () {
                _ if !keyed(&info.spec) => format!(
                    "the vector id column is not the table's key, so the rows changed since the last verify \
                     ({at}) are not singled out"
                ),
                _ if ids.len() > MAX_CHANGED => format!(
                    "{} rows changed since the last verify ({at}), more than {MAX_CHANGED}: their values are \
                     compared only in the sample",
                    ids.len()
                ),
                _ => {
                    since.ids.extend(ids.iter().cloned());
                    format!(
                        "{} rows changed since the last verify ({at}): the values of all of them compared",
                        ids.len()
                    )
                }
            };
            since.by_table.insert(table, note);
        }
        Ok(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_report_counts_only_for_the_same_source() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("report.json");
        assert!(last_verify(&p, "db").is_none(), "no report yet");
        let report = serde_json::json!({
            "source": "postgres://u@h/db",
            "snapshot": "750:760:752,755 at 2026-12-04T05:00:00Z",
        });
        std::fs::write(&p, report.to_string()).expect("write");
        let (snap, at) = last_verify(&p, "postgres://u@h/db").expect("same source");
        assert_eq!((snap.xmin, snap.xmax, at.as_str()), (750, 760, "2026-12-04T05:00:00Z"));
        assert!(last_verify(&p, "postgres://u@h/other").is_none(), "another source's report");
        std::fs::write(&p, "{not json").expect("write");
        assert!(last_verify(&p, "postgres://u@h/db").is_none(), "a broken report is no record");
    }
}
