//! The resumable state of a bulk load, one JSON file per target: the key
//! ranges planned by the first run and which of them the target has
//! confirmed. A range is marked done only after its sink finished (the
//! SQLite transaction committed, the D1 request or import completed, the
//! file closed), and the file is replaced atomically, so a kill at any
//! moment leaves either the old or the new state, never a torn one. A
//! rerun loads only ranges not marked done; since every write is an
//! upsert, a range that was half written before the kill is simply
//! written again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::batch::sink::VectorReport;
use crate::batch::sink::{FileReport, SinkReport};
use crate::error::{Error, Result};
use crate::sink::d1::linker::LinkReport;
use crate::source::partition::Partition;
use crate::source::SnapshotInfo;

pub const FORMAT: &str = "pgflare-load-state-v1";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadState {
    pub format: String,
    /// The target, as `pgflare load` describes it (no secrets).
    pub target: String,
    /// blake3 of the table mappings and target; a rerun with other
    /// settings must not mix two plans.
    pub fingerprint: String,
    /// The snapshot of the first run: a later incremental sync must start
    /// from here, since ranges loaded then reflect it.
    pub first_snapshot: SnapshotInfo,
    pub runs: u32,
    pub complete: bool,
    pub tables: Vec<TableState>,
    /// `load --slot`: the replication slot made with the first run's
    /// snapshot and its consistent point, handed to the sync checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<crate::state::checkpoint::FollowPosition>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableState {
    /// `schema.table` in the source.
    pub table: String,
    pub d1_table: String,
    pub partitions: Vec<PartitionState>,
    /// Rows left out at the first run's snapshot: soft-deleted, and below
    /// a soft-deleted parent (see `plan::live`).
    #[serde(default)]
    pub rows_soft_deleted: u64,
    #[serde(default)]
    pub rows_hidden_by_deleted_parent: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionState {
    pub range: Partition,
    pub done: bool,
    pub rows: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileReport>,
    /// What went to Vectorize from this range.
    #[serde(default, skip_serializing_if = "VectorReport::is_empty")]
    pub vectors: VectorReport,
    /// The link step (tables with a foreign key on a cycle) ran for this
    /// range, after every range of the load was done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub linked: bool,
    #[serde(default, skip_serializing_if = "LinkReport::is_empty")]
    pub links: LinkReport,
}

/// The state file, shared by the workers.
pub struct StateFile {
    path: PathBuf,
    state: Mutex<LoadState>,
}

impl StateFile {
    /// Reads a state file if there is one.
    pub fn read(path: &Path) -> Result<Option<LoadState>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path)(e)),
        };
        let state: LoadState = serde_json::from_str(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            message: format!("not a pgflare load state ({e}); delete it or pass --restart to start over"),
        })?;
        if state.format != FORMAT {
            return Err(Error::Manifest {
                path: path.to_path_buf(),
                message: format!(
                    "format `{}`, expected `{FORMAT}`; pass --restart to start over",
                    state.format
                ),
            });
        }
        Ok(Some(state))
    }

    /// Takes ownership of `state` and writes it at once.
    pub fn create(path: &Path, state: LoadState) -> Result<Self> {
        let f = StateFile { path: path.to_path_buf(), state: Mutex::new(state) };
        f.save()?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> Result<LoadState> {
        Ok(self.lock()?.clone())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, LoadState>> {
        self.state.lock().map_err(|_| Error::Internal("load state poisoned".into()))
    }

    /// Records that the target confirmed one range.
    pub fn partition_done(&self, table: &str, index: usize, report: &SinkReport) -> Result<()> {
        let mut state = self.lock()?;
        let p = partition(&mut state, table, index)?;
        p.done = true;
        p.rows = report.rows;
        p.bytes = report.bytes;
        p.files = report.files.clone();
        p.vectors = report.vectors.clone();
        p.vectors.pending_write = None;
        p.vectors.pending_tails.clear();
        write_atomic(&self.path, &state)
    }

    /// Records that the link step finished one range.
    pub fn partition_linked(&self, table: &str, index: usize, report: LinkReport) -> Result<()> {
        let mut state = self.lock()?;
        let p = partition(&mut state, table, index)?;
        p.linked = true;
        p.links = report;
        write_atomic(&self.path, &state)
    }

    pub fn mark_complete(&self) -> Result<()> {
        let mut state = self.lock()?;
        state.complete = true;
        write_atomic(&self.path, &state)
    }

    fn save(&self) -> Result<()> {
        let state = self.lock()?;
        write_atomic(&self.path, &state)
    }
}

fn partition<'a>(state: &'a mut LoadState, table: &str, index: usize) -> Result<&'a mut PartitionState> {
    let t = state.tables.iter_mut().find(|t| t.table == table);
    t.and_then(|t| t.partitions.iter_mut().find(|p| p.range.index == index))
        .ok_or_else(|| Error::Internal(format!("load state has no partition {index} of {table}")))
}

/// One `pgflare load` per state folder: an OS lock (`flock`) on
/// `<dir>/load.lock`, held until the load ends, however it ends (the OS
/// drops it with the process, even on SIGKILL). The file names the holder
/// so that a second load can say who it is waiting for.
pub struct StateLock {
    _file: std::fs::File,
}

/// The lock file's name in the state folder.
pub const LOCK_FILE: &str = "load.lock";

impl StateLock {
    /// Takes the folder's lock for a load into `target`, or says who holds it.
    pub fn acquire(dir: &Path, target: &str) -> Result<StateLock> {
        use std::io::{Seek, Write};
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<crate::holder::Holder>(&t).ok())
                    .map_or_else(|| "another pgflare load (starting)".to_string(), |h| h.describe());
                return Err(Error::Busy(format!(
                    "the load state in {} is in use by {holder}: one load per state folder at a time \
                     (two would write the same state and targets); wait for it to end, or give this \
                     load its own --state-dir",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
        }
        let me = crate::holder::Holder::me(&format!("pgflare load into {target}"));
        let text = serde_json::to_vec_pretty(&me).map_err(|e| Error::Internal(format!("lock file: {e}")))?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(&text))
            .map_err(Error::io(&path))?;
        Ok(StateLock { _file: file })
    }
}

/// Write to a temporary file, flush it to disk, rename over the old one.
fn write_atomic(path: &Path, state: &LoadState) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::Internal(format!("load state: {e}")))?;
    let mut f = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    f.write_all(&bytes).map_err(Error::io(&tmp))?;
    f.sync_all().map_err(Error::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A state of one undone partition of `public.t` (also used by the
    /// sink compliance tests).
    pub(crate) fn state() -> LoadState {
        LoadState {
            format: FORMAT.into(),
            target: "files:/tmp/x".into(),
            fingerprint: "f".into(),
            first_snapshot: SnapshotInfo {
                id: "s".into(),
                txid_snapshot: "1:1:".into(),
                in_progress_elsewhere: Vec::new(),
                in_progress_without_subtransactions: Vec::new(),
                wal_lsn: None,
                taken_at: "now".into(),
                server_version: "18".into(),
            },
            follow: None,
            runs: 1,
            complete: false,
            tables: vec![TableState {
                table: "public.t".into(),
                d1_table: "t".into(),
                partitions: vec![PartitionState {
                    range: Partition::whole(),
                    done: false,
                    rows: 0,
                    bytes: 0,
                    files: vec![],
                    vectors: VectorReport::default(),
                    linked: false,
                    links: LinkReport::default(),
                }],
                rows_soft_deleted: 0,
                rows_hidden_by_deleted_parent: 0,
            }],
        }
    }

    #[test]
    fn done_partitions_survive_a_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        let f = StateFile::create(&path, state()).expect("create");
        f.partition_done("public.t", 0, &SinkReport { rows: 7, bytes: 70, ..SinkReport::default() })
            .expect("done");
        let back = StateFile::read(&path).expect("read").expect("some");
        assert!(back.tables[0].partitions[0].done);
        assert_eq!(back.tables[0].partitions[0].rows, 7);
        assert!(f.partition_done("public.t", 3, &SinkReport::default()).is_err());
    }

    #[test]
    fn a_foreign_file_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        std::fs::write(&path, "{\"format\": 3}").expect("write");
        let e = StateFile::read(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("--restart"), "{e}");
    }
}
