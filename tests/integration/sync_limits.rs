//! `pgflare sync` after many deletes, against the emulator (which enforces
//! D1's SQL limits): the hard-delete sweep and the deletes it sends stay
//! within D1's expression depth, statement size and VDBE program size
//! whatever the number of deleted keys and differing buckets, for uuid keys
//! (prefix buckets), integer keys (shifted buckets) and composite keys (the
//! full sweep). Each run is followed by a clean `pgflare verify`.

use super::sync::{assert_consistent, setup_with, Setup};
use crate::common::table;

fn d1_count(s: &Setup, table: &str) -> i64 {
    s.d1().query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).expect("count")
}

fn source_count(s: &Setup, table: &str) -> i64 {
    s.db.query_one(&format!("SELECT count(*)::text FROM {table}")).parse().expect("count")
}

/// One `sync --once` that must succeed; returns its summary.
fn sync_ok(s: &Setup) -> serde_json::Value {
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    r
}

/// Runs `delete` on the source, then one sync that must succeed and
/// delete exactly the chunks that went, reading back more than
/// `min_buckets` differing buckets; D1 then matches the source (verify).
fn chunks_deleted_and_synced(s: &Setup, delete: &str, min_gone: i64, min_buckets: u64) -> serde_json::Value {
    let before = source_count(s, "chunks");
    s.db.exec(delete);
    let gone = before - source_count(s, "chunks");
    assert!(gone >= min_gone, "{gone} chunks deleted");
    let r = sync_ok(s);
    let sw = &table(&r, "public.chunks")["sweep"];
    assert!(sw["buckets_differing"].as_u64().expect("n") > min_buckets, "{r:#}");
    assert_eq!(sw["deleted"]["rows"].as_i64(), Some(gone), "{r:#}");
    assert_eq!(d1_count(s, "chunks"), source_count(s, "chunks"));
    assert_consistent(s);
    r
}

#[test]
fn sync_after_deleting_many_uuid_rows_stays_within_d1_expression_depth() {
    let s = setup_with("limuuid", 6000, 4, &[], "", "");
    // The first run reads D1's keys once and saves its key buckets; the
    // next ones read back only the buckets that differ.
    sync_ok(&s);
    // Twenty documents with their chunks (the cascade deletes ~400 chunks
    // spread over as many uuid-prefix buckets).
    let r = chunks_deleted_and_synced(
        &s,
        "DELETE FROM documents WHERE id IN (SELECT id FROM documents ORDER BY md5(id::text) LIMIT 20)",
        100,
        200,
    );
    assert_eq!(table(&r, "public.documents")["sweep"]["deleted"]["rows"].as_u64(), Some(20), "{r:#}");
    // A bigger volume: a quarter of the remaining chunks, across most of
    // the 4096 buckets.
    chunks_deleted_and_synced(
        &s,
        "DELETE FROM chunks WHERE get_byte(decode(md5(id::text), 'hex'), 0) < 64",
        1000,
        700,
    );
}

#[test]
fn sync_after_deleting_many_integer_and_composite_key_rows_stays_within_d1_limits() {
    // Narrow rows: 100 KB statements would hold thousands of them.
    let extra = "CREATE TABLE events (id bigint PRIMARY KEY, note text NOT NULL);
        INSERT INTO events SELECT g, 'event ' || g FROM generate_series(1, 20000) g;
        CREATE TABLE pairs (a integer NOT NULL, b text NOT NULL, note text, PRIMARY KEY (a, b));
        INSERT INTO pairs SELECT g / 4, 'b' || (g % 4), 'n' FROM generate_series(1, 24000) g;";
    let s = setup_with("limkeys", 300, 4, &[], "", extra);
    assert_eq!(d1_count(&s, "events"), 20_000);
    sync_ok(&s);

    // Integer keys (shifted buckets, about 8 keys each): 40% of the keys,
    // away from both ends so the bucket width stays the same.
    s.db.exec("DELETE FROM events WHERE id % 5 < 2 AND id BETWEEN 100 AND 19900");
    // Composite keys (the full sweep): a third of the rows.
    s.db.exec("DELETE FROM pairs WHERE a % 3 = 0");
    let gone_events = 20_000 - source_count(&s, "events");
    let gone_pairs = 24_000 - source_count(&s, "pairs");
    assert!(gone_events > 7000 && gone_pairs > 7000, "{gone_events} {gone_pairs}");
    let r = sync_ok(&s);
    let events = &table(&r, "public.events")["sweep"];
    assert!(events["buckets_differing"].as_u64().expect("n") > 1000, "{r:#}");
    assert_eq!(events["deleted"]["rows"].as_i64(), Some(gone_events), "{r:#}");
    assert_eq!(table(&r, "public.pairs")["sweep"]["deleted"]["rows"].as_i64(), Some(gone_pairs), "{r:#}");
    for t in ["events", "pairs"] {
        assert_eq!(d1_count(&s, t), source_count(&s, t), "{t}");
    }
    assert_consistent(&s);
}
