//! Which ids hold a vector in the index, as far as sync can tell cheaply,
//! so that vector deletes are sent, and counted, only where they can
//! remove something. `pgflare_vector_digests` (in D1) records per id the
//! digest of the vector sync last sent or found in the index, or
//! [`NO_VECTOR`] once sync deleted it (or found its row had none). For an
//! id with no record (its row came from `load`), up to a budget per key
//! range is looked up in the index (`get_by_ids`, 20 ids per request);
//! beyond it, the id is taken as holding one. Deletes stay idempotent: a
//! delete of an id without a vector changes nothing, so a wrong "may hold
//! one" costs a request and a count, never data. A wrong "holds none"
//! would leave a stale vector behind, so the records are forgotten
//! whenever something other than sync writes the index ([`forget_all`],
//! run by `load`).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::cloudflare::limits::VECTORIZE_MAX_ID_BYTES;
use crate::cloudflare::Vectorize;
use crate::error::Result;
use crate::plan::access::D1Access;
use crate::sink::d1::list::ListPacker;
use crate::sink::d1::value::push_quoted;

/// The record of an id that holds no vector: sync deleted it, or found
/// none. Never a digest (those are 64 hex digits), so a vector written
/// later always differs from it and is sent.
pub const NO_VECTOR: &str = "none";

/// Ids without a record looked up in the index, per key range.
pub const CHECK_STORED: usize = 200;

/// Whether Vectorize would take `id` as a vector id at all (1 to 64
/// bytes): any other cannot hold a vector, so asking about it is wasted.
pub fn is_vector_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= VECTORIZE_MAX_ID_BYTES
}

/// The records of `ids` (a digest, or [`NO_VECTOR`]). The ids go as one
/// JSON parameter; a thousand of them (at most 64 bytes each) keep it far
/// below D1's 2,000,000 bytes per value.
pub async fn recorded(d1: &D1Access, ids: &[&str]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(1000) {
        let list = Value::Array(chunk.iter().map(|i| json!(i)).collect());
        let rows = d1
            .select(
                "reading the digests of vectors last sent",
                "SELECT id, digest FROM pgflare_vector_digests WHERE id IN (SELECT value FROM json_each(?1))",
                &[Value::String(list.to_string())],
            )
            .await?;
        out.extend(rows.into_iter().filter_map(|r| {
            Some((r.get("id")?.as_str()?.to_string(), r.get("digest")?.as_str()?.to_string()))
        }));
    }
    Ok(out)
}

/// The ids of `ids` that may hold a vector, in their order: those with a
/// digest recorded, those without a record found in `index` (at most
/// `budget` are looked up, and the budget is spent), and those without a
/// record that could not be looked up (beyond the budget, or no index:
/// NDJSON files).
pub async fn may_hold(
    d1: &D1Access,
    index: Option<&Vectorize>,
    ids: &[String],
    budget: &mut usize,
) -> Result<Vec<String>> {
    let ids: Vec<&String> = ids.iter().filter(|id| is_vector_id(id)).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let known = recorded(d1, &ids.iter().map(|id| id.as_str()).collect::<Vec<_>>()).await?;
    let unknown: Vec<String> =
        ids.iter().filter(|i| !known.contains_key(**i)).map(|i| i.to_string()).collect();
    let ask = match index {
        Some(_) => &unknown[..unknown.len().min(*budget)],
        None => &[][..],
    };
    *budget -= ask.len();
    let found: HashSet<String> = match index {
        Some(index) if !ask.is_empty() => index.get_by_ids(ask).await?.into_iter().map(|v| v.id).collect(),
        _ => HashSet::new(),
    };
    let asked: HashSet<&String> = ask.iter().collect();
    Ok(ids
        .into_iter()
        .filter(|id| match known.get(*id) {
            Some(d) => d != NO_VECTOR,
            None => found.contains(*id) || !asked.contains(id),
        })
        .cloned()
        .collect())
}

/// Forgets every record: after something else wrote the index (a load),
/// they no longer say what it holds.
pub async fn forget_all(d1: &D1Access) -> Result<()> {
    d1.execute("forgetting the digests of vectors sync sent", "DELETE FROM pgflare_vector_digests;").await
}

/// Appends the statements that record `(id, digest)` pairs (the last of
/// an id wins), within D1's limits.
pub fn record_digests(sql: &mut String, record: &[(String, String)]) {
    let mut packer = ListPacker::new(
        "INSERT INTO pgflare_vector_digests (id, digest) VALUES ",
        " ON CONFLICT(id) DO UPDATE SET digest = excluded.digest;\n",
    );
    let mut tuple = String::new();
    for (id, digest) in record {
        tuple.clear();
        tuple.push('(');
        push_quoted(&mut tuple, id);
        tuple.push_str(", ");
        push_quoted(&mut tuple, digest);
        tuple.push(')');
        // Vectorize ids are at most 64 bytes, so a row always fits; one
        // that did not would only mean its vector is sent again.
        packer.push(&tuple, 2);
    }
    packer.finish().iter().for_each(|s| sql.push_str(s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_ids_that_may_hold_a_vector_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c =
            crate::sink::d1::sqlite::D1SqliteConfig::open(&dir.path().join("d.sqlite"), Default::default())
                .expect("open");
        c.execute("setup", crate::state::store::STATE_DDL).expect("setup");
        let mut sql = String::new();
        let record = |id: &str, d: &str| (id.to_string(), d.to_string());
        record_digests(&mut sql, &[record("sent", &"a".repeat(64)), record("deleted", NO_VECTOR)]);
        c.execute("record", &sql).expect("record");
        let d1 = D1Access::Sqlite(c);
        let ids: Vec<String> =
            ["loaded", "sent", "deleted", "loaded2"].iter().map(|s| s.to_string()).collect();
        // No index to ask (NDJSON files): an id without a record may hold
        // one, unless Vectorize would not take it as an id.
        let mut budget = 1;
        let kept = may_hold(&d1, None, &ids, &mut budget).await.expect("may hold");
        assert_eq!(kept, ["loaded", "sent", "loaded2"]);
        assert_eq!(budget, 1, "nothing was looked up");
        let none: &[String] = &[];
        assert_eq!(may_hold(&d1, None, none, &mut budget).await.expect("empty"), none);
        forget_all(&d1).await.expect("forget");
        assert!(recorded(&d1, &["sent", "deleted"]).await.expect("recorded").is_empty());
    }
}
