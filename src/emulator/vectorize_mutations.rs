//! The asynchronous side of the emulated Vectorize: every write is first
//! stored as a pending mutation (a UUID, its accept time, its kind and
//! payload, its vectors in `pending_vectors`), then applied once it is due,
//! strictly in acceptance order, in the index's SQLite file. Applying is
//! lazy: [`apply_due`] runs when a request reaches the index.
//! Source: cloudflare-docs `src/content/docs/vectorize/reference/client-api.mdx` (writes are
//! asynchronous, each answers a mutation identifier); cloudflare/workerd
//! `types/defines/vectorize.d.ts` (`processedUpToMutation`: "All changes before this mutation will
//! be reflected in the index state", so mutations apply in order).

use std::collections::HashSet;

use rusqlite::{params, Connection};
use serde_json::Value;

use super::envelope::ApiError;
use super::vectorize_query as vq;
use super::vectorize_store::{metadata_indexes, now_ms, NewVector};

type Res<T> = std::result::Result<T, ApiError>;

/// Accepts a mutation: stores it with its vectors, returns its id.
pub fn enqueue(
    conn: &mut Connection,
    delay_ms: i64,
    kind: &str,
    payload: Option<String>,
    vectors: &[NewVector],
) -> Res<String> {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string();
    let tx = conn.transaction()?;
    let last: i64 = tx.query_row("SELECT last_accepted_ms FROM progress", [], |r| r.get(0))?;
    // Never earlier than the previous one: due mutations must be a prefix.
    let accepted = now_ms().max(last);
    tx.execute(
        "INSERT INTO mutations (uuid, accepted_ms, kind, payload) VALUES (?1, ?2, ?3, ?4)",
        params![uuid, accepted, kind, payload],
    )?;
    let seq = tx.last_insert_rowid();
    {
        let mut st = tx.prepare_cached("INSERT INTO pending_vectors VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        for (pos, v) in vectors.iter().enumerate() {
            st.execute(params![seq, pos as i64, v.id, v.namespace, v.metadata, vq::to_blob(&v.values)])?;
        }
    }
    tx.execute("UPDATE progress SET last_accepted_ms = ?1", [accepted])?;
    tx.commit()?;
    apply_due(conn, now_ms().saturating_sub(delay_ms))?;
    Ok(uuid)
}

/// The properties that will have a metadata index once every accepted
/// mutation is applied.
pub fn projected_metadata_indexes(conn: &Connection) -> Res<HashSet<String>> {
    let mut set: HashSet<String> = metadata_indexes(conn)?.into_keys().collect();
    let mut st =
        conn.prepare_cached("SELECT kind, payload FROM mutations WHERE kind LIKE 'meta_%' ORDER BY seq")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (kind, payload) = row?;
        let p: Value = serde_json::from_str(&payload).unwrap_or_default();
        let property = p["propertyName"].as_str().unwrap_or_default().to_string();
        if kind == "meta_create" {
            set.insert(property);
        } else {
            set.remove(&property);
        }
    }
    Ok(set)
}

/// Applies, in one transaction and in acceptance order, every mutation
/// accepted at or before `cutoff_ms`.
pub fn apply_due(conn: &mut Connection, cutoff_ms: i64) -> Res<()> {
    let due: Vec<(i64, String, i64, String, Option<String>)> = {
        let mut st = conn
            .prepare_cached(
                "SELECT seq, uuid, accepted_ms, kind, payload FROM mutations WHERE accepted_ms <= ?1 ORDER BY seq",
            )
            ?;
        let rows =
            st.query_map([cutoff_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let Some((_, last_uuid, last_ms, _, _)) = due.last().cloned() else { return Ok(()) };
    let tx = conn.transaction()?;
    for (seq, _, _, kind, payload) in &due {
        let payload: Value =
            payload.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
        let property = payload["propertyName"].as_str().unwrap_or_default();
        match kind.as_str() {
            "insert" | "upsert" => {
                let verb = if kind == "insert" { "INSERT OR IGNORE" } else { "INSERT OR REPLACE" };
                // Rows go in `pos` order: within one request the first
                // insert of an id wins, the last upsert of it wins.
                let sql_text = format!(
                    "{verb} INTO vectors (id, namespace, metadata, written_seq, vals) \
                     SELECT id, namespace, metadata, seq, vals FROM pending_vectors WHERE seq = ?1 ORDER BY pos"
                );
                tx.execute(&sql_text, [seq])?;
                tx.execute("DELETE FROM pending_vectors WHERE seq = ?1", [seq])?;
            }
            "delete" => {
                let mut st = tx.prepare_cached("DELETE FROM vectors WHERE id = ?1")?;
                for id in payload.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    st.execute([id])?;
                }
            }
            "meta_create" => {
                let t = payload["indexType"].as_str().unwrap_or("string");
                tx.execute(
                    "INSERT OR REPLACE INTO metadata_indexes VALUES (?1, ?2, ?3)",
                    params![property, t, seq],
                )?;
            }
            "meta_delete" => {
                tx.execute("DELETE FROM metadata_indexes WHERE property = ?1", [property])?;
            }
            other => return Err(ApiError::internal(format!("unknown pending mutation kind {other:?}"))),
        }
        tx.execute("DELETE FROM mutations WHERE seq = ?1", [seq])?;
    }
    tx.execute("UPDATE progress SET mutation = ?1, accepted_ms = ?2", params![last_uuid, last_ms])?;
    Ok(tx.commit()?)
}
