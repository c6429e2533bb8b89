//! `pgflare emulate`'s Vectorize v2 endpoints as a client sees them: the
//! real binary over HTTP (reqwest), the real wrangler for the multipart
//! upload it sends ([`wrangler`]), and rankings computed independently of
//! the emulator's code ([`ranking`]). Here: the index lifecycle, float32
//! values, insert vs upsert, the mutation delay, restarts and faults. No
//! Postgres needed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, Emulator, ACCOUNT, TOKEN};
use ranking::ranked;

mod ranking;
mod wrangler;

fn url(emu: &Emulator, tail: &str) -> String {
    format!("{}/accounts/{ACCOUNT}/vectorize/v2/indexes{tail}", emu.base_url)
}

async fn get(emu: &Emulator, tail: &str) -> (u16, Value) {
    let r = emu.http.get(url(emu, tail)).bearer_auth(TOKEN).send().await.expect("request");
    (r.status().as_u16(), r.json().await.expect("JSON envelope"))
}

async fn post(emu: &Emulator, tail: &str, body: Value) -> (u16, Value) {
    emu.post(&url(emu, tail), body).await
}

/// POSTs NDJSON to `/{index}/{verb}{query}`.
async fn send(emu: &Emulator, index: &str, verb: &str, ndjson: String) -> (u16, Value) {
    let r = emu
        .http
        .post(url(emu, &format!("/{index}/{verb}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.expect("JSON envelope"))
}

/// A write that must be accepted; returns its mutation id.
async fn write(emu: &Emulator, index: &str, verb: &str, lines: &[Value]) -> String {
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let (status, v) = send(emu, index, verb, text.join("\n")).await;
    assert_eq!(status, 200, "{v}");
    // Only the mutation id: no count of vectors (cloudflare-python types/vectorize/index_upsert_response.py).
    assert_eq!(v["result"].as_object().map(|o| o.len()), Some(1), "{v}");
    v["result"]["mutationId"].as_str().expect("mutationId").to_string()
}

/// A request that must be refused with this status and code; returns the message.
fn refused(answer: (u16, Value), status: u16, code: u32) -> String {
    let (got, v) = answer;
    assert_eq!(
        (got, v["success"].clone(), v["errors"][0]["code"].clone()),
        (status, json!(false), json!(code)),
        "{v}"
    );
    v["errors"][0]["message"].as_str().expect("message").to_string()
}

async fn create(emu: &Emulator, name: &str, dims: usize, metric: &str) -> Value {
    let body = json!({ "name": name, "config": { "dimensions": dims, "metric": metric } });
    let (status, v) = post(emu, "", body).await;
    assert_eq!(status, 200, "{v}");
    v["result"].clone()
}

async fn metadata_index(emu: &Emulator, index: &str, property: &str, t: &str) {
    let body = json!({ "propertyName": property, "indexType": t });
    let (status, v) = post(emu, &format!("/{index}/metadata_index/create"), body).await;
    assert_eq!(status, 200, "{v}");
}

async fn by_ids(emu: &Emulator, index: &str, ids: &[&str]) -> Vec<Value> {
    let (status, v) = post(emu, &format!("/{index}/get_by_ids"), json!({ "ids": ids })).await;
    assert_eq!(status, 200, "{v}");
    v["result"].as_array().expect("array").clone()
}

async fn info(emu: &Emulator, index: &str) -> Value {
    let (status, v) = get(emu, &format!("/{index}/info")).await;
    assert_eq!(status, 200, "{v}");
    v["result"].clone()
}

fn f32_bits(values: &Value) -> Vec<u32> {
    values
        .as_array()
        .expect("values")
        .iter()
        .map(|v| (v.as_f64().expect("number") as f32).to_bits())
        .collect()
}

#[test]
fn emulator_vectorize_index_lifecycle() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        let body =
            json!({ "name": "docs", "description": "d", "config": { "dimensions": 3, "metric": "cosine" } });
        let (status, v) = post(&emu, "", body).await;
        assert_eq!(status, 200, "{v}");
        let docs = v["result"].clone();
        assert_eq!(docs["name"], "docs");
        assert_eq!(docs["description"], "d");
        assert_eq!(docs["config"], json!({ "dimensions": 3, "metric": "cosine" }));
        let created = docs["created_on"].as_str().expect("created_on");
        assert!(created.len() == 24 && created.ends_with('Z') && &created[10..11] == "T", "{created}");

        let dup = refused(
            post(&emu, "", json!({ "name": "docs", "config": { "dimensions": 3, "metric": "cosine" } }))
                .await,
            400,
            3002,
        );
        assert!(dup.contains("vectorize.index.duplicate_name") && dup.contains("docs"), "{dup}");
        let cases = [
            (
                json!({ "name": "big", "config": { "dimensions": 1537, "metric": "cosine" } }),
                "from 1 to 1536",
            ),
            (json!({ "name": "zero", "config": { "dimensions": 0, "metric": "cosine" } }), "from 1 to 1536"),
            (
                json!({ "name": "m", "config": { "dimensions": 3, "metric": "manhattan" } }),
                "cosine, euclidean or dot-product",
            ),
            (
                json!({ "name": "Bad_Name", "config": { "dimensions": 3, "metric": "cosine" } }),
                "lowercase letters",
            ),
            (
                json!({ "name": "1abc", "config": { "dimensions": 3, "metric": "cosine" } }),
                "starting with a letter",
            ),
        ];
        for (body, expected) in cases {
            let msg = refused(post(&emu, "", body.clone()).await, 400, 40002);
            assert!(msg.contains(expected), "{body}: {msg}");
        }
        create(&emu, "other", 1536, "euclidean").await;

        let (_, list) = get(&emu, "").await;
        let names: Vec<&str> =
            list["result"].as_array().expect("array").iter().filter_map(|i| i["name"].as_str()).collect();
        assert_eq!(names, ["docs", "other"]);
        let (status, shown) = get(&emu, "/docs").await;
        assert_eq!((status, &shown["result"]), (200, &docs));
        // HTTP 400, code 3000, as observed on Vectorize (not a 404).
        let msg = refused(get(&emu, "/nope").await, 400, 3000);
        assert_eq!(msg, "vectorize.index.not_found - Index name \"nope\"");
        refused(post(&emu, "/nope/query", json!({ "vector": [1, 2, 3] })).await, 400, 3000);

        write(&emu, "docs", "upsert", &[json!({ "id": "a", "values": [1, 2, 3] })]).await;
        let file = emu.data_dir.path().join("vectorize/docs.sqlite");
        assert!(file.exists());
        let r = emu.http.delete(url(&emu, "/docs")).bearer_auth(TOKEN).send().await.expect("delete");
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.expect("json");
        assert_eq!((v["success"].clone(), v["result"].clone()), (json!(true), Value::Null));
        assert!(!file.exists(), "the index's data is removed");
        // Deleted lately: HTTP 410, code 3005, as observed on Vectorize.
        let msg = refused(get(&emu, "/docs").await, 410, 3005);
        assert_eq!(msg, "vectorize.index.deleted - Index name \"docs\" was deleted");
        refused(send(&emu, "docs", "upsert", "{}".into()).await, 410, 3005);
        refused(post(&emu, "/docs/get_by_ids", json!({ "ids": ["a"] })).await, 410, 3005);
        let (_, list) = get(&emu, "").await;
        assert_eq!(list["result"].as_array().map(Vec::len), Some(1));
        create(&emu, "docs", 3, "cosine").await;
        assert_eq!(info(&emu, "docs").await["vectorCount"], 0, "a new index of the same name starts empty");
    });
}

/// JSON bodies are read as their documented types (cloudflare-typescript
/// `indexes.ts`, `metadata-index.ts`; wrangler `vectorize/types.ts`): sent
/// as application/json (observed: 40026 otherwise), with no field the type
/// lacks and none of another JSON type.
#[test]
fn emulator_vectorize_json_bodies_are_checked_against_their_types() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        create(&emu, "strict", 2, "cosine").await;
        let raw = |tail: &str, ct: Option<&str>, body: &str| {
            let mut r = emu.http.post(url(&emu, tail)).bearer_auth(TOKEN).body(body.to_string());
            if let Some(ct) = ct {
                r = r.header("content-type", ct);
            }
            async move {
                let r = r.send().await.expect("request");
                (r.status().as_u16(), r.json::<Value>().await.expect("JSON envelope"))
            }
        };
        let body = r#"{"propertyName":"kind","indexType":"string"}"#;
        let msg = refused(raw("/strict/metadata_index/create", None, body).await, 400, 40026);
        assert!(msg.contains("Expected request with `Content-Type: application/json`"), "{msg}");
        refused(raw("/strict/metadata_index/create", Some("text/plain"), body).await, 400, 40026);
        let (status, v) =
            raw("/strict/metadata_index/create", Some("application/json; charset=utf-8;"), body).await;
        assert_eq!(status, 200, "wrangler's content type: {v}");

        let cases = [
            (
                "",
                json!({ "name": "x", "config": { "dimensions": 2, "metric": "cosine" }, "extra": 1 }),
                "unknown field `extra`",
            ),
            (
                "",
                json!({ "name": "x", "config": { "dimensions": 2, "metric": "cosine", "m": 16 } }),
                "unknown field `m`",
            ),
            ("", json!({ "name": 7, "config": { "dimensions": 2, "metric": "cosine" } }), "invalid type"),
            ("/strict/query", json!({ "vector": [1, 0], "top_k": 3 }), "unknown field `top_k`"),
            ("/strict/query", json!({ "vector": [1, 0], "topK": "3" }), "invalid type"),
            (
                "/strict/query",
                json!({ "vector": [1, 0], "returnMetadata": true }),
                "Failed to parse the request body",
            ),
            ("/strict/query", json!({ "vector": [1, 0], "returnValues": "yes" }), "invalid type"),
            ("/strict/get_by_ids", json!({ "ids": [1, 2] }), "invalid type"),
            ("/strict/get_by_ids", json!({ "id": ["a"] }), "unknown field `id`"),
            ("/strict/delete_by_ids", json!({ "ids": ["a"], "namespace": "n" }), "unknown field `namespace`"),
            ("/strict/metadata_index/create", json!({ "propertyName": "p" }), "missing field `indexType`"),
            (
                "/strict/metadata_index/delete",
                json!({ "propertyName": "kind", "indexType": "string" }),
                "unknown field `indexType`",
            ),
        ];
        for (tail, body, expected) in cases {
            let msg = refused(post(&emu, tail, body.clone()).await, 400, 40026);
            assert!(msg.contains(expected), "{tail} {body}: {msg}");
        }
        let both =
            json!({ "name": "x", "config": { "preset": "@cf/baai/bge-small-en-v1.5", "dimensions": 384 } });
        refused(post(&emu, "", both).await, 400, 40002);
        let (_, list) = get(&emu, "").await;
        assert_eq!(list["result"].as_array().map(Vec::len), Some(1), "nothing refused was created: {list}");
        assert!(list.get("result_info").is_none(), "one page, as the SDKs' SinglePage reads it: {list}");
    });
}

#[test]
fn emulator_vectorize_float32_values_and_insert_vs_upsert() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        create(&emu, "vals", 4, "euclidean").await;
        let a_values = [0.1, 0.333_333_333_333_333_3, 1e-7, 123_456.789];
        let b_values = [-2.5e10, 3.402_823_4e38, 1.175_494_35e-38, 16_777_217.0];
        let a_meta = json!({ "title": "A", "year": 2020, "tags": ["x", "y"], "o": { "k": true } });
        let text = format!(
            "{}\r\n\n  \n{}\n",
            json!({ "id": "a", "values": a_values, "metadata": a_meta, "namespace": "n1" }),
            json!({ "id": "b", "values": b_values })
        );
        let (status, v) = send(&emu, "vals", "upsert", text).await;
        assert_eq!(status, 200, "{v}");
        assert!(v["result"]["mutationId"].is_string(), "blank lines are skipped: {v}");

        let got = by_ids(&emu, "vals", &["b", "missing", "a"]).await;
        assert_eq!(got.len(), 2, "missing ids are left out: {got:?}");
        assert_eq!(got[0]["id"], "b", "request order");
        let expect = |vals: &[f64]| vals.iter().map(|&v| (v as f32).to_bits()).collect::<Vec<u32>>();
        assert_eq!(f32_bits(&got[0]["values"]), expect(&b_values));
        assert_eq!(f32_bits(&got[1]["values"]), expect(&a_values));
        assert_eq!(got[1]["values"][0].to_string(), "0.1", "shortest float32 digits");
        assert_eq!(got[1]["metadata"], a_meta);
        assert_eq!((got[1]["namespace"].clone(), got[0]["namespace"].clone()), (json!("n1"), Value::Null));
        assert_eq!(got[0]["metadata"], Value::Null);

        // insert keeps an existing id; upsert replaces all of it.
        let changed = json!({ "id": "a", "values": [9, 9, 9, 9], "metadata": { "title": "changed" } });
        write(&emu, "vals", "insert", &[changed, json!({ "id": "c", "values": [1, 2, 3, 4] })]).await;
        let got = by_ids(&emu, "vals", &["a", "c"]).await;
        assert_eq!(f32_bits(&got[0]["values"]), expect(&a_values), "insert left a as it was");
        assert_eq!(got[0]["metadata"], a_meta);
        assert_eq!(got[1]["values"], json!([1.0, 2.0, 3.0, 4.0]));
        write(&emu, "vals", "upsert", &[json!({ "id": "a", "values": [5, 6, 7, 8] })]).await;
        let got = by_ids(&emu, "vals", &["a"]).await;
        assert_eq!(
            got[0],
            json!({ "id": "a", "values": [5.0, 6.0, 7.0, 8.0], "metadata": null, "namespace": null })
        );

        // One request naming an id twice: the first insert wins, the last upsert wins.
        let twice = |id: &str| {
            [json!({ "id": id, "values": [1, 1, 1, 1] }), json!({ "id": id, "values": [2, 2, 2, 2] })]
        };
        write(&emu, "vals", "upsert", &twice("d")).await;
        write(&emu, "vals", "insert", &twice("e")).await;
        let got = by_ids(&emu, "vals", &["d", "e"]).await;
        assert_eq!((got[0]["values"][0].clone(), got[1]["values"][0].clone()), (json!(2.0), json!(1.0)));
        assert_eq!(info(&emu, "vals").await["vectorCount"], 5);
    });
}

#[test]
fn emulator_vectorize_mutations_become_visible_after_the_delay() {
    let emu = Emulator::start(&["--vectorize-delay-ms", "400"]);
    common::block_on(async {
        create(&emu, "slow", 2, "cosine").await;
        let m1 = write(&emu, "slow", "upsert", &[json!({ "id": "a", "values": [1, 2] })]).await;
        let i = info(&emu, "slow").await;
        assert_ne!(i["processedUpToMutation"], json!(m1));
        assert_eq!(i["vectorCount"], 0);
        assert!(by_ids(&emu, "slow", &["a"]).await.is_empty(), "not visible yet");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let i = info(&emu, "slow").await;
        assert_eq!((i["processedUpToMutation"].clone(), i["vectorCount"].clone()), (json!(m1), json!(1)));
        assert!(i["processedUpToDatetime"].as_str().is_some_and(|t| t.ends_with('Z')), "{i}");
        assert_eq!(by_ids(&emu, "slow", &["a"]).await.len(), 1);

        let (status, v) = post(&emu, "/slow/delete_by_ids", json!({ "ids": ["a"] })).await;
        assert_eq!(status, 200, "{v}");
        let m2 = v["result"]["mutationId"].as_str().expect("mutationId").to_string();
        assert_ne!(m1, m2);
        assert_eq!(by_ids(&emu, "slow", &["a"]).await.len(), 1, "the delete is not visible yet");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(by_ids(&emu, "slow", &["a"]).await.is_empty());
        assert_eq!(info(&emu, "slow").await["processedUpToMutation"], json!(m2));
    });
}

#[test]
fn emulator_vectorize_survives_a_restart() {
    let mut emu = Emulator::start(&["--vectorize-delay-ms", "300"]);
    let (created, pending) = common::block_on(async {
        let created = create(&emu, "keep", 2, "dot-product").await;
        metadata_index(&emu, "keep", "kind", "string").await;
        let meta = json!({ "kind": "a" });
        write(&emu, "keep", "upsert", &[json!({ "id": "v1", "values": [1, 2], "metadata": meta })]).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(info(&emu, "keep").await["vectorCount"], 1);
        // Accepted, not yet applied when the emulator is killed.
        let pending = write(
            &emu,
            "keep",
            "upsert",
            &[json!({ "id": "v2", "values": [3, 4], "metadata": { "kind": "b" } })],
        )
        .await;
        (created, pending)
    });
    emu.restart(&["--vectorize-delay-ms", "300"]);
    common::block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while info(&emu, "keep").await["processedUpToMutation"] != json!(pending) {
            assert!(Instant::now() < deadline, "the pending mutation was lost in the restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, v) = get(&emu, "/keep").await;
        assert_eq!(v["result"], created);
        let got = by_ids(&emu, "keep", &["v1", "v2"]).await;
        assert_eq!(got[0]["values"], json!([1.0, 2.0]));
        assert_eq!(got[1]["metadata"], json!({ "kind": "b" }));
        let (_, v) = get(&emu, "/keep/metadata_index/list").await;
        assert_eq!(
            v["result"]["metadataIndexes"],
            json!([{ "propertyName": "kind", "indexType": "string" }])
        );
        let found = ranked(&emu, "keep", json!({ "vector": [1, 1], "filter": { "kind": "b" } })).await;
        assert_eq!(found, vec![("v2".to_string(), 7.0)]);
    });
}

#[test]
fn emulator_vectorize_requests_get_injected_faults() {
    let emu = Emulator::start(&["--fail-rate", "1"]);
    common::block_on(async {
        let (status, v) =
            post(&emu, "", json!({ "name": "f", "config": { "dimensions": 2, "metric": "cosine" } })).await;
        assert!([500, 502, 503].contains(&status), "{status} {v}");
        assert_eq!(v["errors"][0]["code"], 10013);
    });
    assert!(!emu.data_dir.path().join("vectorize/f.sqlite").exists(), "the faulted request did nothing");
}
