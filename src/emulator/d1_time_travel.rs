//! D1's Time Travel bookmark, `GET .../d1/database/{id}/time_travel/bookmark`
//! -> `{bookmark}` (cloudflare-typescript
//! `src/resources/d1/database/time-travel.ts`, `getBookmark` and
//! `TimeTravelGetBookmarkResponse`). A bookmark names a state of the
//! database; "Bookmarks are lexicographically sortable. Sorting orders a
//! list of bookmarks from oldest-to-newest" (cloudflare-docs
//! `d1/reference/time-travel`), and they look like
//! `00000001-00000002-00004e2f-0a83ea2fceebc654de0640c422be4653` (the
//! example of Cloudflare's OpenAPI schema, `d1_time-travel-bookmark`).
//!
//! The emulator keeps no history: it answers the current state only, and
//! refuses a `timestamp` (which asks for the bookmark at or before a past
//! time) with a message that says so. The state is named by the SQLite
//! file's change counter (the 4-byte big-endian integer at offset 24 of
//! the header, "incremented whenever the database file is unlocked after
//! having been modified": sqlite.org/fileformat2.html, section 1.3.7; the
//! emulator's files use the rollback journal, where it is kept), so the
//! bookmark changes with every write that commits, stays the same while
//! nothing is written, survives a restart, and sorts like D1's.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::json;

use super::d1::{blocking, schema_error};
use super::d1_store::Db;
use super::envelope::{ok, ApiError};
use super::State as Shared;

/// `GET time_travel/bookmark`.
pub async fn bookmark(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    if let Some(t) = q.get("timestamp") {
        return Err(schema_error(format!(
            "timestamp `{t}`: pgflare emulate keeps no Time Travel history; ask for the current bookmark \
             (no timestamp)"
        )));
    }
    let db = st.d1.db(&id)?;
    let bm = blocking(move || current(&db).map_err(ApiError::internal)).await?;
    Ok(ok(json!({ "bookmark": bm })))
}

/// The bookmark of the database's current state.
pub fn current(db: &Db) -> std::result::Result<String, String> {
    // Held while reading: no write is half done.
    let conn = db.lock();
    let path = conn.with_internal(|c| Ok(c.path().map(str::to_string))).map_err(|e| e.to_string())?;
    let counter = match path {
        Some(p) => change_counter(std::path::Path::new(&p)).map_err(|e| format!("reading {p}: {e}"))?,
        None => 0,
    };
    Ok(format_bookmark(&db.record.uuid, counter))
}

/// The file change counter; 0 for a file nothing was written to yet.
fn change_counter(path: &std::path::Path) -> std::io::Result<u32> {
    let mut header = [0u8; 28];
    let mut f = std::fs::File::open(path)?;
    match f.read_exact(&mut header) {
        Ok(()) => Ok(u32::from_be_bytes([header[24], header[25], header[26], header[27]])),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(e),
    }
}

/// D1's form: three 8-digit hex fields, the first ordering the states,
/// then 32 hex digits (here derived from the database and the state).
fn format_bookmark(uuid: &str, counter: u32) -> String {
    let tail = blake3::hash(format!("{uuid}:{counter}").as_bytes()).to_hex();
    format!("{counter:08x}-00000000-00000000-{}", &tail[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_sort_as_the_states_they_name() {
        let a = format_bookmark("db1", 9);
        let b = format_bookmark("db1", 10);
        assert!(a < b, "{a} < {b}");
        assert_eq!(a, format_bookmark("db1", 9), "one state, one bookmark");
        assert_ne!(a, format_bookmark("db2", 9));
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 8, 8, 32]);
    }
}
