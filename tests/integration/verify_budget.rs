//! `load` and `verify` within Cloudflare's request budget (issue 18): the
//! load's upserts are packed to 5,000 vectors across key ranges; on a 20,000-
//! vector index, every id is compared (from `list`), the values of every
//! vector sync wrote since the load are compared, and the rest only in a
//! uniform sample whose confidence the report states. A difference planted
//! in a vector sync wrote is found in about 40 requests; one planted in a
//! vector the load wrote is found by `--vector-values all` (1,000+
//! requests), and the sampled run states a bound that holds for it.

use crate::common::*;

const CHUNKS: usize = 20_000;

fn verify(emu: &Emulator, db: &TestDb, config: &str, report: &std::path::Path, extra: &[&str]) -> Run {
    let o = emu
        .command(db)
        .args(["--json", "verify", "--config", config, "--sqlite"])
        .arg(emu.d1_file("db1"))
        .args(["--vectorize-index", "vi", "--queries", "0", "--rate-limit", "1000000/1", "--report-dir"])
        .arg(report)
        .args(extra)
        .output()
        .expect("verify");
    outcome(o)
}

type Run = (Option<i32>, serde_json::Value, String);

/// `load --target api` into D1 `db1` and Vectorize `vi` (created).
fn load(emu: &Emulator, db: &TestDb, config: &str, state: &std::path::Path, extra: &[&str]) {
    ok(emu
        .command(db)
        .args(["load", "--config", config, "--target", "api", "--d1-database-id", "db1"])
        .args(["--vectorize-index", "vi", "--create-index", "--rate-limit", "1000000/1", "--state-dir"])
        .arg(state)
        .args(extra)
        .output()
        .expect("load"));
}

/// One `sync --once` into the same targets.
fn sync(emu: &Emulator, db: &TestDb, config: &str, work: &std::path::Path) {
    ok(emu
        .command(db)
        .args(["sync", "--config", config, "--target", "api", "--d1-database-id", "db1"])
        .args(["--vectorize-index", "vi", "--once", "--rate-limit", "1000000/1", "--work-dir"])
        .arg(work)
        .output()
        .expect("sync"));
}

fn vectorize_target(r: &serde_json::Value) -> serde_json::Value {
    let t = r["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "public.chunks")
        .expect("chunks");
    t["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|g| g["kind"] == "vectorize")
        .expect("vectorize")
        .clone()
}

/// Flips the lowest bit of one float of `id`'s vector in the index, as a
/// write pgflare did not make would.
fn plant(emu: &Emulator, id: &str) {
    block_on(async {
        let v = emu.vectorize("vi");
        let got = v.get_by_ids(&[id.to_string()]).await.expect("get");
        let mut line =
            serde_json::json!({"id": got[0].id, "values": got[0].values, "metadata": got[0].metadata});
        let x = got[0].values[2];
        line["values"][2] = serde_json::json!(f32::from_bits(x.to_bits() ^ 1) as f64);
        let t = v.upsert("plant", format!("{line}\n").into()).await.expect("upsert");
        let quiet = |_: &str| {};
        v.wait_applied(t, std::time::Duration::from_secs(60), &quiet).await.expect("applied");
    });
}

#[test]
fn verify_compares_every_id_the_written_values_and_a_stated_sample() {
    let db = TestDb::new("verifybudget");
    db.seed(CHUNKS, 8);
    let dir = temp_dir("verifybudget");
    let log = dir.path().join("requests.jsonl");
    let emu = Emulator::start(&["--rate-limit", "1000000/1", "--request-log", log.to_str().expect("p")]);
    let config = init_config(&db, dir.path());
    let state = dir.path().join("state");
    // Key ranges of 1 MiB: about ten, each ending with a partial upsert.
    load(&emu, &db, &config, &state, &["--partition-mib", "1"]);
    let vectors = db.count("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL");
    // The load packs its upserts to the limit: the ranges' last, partial
    // upserts are sent together, so ceil(vectors / 5,000) requests, not one
    // more per key range (issue 18's budget: within 90% of the best case).
    let upserts = request_log(&log)
        .iter()
        .filter(|l| l["path"].as_str().is_some_and(|p| p.ends_with("/upsert")))
        .count() as u64;
    let best = vectors.div_ceil(5000);
    eprintln!("load: {upserts} upserts for {vectors} vectors (best case {best})");
    assert!(upserts * 9 <= best * 10, "{upserts} upserts for {vectors} vectors; the best case is {best}");

    // 50 vectors change in the source; sync sends them and records them.
    db.exec(
        "UPDATE chunks SET embedding = ('[0.5,0.25,-1,2,0.125,3,4,' || (chunk_index + 1)::text || ']')::vector, \
         updated_at = now() WHERE id IN (SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 50)",
    );
    let work = dir.path().join("sync-work");
    sync(&emu, &db, &config, &work);
    let synced =
        db.query_one("SELECT id::text FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 1 OFFSET 7");
    let loaded = db.query_one(
        "SELECT id::text FROM chunks WHERE embedding IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET 9",
    );

    // Clean: every id and value that can differ compared, in few requests.
    let report = dir.path().join("report");
    let (code, r, out) = verify(&emu, &db, &config, &report, &[]);
    assert_eq!(code, Some(0), "{out}");
    let v = &vectorize_target(&r)["values"];
    assert_eq!(v["ids_compared"].as_u64(), Some(vectors), "{v:#}");
    assert!(v["written_since_load"].as_u64().expect("written") >= 50, "{v:#}");
    assert_eq!(v["sampled"].as_u64(), Some(300), "{v:#}");
    let bound = v["differing_below"].as_f64().expect("a stated bound");
    assert!((0.0099..0.0100).contains(&bound), "{v:#}");
    let clean_requests = v["requests"].as_u64().expect("requests");
    // list: 20 pages of 1,000; get_by_ids: (50 + 300) / 20 = 18; info: 2.
    assert!(clean_requests <= 45, "{clean_requests} requests: {v:#}");
    let notes = vectorize_target(&r)["notes"].to_string();
    assert!(notes.contains("fewer than 0.99% of them differ (95% confidence)"), "{notes}");

    // Planted in a vector sync wrote: always found.
    plant(&emu, &synced);
    plant(&emu, &loaded);
    let (code, r, out) = verify(&emu, &db, &config, &report, &[]);
    assert_eq!(code, Some(1), "{out}");
    let t = vectorize_target(&r);
    let found: Vec<&str> =
        t["differences"].as_array().expect("list").iter().filter_map(|d| d["key"].as_str()).collect();
    assert!(found.contains(&format!("id={synced}").as_str()), "{t:#}");
    // The one the load wrote is found only if the sample drew it (300 of
    // ~20,000); either way the report says what it can claim.
    let v = &t["values"];
    match found.contains(&format!("id={loaded}").as_str()) {
        true => {
            assert_eq!(v["sampled_differing"].as_u64(), Some(1), "{v:#}");
            assert!(v["differing_below"].is_null(), "{v:#}");
        }
        false => {
            assert_eq!(v["sampled_differing"].as_u64(), Some(0), "{v:#}");
            // 1 in ~20,000 differs: below the stated 1%, so the claim holds.
            assert!(v["differing_below"].as_f64().expect("bound") > 1.0 / vectors as f64, "{v:#}");
        }
    }

    // Every value: both found, at the old cost.
    let (code, r, out) = verify(&emu, &db, &config, &report, &["--vector-values", "all"]);
    assert_eq!(code, Some(1), "{out}");
    let t = vectorize_target(&r);
    assert_eq!(t["counts"], serde_json::json!({"vector_values": 2}), "{t:#}");
    let v = &t["values"];
    assert_eq!(
        (v["values_compared"].as_u64(), v["not_compared"].as_u64()),
        (Some(vectors), Some(0)),
        "{v:#}"
    );
    let all_requests = v["requests"].as_u64().expect("requests");
    assert!(all_requests >= vectors / 20, "{all_requests}: {v:#}");
    eprintln!(
        "verify requests per 10,000 vectors: sampled {:.1}, all {:.1} ({vectors} vectors)",
        clean_requests as f64 * 10_000.0 / vectors as f64,
        all_requests as f64 * 10_000.0 / vectors as f64
    );

    // Ids are compared by key bucket, not held: one vector deleted and one
    // the source never had are found exactly, by listing again only when
    // some bucket's ids differ (twice the list pages, not more).
    let gone = db
        .query_one("SELECT id::text FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 1 OFFSET 1000");
    block_on(async {
        let v = emu.vectorize("vi");
        let t = v.delete_by_ids("plant", std::slice::from_ref(&gone)).await.expect("delete").expect("ticket");
        let quiet = |_: &str| {};
        v.wait_applied(t, std::time::Duration::from_secs(60), &quiet).await.expect("applied");
        let line = serde_json::json!({"id": "not-a-row", "values": [1.0, 0, 0, 0, 0, 0, 0, 0]});
        let t = v.upsert("plant", format!("{line}\n").into()).await.expect("upsert");
        v.wait_applied(t, std::time::Duration::from_secs(60), &quiet).await.expect("applied");
    });
    let (code, r, out) = verify(&emu, &db, &config, &report, &[]);
    assert_eq!(code, Some(1), "{out}");
    let t = vectorize_target(&r);
    let keyed: std::collections::BTreeSet<(String, String)> = t["differences"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["kind"] != "vector_values")
        .map(|d| (d["kind"].as_str().unwrap_or("").to_string(), d["key"].as_str().unwrap_or("").to_string()))
        .collect();
    let want = [("extra", "id=not-a-row".to_string()), ("missing", format!("id={gone}"))];
    assert_eq!(keyed, want.into_iter().map(|(k, id)| (k.to_string(), id)).collect(), "{t:#}");
    let requests = t["values"]["requests"].as_u64().expect("requests");
    let pages = vectors.div_ceil(1000);
    assert!(requests <= clean_requests + pages + 2, "{requests} requests (clean {clean_requests}): {t:#}");
    let notes = t["notes"].to_string();
    assert!(notes.contains("2 of 4096 key buckets"), "{notes}");
}

/// A change sync made but did not record (its record in D1 lost) and that
/// the index holds wrongly: with the last verify's report in the report
/// folder, the row is among those changed since, so its value is compared
/// for certain; without it, only a sample of 1 could find it.
#[test]
fn rows_changed_since_the_last_verify_have_their_values_compared() {
    let db = TestDb::new("verifysince");
    db.seed(3_000, 8);
    let dir = temp_dir("verifysince");
    let emu = Emulator::start(&["--rate-limit", "1000000/1"]);
    let config = init_config(&db, dir.path());
    load(&emu, &db, &config, &dir.path().join("state"), &[]);
    let report = dir.path().join("report");
    let one = ["--vector-values", "1"];
    let (code, r, out) = verify(&emu, &db, &config, &report, &one);
    assert_eq!(code, Some(0), "{out}");
    let notes = vectorize_target(&r)["notes"].to_string();
    assert!(notes.contains("no earlier verify of this source"), "{notes}");

    // One row changes; sync sends it; its record is lost; the index then
    // holds a value pgflare did not write.
    let id = db
        .query_one("SELECT id::text FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 1 OFFSET 1500");
    db.exec(&format!(
        "UPDATE chunks SET embedding = '[1,2,3,4,5,6,7,8]', updated_at = now() WHERE id = '{id}'"
    ));
    sync(&emu, &db, &config, &dir.path().join("sync-work"));
    let d1 = rusqlite::Connection::open(emu.d1_file("db1")).expect("d1");
    d1.execute("DELETE FROM pgflare_vector_digests WHERE id = ?1", [&id]).expect("lose the record");
    drop(d1);
    plant(&emu, &id);

    // Without the last report: nothing singles the row out.
    let elsewhere = dir.path().join("report-elsewhere");
    let (_, r, _) = verify(&emu, &db, &config, &elsewhere, &one);
    let v = &vectorize_target(&r)["values"];
    assert_eq!(v["changed_since_verify"].as_u64(), Some(0), "{v:#}");

    // With it: the row changed since the last verify, so it is compared.
    let (code, r, out) = verify(&emu, &db, &config, &report, &one);
    assert_eq!(code, Some(1), "{out}");
    let t = vectorize_target(&r);
    let found: Vec<&str> =
        t["differences"].as_array().expect("list").iter().filter_map(|d| d["key"].as_str()).collect();
    assert!(found.contains(&format!("id={id}").as_str()), "{t:#}");
    assert!(t["values"]["changed_since_verify"].as_u64().expect("count") >= 1, "{t:#}");
    let notes = t["notes"].to_string();
    assert!(
        notes.contains("changed since the last verify")
            && notes.contains("the values of all of them compared"),
        "{notes}"
    );
    // A row written after the sync is pending, not a sampled difference:
    // with every vector sampled, only the planted one counts.
    db.exec(
        "INSERT INTO chunks SELECT (jsonb_populate_record(null::chunks, to_jsonb(c) || \
         jsonb_build_object('id', gen_random_uuid(), 'chunk_index', c.chunk_index + 100000))).* \
         FROM chunks c WHERE embedding IS NOT NULL LIMIT 1",
    );
    let (_, r, out) =
        verify(&emu, &db, &config, &dir.path().join("report-all"), &["--vector-values", "100000"]);
    let t = vectorize_target(&r);
    assert_eq!(t["values"]["sampled_differing"].as_u64(), Some(1), "{out}\n{t:#}");
    assert!(t["pending_sync"].as_u64().expect("pending") >= 1, "{t:#}");
}
