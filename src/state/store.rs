//! Where the sync job keeps its state: with the target. For the `sqlite`
//! and `api` targets that is the D1 table `pgflare_sync_state` (one row
//! for the checkpoint, one for the runner's lease), so a scheduled runner
//! on a fresh machine reads it back from D1; for the `files` target, files
//! under the state folder. The lease is taken with one conditional upsert,
//! which D1 runs atomically, so two runners cannot both hold it.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::checkpoint::{now, Checkpoint};
use crate::cloudflare::{Api, D1};
use crate::error::{Error, Result};
use crate::plan::access::D1Access;
use crate::plan::{Target, VectorTarget};
use crate::sink::d1::render::D1Mappings;
use crate::sink::d1::sqlite::D1SqliteConfig;

/// The state table; not `_cf_`-prefixed (D1 reserves those names).
pub const STATE_TABLE: &str = "pgflare_sync_state";
/// Digest of the vector last sent per id, so unchanged vectors are not re-sent.
pub const DIGEST_TABLE: &str = "pgflare_vector_digests";

pub const STATE_DDL: &str = "CREATE TABLE IF NOT EXISTS pgflare_sync_state (\n  \
    name TEXT PRIMARY KEY,\n  value TEXT NOT NULL,\n  updated_at TEXT NOT NULL\n);\n\
    CREATE TABLE IF NOT EXISTS pgflare_vector_digests (\n  \
    id TEXT PRIMARY KEY,\n  digest TEXT NOT NULL\n);\n";

/// The `files` target's sync state: a local SQLite file (checkpoint,
/// lease and vector digests, the same tables as in D1) under `state_dir`,
/// one per output folder.
pub fn files_state_path(state_dir: &std::path::Path, out: &std::path::Path) -> PathBuf {
    let out = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let hash = blake3::hash(out.display().to_string().as_bytes()).to_hex();
    state_dir.join(format!("sync-files-{}.sqlite", &hash[..16]))
}

/// Who runs the sync, and until when nobody else may.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Unique per runner process.
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub since: String,
    /// Unix seconds; a lease past this is free for the taking.
    pub expires_at: i64,
}

impl Lease {
    pub fn mine(ttl: std::time::Duration) -> Lease {
        let host = crate::holder::host_name();
        let pid = std::process::id();
        Lease {
            holder: format!("{host}:{pid}:{}", &blake3::hash(now().as_bytes()).to_hex()[..8]),
            host,
            pid,
            since: now(),
            expires_at: unix_now() + ttl.as_secs() as i64,
        }
    }

    /// Held by a process of this host that no longer runs.
    fn is_dead_here(&self, me: &Lease) -> bool {
        self.host == me.host
            && self.pid != me.pid
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    pub fn describe(&self) -> String {
        let left = self.expires_at - unix_now();
        format!(
            "pgflare sync on host {} (pid {}), running since {}, lease expires in {}s",
            self.host,
            self.pid,
            self.since,
            left.max(0)
        )
    }
}

pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A local D1 file sync would have to create holds no checkpoint: say so
/// without leaving an empty file behind.
pub fn refuse_missing_d1_file(target: &Target) -> Result<()> {
    match target {
        Target::Sqlite { path } if !path.exists() => Err(Error::Config {
            setting: "--sqlite".into(),
            message: format!(
                "{} does not exist: sync continues a load, so run `pgflare load --target sqlite` into it first",
                path.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// The API client (when a target needs one) and the D1 the state lives in
/// (for the `files` target, a file under `work_dir`).
pub fn open_d1(
    target: &Target,
    vectorize: &VectorTarget,
    work_dir: &std::path::Path,
    progress: &crate::progress::Progress,
) -> Result<(Option<Arc<Api>>, D1Access)> {
    let notices = progress.clone();
    let api = match (target, vectorize) {
        (Target::Api { settings, .. }, _) | (_, VectorTarget::Api { settings, .. }) => {
            Some(Arc::new(Api::new(settings.clone())?.with_progress(notices)))
        }
        _ => None,
    };
    let d1 = match target {
        Target::Sqlite { path } => D1Access::Sqlite(D1SqliteConfig::open(path, D1Mappings::default())?),
        Target::Api { database_id, .. } => match &api {
            Some(a) => D1Access::Api(Arc::new(D1::new(a.clone(), database_id))),
            None => return Err(Error::Internal("the api target has no client".into())),
        },
        // The files target keeps its state in a local SQLite file.
        Target::Files { dir, .. } => {
            D1Access::Sqlite(D1SqliteConfig::open(&files_state_path(work_dir, dir), D1Mappings::default())?)
        }
    };
    Ok((api, d1))
}

/// Where the checkpoint and lease live: D1, or for the `files` target a
/// local SQLite file with the same tables ([`files_state_path`]).
#[derive(Clone)]
pub enum Store {
    D1(D1Access),
}

impl Store {
    pub fn describe(&self) -> String {
        match self {
            Store::D1(d) => format!("{STATE_TABLE} in {}", d.describe()),
        }
    }

    /// Creates the state tables when missing.
    pub async fn prepare(&self) -> Result<()> {
        match self {
            Store::D1(d) => d.execute("creating pgflare's sync tables", STATE_DDL).await,
        }
    }

    pub async fn read(&self) -> Result<Option<Checkpoint>> {
        let text = match self {
            Store::D1(d) => {
                let rows = d
                    .select(
                        "reading the sync checkpoint",
                        "SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'",
                        &[],
                    )
                    .await?;
                match rows.first().and_then(|r| r.get("value")).and_then(Value::as_str) {
                    Some(t) => t.to_string(),
                    None => return Ok(None),
                }
            }
        };
        Checkpoint::parse(&text, &self.describe()).map(Some)
    }

    pub async fn write(&self, c: &Checkpoint) -> Result<()> {
        let text = c.to_json()?;
        match self {
            Store::D1(d) => {
                d.select(
                    "saving the sync checkpoint",
                    "INSERT INTO pgflare_sync_state (name, value, updated_at) VALUES ('checkpoint', ?1, ?2) \
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    &[json!(text), json!(now())],
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Takes the lease for `me`: `Ok(None)` when taken (or renewed),
    /// `Ok(Some(holder))` when another runner holds it.
    pub async fn acquire(&self, me: &Lease) -> Result<Option<Lease>> {
        let text = serde_json::to_string(me).map_err(|e| Error::Internal(e.to_string()))?;
        match self {
            Store::D1(d) => {
                // One statement: D1 runs it atomically, so of two runners
                // racing for a free lease exactly one gets it.
                d.select(
                    "taking the sync lease",
                    "INSERT INTO pgflare_sync_state (name, value, updated_at) VALUES ('lease', ?1, ?2) \
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at \
                     WHERE json_extract(pgflare_sync_state.value, '$.expires_at') < CAST(?3 AS INTEGER) \
                        OR json_extract(pgflare_sync_state.value, '$.holder') = ?4",
                    &[json!(text), json!(now()), json!(unix_now()), json!(me.holder)],
                )
                .await?;
                let rows = d
                    .select(
                        "reading the sync lease",
                        "SELECT value FROM pgflare_sync_state WHERE name = 'lease'",
                        &[],
                    )
                    .await?;
                let holder: Option<Lease> = rows
                    .first()
                    .and_then(|r| r.get("value"))
                    .and_then(Value::as_str)
                    .and_then(|t| serde_json::from_str(t).ok());
                match holder.filter(|h| h.holder != me.holder) {
                    // A runner of this host that died (SIGKILL, OOM) left its
                    // lease behind: take it over instead of waiting it out.
                    Some(h) if h.is_dead_here(me) => {
                        d.select(
                            "taking over the lease of a runner that died",
                            "UPDATE pgflare_sync_state SET value = ?1, updated_at = ?2 \
                             WHERE name = 'lease' AND json_extract(value, '$.holder') = ?3",
                            &[json!(text), json!(now()), json!(h.holder)],
                        )
                        .await?;
                        Box::pin(self.acquire(me)).await
                    }
                    other => Ok(other),
                }
            }
        }
    }

    /// Gives the lease up (it expires now).
    pub async fn release(&self, me: &Lease) -> Result<()> {
        match self {
            Store::D1(d) => {
                d.select(
                    "releasing the sync lease",
                    "UPDATE pgflare_sync_state SET value = json_set(value, '$.expires_at', 0), updated_at = ?2 \
                     WHERE name = 'lease' AND json_extract(value, '$.holder') = ?1",
                    &[json!(me.holder), json!(now())],
                )
                .await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::d1::render::D1Mappings;
    use crate::state::checkpoint::Position;

    fn sqlite_store(dir: &std::path::Path) -> Store {
        let c = D1SqliteConfig::open(&dir.join("d1.sqlite"), D1Mappings::default()).expect("open");
        Store::D1(D1Access::Sqlite(c))
    }

    #[tokio::test]
    async fn one_lease_holder_at_a_time_until_it_expires_or_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        for store in [sqlite_store(dir.path())] {
            store.prepare().await.expect("prepare");
            let a = Lease::mine(std::time::Duration::from_secs(60));
            let mut b = Lease::mine(std::time::Duration::from_secs(60));
            b.holder.push_str("-b");
            assert_eq!(store.acquire(&a).await.expect("a"), None);
            assert_eq!(store.acquire(&a).await.expect("a again"), None, "renewing is allowed");
            let held = store.acquire(&b).await.expect("b").expect("b is refused");
            assert_eq!(held.holder, a.holder);
            store.release(&a).await.expect("release");
            assert_eq!(store.acquire(&b).await.expect("b after release"), None);
            let mut c = Lease::mine(std::time::Duration::from_secs(60));
            c.holder.push_str("-c");
            assert!(store.acquire(&c).await.expect("c").is_some());
            // An expired lease is free.
            let mut stale = b.clone();
            stale.expires_at = unix_now() - 5;
            store.acquire(&stale).await.expect("b shortens its own lease");
            assert_eq!(store.acquire(&c).await.expect("c after expiry"), None);
        }
    }

    #[tokio::test]
    async fn the_checkpoint_round_trips_through_d1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite_store(dir.path());
        store.prepare().await.expect("prepare");
        assert_eq!(store.read().await.expect("read"), None);
        let c = Checkpoint::new(
            "fp",
            Position::Snapshot {
                xmin: 42,
                txid_snapshot: "42:44:43".into(),
                taken_at: "t".into(),
                wal_lsn: None,
                finer: None,
            },
            "load",
        );
        store.write(&c).await.expect("write");
        store.write(&c).await.expect("overwrite");
        assert_eq!(store.read().await.expect("read"), Some(c));
        let conn = rusqlite::Connection::open(dir.path().join("d1.sqlite")).expect("open");
        let n: i64 =
            conn.query_row("SELECT count(*) FROM pgflare_sync_state", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 1);
    }
}
