//! The emulated Vectorize indexes: one SQLite file each at
//! `<data_dir>/vectorize/<name>.sqlite` holding the index's config, its
//! vectors (values as little-endian float32 BLOBs, metadata as JSON text,
//! namespace), its metadata indexes, and the mutations accepted but not yet
//! applied (with their vectors), so a restart loses nothing.
//!
//! Writes are asynchronous as in Vectorize: a write is validated, stored as
//! a pending mutation with a fresh UUID and its accept time, and applied
//! once `delay` has passed, strictly in acceptance order
//! ([`super::vectorize_mutations`]). Every request to an index first applies
//! what is due (reads and writes alike), so a read never sees a mutation
//! before its time, and with no delay a read right after a write sees it.
//! `info` reports the last applied mutation.
//! Source: cloudflare-docs `src/content/docs/vectorize/reference/client-api.mdx` (inserts, upserts
//! and deletes "are asynchronous" and return "a mutation identifier"); in order: cloudflare/workerd
//! `types/defines/vectorize.d.ts` `VectorizeIndexInfo.processedUpToMutation` ("All changes before
//! this mutation will be reflected in the index state").
//!
//! Queries scan the vectors table (no in-memory copy): memory stays flat
//! whatever the index size, at the price of reading every BLOB per query,
//! which SQLite's page cache and the OS keep cheap at ~50k x 1536 dims.
//! One connection per index behind a mutex: requests to one index run one
//! at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use super::envelope::ApiError;
use super::vectorize::{CODE_FILTER, CODE_METADATA_INDEX, CODE_QUERY};
use super::vectorize_mutations::{apply_due, enqueue, projected_metadata_indexes};
use super::vectorize_query::{self as vq, Hit, IndexType, Indexed, Metric, Scorer};
use crate::error::{Error, Result};

/// Metadata indexes per Vectorize index. Source: cloudflare-docs
/// `src/content/docs/vectorize/platform/limits.mdx` ("Maximum metadata indexes per Vectorize index": 10).
pub const MAX_METADATA_INDEXES: usize = 10;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS config (one INTEGER PRIMARY KEY CHECK (one = 1), name TEXT NOT NULL,
  description TEXT NOT NULL, dimensions INTEGER NOT NULL, metric TEXT NOT NULL,
  created_on TEXT NOT NULL, modified_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS progress (one INTEGER PRIMARY KEY CHECK (one = 1),
  mutation TEXT, accepted_ms INTEGER, last_accepted_ms INTEGER NOT NULL);
INSERT OR IGNORE INTO progress VALUES (1, NULL, NULL, 0);
CREATE TABLE IF NOT EXISTS vectors (id TEXT PRIMARY KEY, namespace TEXT, metadata TEXT,
  written_seq INTEGER NOT NULL, vals BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS metadata_indexes (property TEXT PRIMARY KEY, index_type TEXT NOT NULL,
  created_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mutations (seq INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL,
  accepted_ms INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT);
CREATE TABLE IF NOT EXISTS pending_vectors (seq INTEGER NOT NULL, pos INTEGER NOT NULL,
  id TEXT NOT NULL, namespace TEXT, metadata TEXT, vals BLOB NOT NULL, PRIMARY KEY (seq, pos));
";

#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub name: String,
    pub description: String,
    pub dimensions: usize,
    pub metric: Metric,
    pub created_on: String,
    pub modified_on: String,
}

impl IndexConfig {
    /// The `result` of the index endpoints.
    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "config": { "dimensions": self.dimensions, "metric": self.metric.as_str() },
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// An existing id is kept as it is (first write wins).
    /// Source: cloudflare-docs `src/content/docs/vectorize/best-practices/insert-vectors.mdx`
    /// ("inserted twice ... the index would reflect the vector that was added first").
    Insert,
    /// The whole vector is replaced (values, metadata and namespace).
    /// Source: cloudflare-docs `src/content/docs/vectorize/reference/client-api.mdx` ("the
    /// upserted vector replaces the existing vector in full").
    Upsert,
}

/// A validated vector of an insert or upsert (metadata as compact JSON).
pub struct NewVector {
    pub id: String,
    pub namespace: Option<String>,
    pub metadata: Option<String>,
    pub values: Vec<f32>,
}

pub struct StoredVector {
    pub id: String,
    pub namespace: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub written_seq: i64,
    pub values: Vec<f32>,
}

pub struct Info {
    pub vector_count: u64,
    pub mutation: Option<String>,
    pub accepted_ms: Option<i64>,
}

/// The k best vectors of a query, best first, and the metadata indexes
/// (for `returnMetadata: "indexed"`).
pub struct Matches {
    pub found: Vec<(Hit, StoredVector)>,
    pub indexes: BTreeMap<String, Indexed>,
}

/// What a query asks of the store (validated by the handler).
pub struct QueryPlan {
    pub vector: Option<Vec<f32>>,
    pub vector_id: Option<String>,
    pub top_k: usize,
    pub namespace: Option<String>,
    pub filter: Option<Value>,
}

type Res<T> = std::result::Result<T, ApiError>;

/// Inside the store a SQLite failure is the emulator's fault: HTTP 500.
impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        ApiError::internal(format!("vectorize store: {e}"))
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long a deleted index's name answers HTTP 410, code 3005
/// (`vectorize.index.deleted`) instead of 400, code 3000
/// (`vectorize.index.not_found`): both observed on the real API (see
/// /work/shared/reference/cloudflare.md, "Real-service behaviour"; how long
/// Vectorize keeps the first answer is not known). Kept in memory: an
/// emulator restarted since answers 3000, as Vectorize does later on.
pub const DELETED_ANSWER_FOR: Duration = Duration::from_secs(600);

/// What a name refers to.
pub enum Lookup {
    Live(Arc<Index>),
    /// Deleted less than [`DELETED_ANSWER_FOR`] ago.
    Deleted,
    Missing,
}

/// Every index of the emulator.
pub struct Vectorize {
    dir: PathBuf,
    delay_ms: i64,
    indexes: RwLock<BTreeMap<String, Arc<Index>>>,
    /// Names deleted, with when (ms since the epoch).
    deleted: Mutex<HashMap<String, i64>>,
    deleted_for_ms: i64,
    /// Serializes creation and deletion (name check + file).
    create_lock: Mutex<()>,
}

impl Vectorize {
    /// Opens `<data_dir>/vectorize` and every index file in it.
    pub fn open(data_dir: &Path, delay: Duration) -> Result<Vectorize> {
        let dir = data_dir.join("vectorize");
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let mut indexes = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let path = entry.map_err(Error::io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "sqlite") {
                let index = Index::open(&path, delay)?;
                indexes.insert(index.config.name.clone(), Arc::new(index));
            }
        }
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        Ok(Vectorize {
            dir,
            delay_ms,
            indexes: RwLock::new(indexes),
            deleted: Mutex::new(HashMap::new()),
            deleted_for_ms: DELETED_ANSWER_FOR.as_millis() as i64,
            create_lock: Mutex::new(()),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Index>> {
        self.indexes.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// The index of this name, or whether it was deleted lately.
    pub fn lookup(&self, name: &str) -> Lookup {
        if let Some(index) = self.get(name) {
            return Lookup::Live(index);
        }
        let deleted = self.deleted.lock().unwrap_or_else(PoisonError::into_inner);
        match deleted.get(name) {
            Some(&at) if now_ms() - at < self.deleted_for_ms => Lookup::Deleted,
            _ => Lookup::Missing,
        }
    }

    pub fn list(&self) -> Vec<Arc<Index>> {
        self.indexes.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Creates an index; None when the name is taken.
    pub fn create(&self, config: IndexConfig) -> Res<Option<Arc<Index>>> {
        let _one_at_a_time = self.create_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if self.get(&config.name).is_some() {
            return Ok(None);
        }
        let path = self.path(&config.name);
        remove_files(&path); // A leftover of a crash between delete steps.
        let conn = connect(&path).map_err(|e| ApiError::internal(e.to_string()))?;
        conn.execute(
            "INSERT INTO config VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                config.name,
                config.description,
                config.dimensions as i64,
                config.metric.as_str(),
                config.created_on,
                config.modified_on
            ],
        )?;
        let index = Arc::new(Index { config, conn: Mutex::new(conn), delay_ms: self.delay_ms });
        self.deleted.lock().unwrap_or_else(PoisonError::into_inner).remove(&index.config.name);
        self.indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index.config.name.clone(), index.clone());
        Ok(Some(index))
    }

    /// Deletes an index and its file; false when there is none.
    pub fn delete(&self, name: &str) -> bool {
        let _one_at_a_time = self.create_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = self.indexes.write().unwrap_or_else(PoisonError::into_inner).remove(name);
        if removed.is_some() {
            remove_files(&self.path(name));
            self.deleted.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_string(), now_ms());
        }
        removed.is_some()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sqlite"))
    }
}

/// The database and its WAL files (a request still holding the old
/// connection keeps working on the unlinked file).
fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let ctx = |e| Error::Sqlite { context: format!("opening {}", path.display()), source: e };
    let conn = Connection::open(path).map_err(ctx)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).map_err(ctx)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;").map_err(ctx)?;
    conn.execute_batch(SCHEMA).map_err(ctx)?;
    Ok(conn)
}

pub struct Index {
    pub config: IndexConfig,
    conn: Mutex<Connection>,
    delay_ms: i64,
}

impl Index {
    fn open(path: &Path, delay: Duration) -> Result<Index> {
        let conn = connect(path)?;
        let bad = |message: String| Error::Config { setting: path.display().to_string(), message };
        let sql = "SELECT name, description, dimensions, metric, created_on, modified_on FROM config";
        let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(IndexConfig, String)> {
            let (name, description, created_on, modified_on) = (r.get(0)?, r.get(1)?, r.get(4)?, r.get(5)?);
            let dimensions = r.get::<_, i64>(2)? as usize;
            let config = IndexConfig {
                name,
                description,
                dimensions,
                metric: Metric::Cosine,
                created_on,
                modified_on,
            };
            Ok((config, r.get(3)?))
        };
        let (mut config, metric) = conn
            .query_row(sql, [], read)
            .map_err(|e| bad(format!("not a Vectorize index written by pgflare emulate: {e}")))?;
        config.metric = Metric::parse(&metric).ok_or_else(|| bad(format!("unknown metric {metric:?}")))?;
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        Ok(Index { config, conn: Mutex::new(conn), delay_ms })
    }

    /// The connection, with every due mutation applied. A panic while it was
    /// held left at most a rolled-back transaction, so poison is ignored.
    fn session(&self) -> Res<MutexGuard<'_, Connection>> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        apply_due(&mut conn, now_ms().saturating_sub(self.delay_ms))?;
        Ok(conn)
    }

    pub fn write_vectors(&self, kind: WriteKind, vectors: &[NewVector]) -> Res<String> {
        let mut conn = self.session()?;
        let kind = if kind == WriteKind::Insert { "insert" } else { "upsert" };
        enqueue(&mut conn, self.delay_ms, kind, None, vectors)
    }

    pub fn delete_ids(&self, ids: &[String]) -> Res<String> {
        let mut conn = self.session()?;
        let payload = serde_json::to_string(ids).map_err(|e| ApiError::internal(e.to_string()))?;
        enqueue(&mut conn, self.delay_ms, "delete", Some(payload), &[])
    }

    /// Accepts a metadata index creation, refused when the property already
    /// has one or the index has 10, counting mutations not yet applied.
    pub fn create_metadata_index(&self, property: &str, t: IndexType) -> Res<String> {
        let mut conn = self.session()?;
        let projected = projected_metadata_indexes(&conn)?;
        if projected.contains(property) {
            // The real answer is not known (a duplicate has been reported
            // both refused and accepted): refused, with HTTP 400 as
            // Vectorize's other refusals, so no client relies on a 409.
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                CODE_METADATA_INDEX,
                format!("a metadata index on property {property:?} already exists (or is being created)"),
            ));
        }
        if projected.len() >= MAX_METADATA_INDEXES {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                CODE_METADATA_INDEX,
                format!(
                    "index {} already has {MAX_METADATA_INDEXES} metadata indexes, the limit; delete one first",
                    self.config.name
                ),
            ));
        }
        let payload = json!({ "propertyName": property, "indexType": t.as_str() }).to_string();
        enqueue(&mut conn, self.delay_ms, "meta_create", Some(payload), &[])
    }

    pub fn delete_metadata_index(&self, property: &str) -> Res<String> {
        let mut conn = self.session()?;
        if !projected_metadata_indexes(&conn)?.contains(property) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                CODE_METADATA_INDEX,
                format!("index {} has no metadata index on property {property:?}", self.config.name),
            ));
        }
        let payload = json!({ "propertyName": property }).to_string();
        enqueue(&mut conn, self.delay_ms, "meta_delete", Some(payload), &[])
    }

    /// The visible metadata indexes, by property name.
    pub fn metadata_indexes(&self) -> Res<BTreeMap<String, Indexed>> {
        metadata_indexes(&*self.session()?)
    }

    /// The visible vectors of these ids, in request order, each once.
    pub fn get_by_ids(&self, ids: &[String]) -> Res<Vec<StoredVector>> {
        let conn = self.session()?;
        let mut st = conn
            .prepare_cached("SELECT id, namespace, metadata, written_seq, vals FROM vectors WHERE id = ?1")?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
            if let Some(v) = st.query_row([id], stored).optional()? {
                out.push(v);
            }
        }
        Ok(out)
    }

    pub fn info(&self) -> Res<Info> {
        let conn = self.session()?;
        let vector_count: i64 = conn.query_row("SELECT count(*) FROM vectors", [], |r| r.get(0))?;
        let (mutation, accepted_ms) =
            conn.query_row("SELECT mutation, accepted_ms FROM progress", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Info { vector_count: vector_count as u64, mutation, accepted_ms })
    }

    /// Up to `count` ids after `after`, by id; with the total and whether more follow.
    pub fn list_ids(&self, after: Option<&str>, count: usize) -> Res<(Vec<String>, u64, bool)> {
        let conn = self.session()?;
        let total: i64 = conn.query_row("SELECT count(*) FROM vectors", [], |r| r.get(0))?;
        let mut st =
            conn.prepare_cached("SELECT id FROM vectors WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2")?;
        let mut ids = st
            .query_map(params![after, count as i64 + 1], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let more = ids.len() > count;
        ids.truncate(count);
        Ok((ids, total as u64, more))
    }

    /// Exact top-k: scores every visible vector passing the namespace and
    /// filter, then reads back the k best.
    pub fn query(&self, plan: &QueryPlan) -> Res<Matches> {
        let conn = self.session()?;
        let indexes = metadata_indexes(&conn)?;
        let filter = match &plan.filter {
            Some(f) => vq::Filter::parse(f, &indexes).map_err(|m| ApiError::bad(CODE_FILTER, m))?,
            None => vq::Filter::default(),
        };
        let query = match (&plan.vector, &plan.vector_id) {
            (Some(v), _) => v.clone(),
            (None, Some(id)) => {
                let found = conn
                    .query_row("SELECT vals FROM vectors WHERE id = ?1", [id], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?;
                vq::from_blob(&found.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        CODE_QUERY,
                        format!("vectorId {id:?}: no visible vector has this id"),
                    )
                })?)
            }
            (None, None) => Vec::new(),
        };
        let scorer = Scorer::new(self.config.metric, &query);
        let mut st = conn.prepare_cached(
            "SELECT rowid, id, written_seq, vals, CASE WHEN ?2 THEN metadata END FROM vectors \
                 WHERE ?1 IS NULL OR namespace = ?1",
        )?;
        let mut rows = st.query(params![plan.namespace, !filter.is_empty()])?;
        let mut hits = Vec::new();
        while let Some(r) = rows.next()? {
            if !filter.is_empty() {
                let text: Option<String> = r.get(4)?;
                let metadata = text.and_then(|t| serde_json::from_str::<Map<String, Value>>(&t).ok());
                if !filter.matches(metadata.as_ref(), r.get(2)?) {
                    continue;
                }
            }
            let blob = r.get_ref(3)?.as_blob().map_err(|e| ApiError::internal(e.to_string()))?;
            hits.push(Hit { score: scorer.score(blob), id: r.get(1)?, rowid: r.get(0)? });
        }
        drop(rows);
        let mut by_rowid = conn.prepare_cached(
            "SELECT id, namespace, metadata, written_seq, vals FROM vectors WHERE rowid = ?1",
        )?;
        let mut out = Vec::new();
        for hit in vq::top_k(hits, self.config.metric, plan.top_k) {
            let v = by_rowid.query_row([hit.rowid], stored)?;
            out.push((hit, v));
        }
        Ok(Matches { found: out, indexes })
    }
}

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredVector> {
    let metadata: Option<String> = r.get(2)?;
    Ok(StoredVector {
        id: r.get(0)?,
        namespace: r.get(1)?,
        metadata: metadata.and_then(|t| serde_json::from_str(&t).ok()),
        written_seq: r.get(3)?,
        values: vq::from_blob(&r.get::<_, Vec<u8>>(4)?),
    })
}

pub fn metadata_indexes(conn: &Connection) -> Res<BTreeMap<String, Indexed>> {
    let mut st = conn.prepare_cached("SELECT property, index_type, created_seq FROM metadata_indexes")?;
    let rows =
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (property, t, created_seq) = row?;
        let index_type = IndexType::parse(&t).unwrap_or(IndexType::String);
        out.insert(property, Indexed { index_type, created_seq });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "vectorize_store_tests.rs"]
mod tests;
