//! The emulated D1 databases: one SQLite file each at
//! `<data_dir>/d1/<id>.sqlite`, plus `<data_dir>/d1/databases.json` holding
//! their names and creation times so a restarted emulator lists the same
//! databases. One connection per database behind a mutex: D1 runs one
//! request at a time per database, and so does the emulator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::d1_exec::D1Conn;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbRecord {
    pub uuid: String,
    pub name: String,
    pub created_at: String,
}

pub struct Db {
    pub record: DbRecord,
    conn: Mutex<D1Conn>,
}

impl Db {
    /// The connection. A panic while it was held left no open transaction
    /// behind (the executor rolls back on every error path), so a poisoned
    /// lock is still usable.
    pub fn lock(&self) -> MutexGuard<'_, D1Conn> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `result` of D1's database endpoints.
    pub fn info(&self) -> serde_json::Value {
        let (num_tables, file_size) = {
            let c = self.lock();
            (c.num_tables(), c.size())
        };
        serde_json::json!({
            "uuid": self.record.uuid,
            "name": self.record.name,
            "created_at": self.record.created_at,
            "version": "production",
            "num_tables": num_tables,
            "file_size": file_size,
        })
    }
}

pub struct Store {
    dir: PathBuf,
    dbs: RwLock<BTreeMap<String, Arc<Db>>>,
    /// Serializes creation (name check + index rewrite).
    create_lock: Mutex<()>,
}

/// Database ids become file names: keep them to what a UUID or a
/// hand-picked id uses.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Store {
    /// Opens `<data_dir>/d1`, every database recorded there, and creates
    /// the `ensure` ids that are missing (named after their id).
    pub fn open(data_dir: &Path, ensure: &[String]) -> Result<Store> {
        let dir = data_dir.join("d1");
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let index = dir.join("databases.json");
        let mut records: Vec<DbRecord> = match std::fs::read(&index) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                setting: index.display().to_string(),
                message: format!("not a database index written by pgflare emulate: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&index)(e)),
        };
        for id in ensure {
            if !valid_id(id) {
                return Err(Error::Config {
                    setting: "--d1-database".into(),
                    message: format!("`{id}`: use letters, digits, `-` and `_` (at most 64)"),
                });
            }
            if !records.iter().any(|r| &r.uuid == id) {
                records.push(DbRecord { uuid: id.clone(), name: id.clone(), created_at: now() });
            }
        }
        let store = Store { dir, dbs: RwLock::new(BTreeMap::new()), create_lock: Mutex::new(()) };
        for r in records {
            store.add(r)?;
        }
        store.save()?;
        Ok(store)
    }

    fn add(&self, record: DbRecord) -> Result<Arc<Db>> {
        let path = self.dir.join(format!("{}.sqlite", record.uuid));
        let conn = D1Conn::open(&path)?;
        let db = Arc::new(Db { record, conn: Mutex::new(conn) });
        self.dbs.write().unwrap_or_else(PoisonError::into_inner).insert(db.record.uuid.clone(), db.clone());
        Ok(db)
    }

    fn save(&self) -> Result<()> {
        let records: Vec<DbRecord> = self.list().iter().map(|d| d.record.clone()).collect();
        let index = self.dir.join("databases.json");
        let tmp = self.dir.join("databases.json.tmp");
        let bytes = serde_json::to_vec_pretty(&records).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, &index).map_err(Error::io(&index))
    }

    /// Creates a database; None when the name is taken (D1 refuses that).
    pub fn create(&self, name: &str) -> Result<Option<Arc<Db>>> {
        let _one_at_a_time = self.create_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if self.list().iter().any(|d| d.record.name == name) {
            return Ok(None);
        }
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string();
        let db = self.add(DbRecord { uuid, name: name.to_string(), created_at: now() })?;
        self.save()?;
        Ok(Some(db))
    }

    pub fn get(&self, id: &str) -> Option<Arc<Db>> {
        self.dbs.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Db>> {
        self.dbs.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
