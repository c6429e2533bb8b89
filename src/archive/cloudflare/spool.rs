//! The Vectorize side of an archive of Cloudflare: every vector of the
//! index, listed (`list`, cursor pages of 1,000 ids) and fetched
//! (`get_by_ids`, 20 ids a request: values, metadata, namespace) into a
//! local SQLite spool, so that an index of millions is never held in
//! memory and the rows can look their vectors up by id. The index's `info`
//! before and after says whether it applied writes meanwhile. On the real
//! API the read is bounded by the request budget: the progress line says
//! how many requests the budget has left and when the read should end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};

use crate::cloudflare::limits::VECTORIZE_MAX_GET_IDS;
use crate::cloudflare::vectorize::{IndexConfig, StoredVector};
use crate::cloudflare::Vectorize;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::archive::manifest::VectorizeRead;

/// Ids fetched per step: 25 `get_by_ids` requests, 4 in flight at a time
/// (the client's pace); the progress line moves once a step. Measured on
/// the emulator (5,000 x 1536, debug build): steps of 4 requests and of 25
/// both took 28 s, as long as `verify` takes to read the same vectors.
const STEP: usize = 25 * VECTORIZE_MAX_GET_IDS;
/// Ids per `list` page (its most).
const PER_PAGE: u64 = 1000;

/// The spool: one row per listed id.
pub struct Spool {
    pub conn: Connection,
    pub path: PathBuf,
    pub read: VectorizeRead,
    pub notes: Vec<String>,
}

/// A vector the spool holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub namespace: Option<String>,
    /// The metadata as JSON text (`None` when it has none).
    pub metadata: Option<String>,
    pub values: Vec<f32>,
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::sqlite(format!("the vector spool {}", path.display()))(e)
}

/// Requests the read of `vectors` vectors takes: `info` twice, the list
/// pages, the fetches.
pub fn requests_for(vectors: u64) -> u64 {
    2 + vectors.div_ceil(PER_PAGE).max(1) + vectors.div_ceil(VECTORIZE_MAX_GET_IDS as u64)
}

impl Spool {
    /// Lists and fetches every vector of `index` (whose configuration is
    /// `config`) into a new spool under `work`.
    pub async fn fill(
        index: &Vectorize,
        config: &IndexConfig,
        work: &Path,
        progress: &Progress,
    ) -> Result<Spool> {
        let path = work.join("vectorize-spool.sqlite");
        if path.exists() {
            std::fs::remove_file(&path).map_err(Error::io(&path))?;
        }
        let mut conn = Connection::open(&path).map_err(sql_err(&path))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE v (id TEXT PRIMARY KEY, fetched INTEGER NOT NULL DEFAULT 0, namespace TEXT,
                             metadata TEXT, vals BLOB, used INTEGER NOT NULL DEFAULT 0, reason TEXT)",
        )
        .map_err(sql_err(&path))?;
        let read_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let before = index.info().await?;
        let started = Instant::now();
        let listed = list(index, &mut conn, &path, before.vector_count, progress).await?;
        let (fetched, vanished) = fetch(index, &mut conn, &path, listed, started, progress).await?;
        let after = index.info().await?;
        let mut notes = Vec::new();
        if before.processed_up_to_mutation != after.processed_up_to_mutation {
            notes.push(format!(
                "the Vectorize index applied writes while it was read (processedUpToMutation {} -> {}): stop \
                 the writers and archive again for one point in time",
                before.processed_up_to_mutation.as_deref().unwrap_or("none"),
                after.processed_up_to_mutation.as_deref().unwrap_or("none")
            ));
        }
        if vanished > 0 {
            notes.push(format!(
                "{vanished} listed vector ids were gone when fetched (deleted during the read)"
            ));
        }
        let read = VectorizeRead {
            index: index.index().to_string(),
            dimensions: config.dimensions,
            metric: config.metric.clone(),
            vector_count: after.vector_count,
            mutation_before: before.processed_up_to_mutation,
            mutation_after: after.processed_up_to_mutation,
            processed_up_to: after.processed_up_to_datetime,
            listed,
            fetched,
            vanished,
            read_at,
            ..VectorizeRead::default()
        };
        Ok(Spool { conn, path, read, notes })
    }

    /// The vector of `id`, when the index had it; marks it used (its row
    /// holds it) with `reason` set when it is also kept in the side table.
    pub fn take(&self, id: &str) -> Result<Option<Held>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT namespace, metadata, vals FROM v WHERE id = ?1 AND fetched = 1")
            .map_err(sql_err(&self.path))?;
        let found = st
            .query_row([id], |r| Ok((r.get::<_, Option<String>>(0)?, r.get(1)?, r.get::<_, Vec<u8>>(2)?)))
            .optional()
            .map_err(sql_err(&self.path))?;
        let Some((namespace, metadata, blob)) = found else { return Ok(None) };
        let mut up =
            self.conn.prepare_cached("UPDATE v SET used = 1 WHERE id = ?1").map_err(sql_err(&self.path))?;
        up.execute([id]).map_err(sql_err(&self.path))?;
        Ok(Some(Held { namespace, metadata, values: floats(&blob) }))
    }

    /// Keeps the vector of `id` in the side table too, for `reason`.
    pub fn set_aside(&self, id: &str, reason: &str) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached("UPDATE v SET reason = ?2 WHERE id = ?1")
            .map_err(sql_err(&self.path))?;
        st.execute(params![id, reason]).map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// Runs `f` in one transaction (a batch's lookups and marks).
    pub fn batch<T>(&mut self, f: impl FnOnce(&Spool) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN").map_err(sql_err(&self.path))?;
        let out = f(self);
        self.conn
            .execute_batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .map_err(sql_err(&self.path))?;
        out
    }

    /// Every vector for the side table, by id: those no row took
    /// (`no_row`) and those set aside, `each(id, reason, held)`.
    pub fn side_rows(&self, each: &mut dyn FnMut(String, String, Held) -> Result<()>) -> Result<()> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, coalesce(reason, 'no_row'), namespace, metadata, vals FROM v
                  WHERE fetched = 1 AND (used = 0 OR reason IS NOT NULL) ORDER BY id",
            )
            .map_err(sql_err(&self.path))?;
        let mut rows = st.query([]).map_err(sql_err(&self.path))?;
        while let Some(r) = rows.next().map_err(sql_err(&self.path))? {
            let get = |i| r.get::<_, Option<String>>(i);
            let (id, reason) =
                (r.get(0).map_err(sql_err(&self.path))?, r.get(1).map_err(sql_err(&self.path))?);
            let blob: Vec<u8> = r.get(4).map_err(sql_err(&self.path))?;
            let held = Held {
                namespace: get(2).map_err(sql_err(&self.path))?,
                metadata: get(3).map_err(sql_err(&self.path))?,
                values: floats(&blob),
            };
            each(id, reason, held)?;
        }
        Ok(())
    }

    /// How many vectors went into rows, and how many are set aside, by reason.
    pub fn tally(&mut self) -> Result<()> {
        let p = self.path.clone();
        self.read.in_rows = self
            .conn
            .query_row("SELECT count(*) FROM v WHERE used = 1", [], |r| r.get::<_, i64>(0))
            .map_err(sql_err(&p))? as u64;
        let mut st = self
            .conn
            .prepare(
                "SELECT coalesce(reason, 'no_row'), count(*) FROM v
                  WHERE fetched = 1 AND (used = 0 OR reason IS NOT NULL) GROUP BY 1",
            )
            .map_err(sql_err(&p))?;
        let counts = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(sql_err(&p))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err(&p))?;
        self.read.set_aside = counts.into_iter().collect();
        Ok(())
    }
}

/// float32 values from their little-endian bytes.
fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// Lists every id into the spool; returns how many.
async fn list(
    index: &Vectorize,
    conn: &mut Connection,
    path: &Path,
    expected: Option<u64>,
    progress: &Progress,
) -> Result<u64> {
    let bar = progress.rows("vector ids", expected);
    let b = bar.clone();
    let n = index
        .list_pages(&mut |page| {
            let tx = conn.transaction().map_err(sql_err(path))?;
            {
                let mut st =
                    tx.prepare_cached("INSERT OR IGNORE INTO v (id) VALUES (?1)").map_err(sql_err(path))?;
                for id in &page {
                    st.execute([id]).map_err(sql_err(path))?;
                }
            }
            tx.commit().map_err(sql_err(path))?;
            b.inc(page.len() as u64);
            Ok(())
        })
        .await?;
    bar.finish_and_clear();
    Ok(n)
}

/// Fetches every listed id, [`STEP`] at a time in id order; returns how
/// many were fetched and how many were gone.
async fn fetch(
    index: &Vectorize,
    conn: &mut Connection,
    path: &Path,
    listed: u64,
    started: Instant,
    progress: &Progress,
) -> Result<(u64, u64)> {
    let bar = progress.rows("vectors", Some(listed));
    let (mut last, mut fetched, mut vanished, mut requests) = (String::new(), 0u64, 0u64, 0u64);
    loop {
        let ids: Vec<String> = {
            let mut st = conn
                .prepare_cached("SELECT id FROM v WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(sql_err(path))?;
            let got = st.query_map(params![last, STEP as i64], |r| r.get(0)).map_err(sql_err(path))?;
            got.collect::<rusqlite::Result<_>>().map_err(sql_err(path))?
        };
        let Some(tail) = ids.last().cloned() else { break };
        let got = index.get_by_ids(&ids).await?;
        requests += ids.len().div_ceil(VECTORIZE_MAX_GET_IDS) as u64;
        fetched += got.len() as u64;
        vanished += (ids.len() - got.len().min(ids.len())) as u64;
        store(conn, path, &got)?;
        bar.inc(ids.len() as u64);
        let left = listed.saturating_sub(bar.position());
        bar.set_message(budget_line(index, left.div_ceil(VECTORIZE_MAX_GET_IDS as u64), requests, started));
        last = tail;
    }
    bar.finish_and_clear();
    Ok((fetched, vanished))
}

/// Records fetched vectors (their ids were listed).
fn store(conn: &mut Connection, path: &Path, got: &[StoredVector]) -> Result<()> {
    let tx = conn.transaction().map_err(sql_err(path))?;
    {
        let mut st = tx
            .prepare_cached(
                "UPDATE v SET fetched = 1, namespace = ?2, metadata = ?3, vals = ?4 WHERE id = ?1",
            )
            .map_err(sql_err(path))?;
        for s in got {
            let namespace = s.namespace.as_deref().filter(|n| !n.is_empty());
            let metadata = s.metadata.as_ref().filter(|m| !m.is_null()).map(|m| m.to_string());
            st.execute(params![s.id, namespace, metadata, bytes(&s.values)]).map_err(sql_err(path))?;
        }
    }
    tx.commit().map_err(sql_err(path))
}

/// `requests left of the budget, requests to go, ETA`: what bounds a read
/// over the real API.
fn budget_line(index: &Vectorize, to_go: u64, done: u64, started: Instant) -> String {
    let (left, per, window) = index.api().budget();
    let pace = started.elapsed().checked_div(done.max(1) as u32).unwrap_or_default();
    let eta = crate::cloudflare::ratelimit::eta(to_go, left.unwrap_or(0) as u64, per, window, pace);
    format!(
        "{} requests left of {per} per {}, ~{to_go} to go, ETA {}",
        left.map_or("no".to_string(), |l| l.to_string()),
        crate::timeouts::human(window),
        crate::timeouts::human(eta)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_every_float32_bit_through_the_spool() {
        let v = [f32::from_bits(1), -0.0, f32::MAX, 1.5, f32::MIN_POSITIVE];
        let back = floats(&bytes(&v));
        assert_eq!(
            back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_request_estimate_counts_list_pages_and_fetches() {
        assert_eq!(requests_for(0), 3);
        assert_eq!(requests_for(20_000), 2 + 20 + 1000);
    }
}
