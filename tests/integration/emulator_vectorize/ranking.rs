//! Vectorize's query semantics and limits in the emulator: exact top-k for
//! each metric against rankings computed here, namespaces, filters, and
//! every documented limit answered with a specific error.

use serde_json::{json, Value};

use super::{by_ids, create, get, info, metadata_index, post, refused, send, url, write};
use crate::common::{self, Emulator, TOKEN};

const QUERY: [f64; 3] = [1.0, 0.5, 0.0];

/// The six vectors of the ranking test: id, values, namespace, metadata.
fn six() -> Vec<(&'static str, [f64; 3], Option<&'static str>, Value)> {
    vec![
        ("v1", [1.0, 0.0, 0.0], Some("a"), json!({ "year": 2019, "kind": "doc" })),
        ("v2", [0.0, 1.0, 0.0], Some("a"), json!({ "year": 2020, "kind": "faq" })),
        ("v3", [1.0, 1.0, 0.0], Some("b"), json!({ "year": 2021, "kind": "doc" })),
        ("v4", [0.5, 0.5, 0.5], Some("b"), json!({ "year": 2022, "kind": "blog" })),
        ("v5", [2.0, 0.0, 1.0], None, json!({ "year": 2023, "kind": "doc" })),
        ("v6", [-1.0, 0.0, 0.0], None, json!({ "year": 2018, "kind": "faq", "free": "x" })),
    ]
}

/// The expected ranking, computed here: (id, score), best first, ties by id.
fn expected(metric: &str, keep: impl Fn(&str) -> bool) -> Vec<(String, f64)> {
    let dot = |a: &[f64; 3], b: &[f64; 3]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut all: Vec<(String, f64)> = six()
        .into_iter()
        .filter(|(id, ..)| keep(id))
        .map(|(id, v, ..)| {
            let score = match metric {
                "cosine" => dot(&v, &QUERY) / (dot(&v, &v).sqrt() * dot(&QUERY, &QUERY).sqrt()),
                "euclidean" => v.iter().zip(&QUERY).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
                _ => dot(&v, &QUERY),
            };
            (id.to_string(), score)
        })
        .collect();
    let descending = metric != "euclidean";
    all.sort_by(|a, b| {
        let by = if descending { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) };
        by.then_with(|| a.0.cmp(&b.0))
    });
    all
}

/// The (id, score) matches of a query that must succeed.
pub(super) async fn ranked(emu: &Emulator, index: &str, body: Value) -> Vec<(String, f64)> {
    let (status, v) = post(emu, &format!("/{index}/query"), body.clone()).await;
    assert_eq!(status, 200, "{body}: {v}");
    let matches = v["result"]["matches"].as_array().expect("matches");
    assert_eq!(v["result"]["count"], matches.len());
    matches
        .iter()
        .map(|m| (m["id"].as_str().expect("id").to_string(), m["score"].as_f64().expect("score")))
        .collect()
}

fn same(got: &[(String, f64)], want: &[(String, f64)]) {
    let ids = |r: &[(String, f64)]| r.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want));
    for ((id, g), (_, w)) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-9, "{id}: score {g}, expected {w}");
    }
}

#[test]
fn emulator_vectorize_exact_top_k_for_each_metric() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        // The hand-checked orders (euclidean has a tie, v1 = v3 = 0.5, broken by id).
        let order = |m| expected(m, |_| true).into_iter().map(|(i, _)| i).collect::<Vec<_>>().join(",");
        assert_eq!(order("cosine"), "v3,v1,v5,v4,v2,v6");
        assert_eq!(order("euclidean"), "v1,v3,v4,v2,v5,v6");
        assert_eq!(order("dot-product"), "v5,v3,v1,v4,v2,v6");
        for metric in ["cosine", "euclidean", "dot-product"] {
            let name = format!("m-{metric}");
            create(&emu, &name, 3, metric).await;
            // Before the upsert: Vectorize indexes only vectors written after.
            metadata_index(&emu, &name, "year", "number").await;
            metadata_index(&emu, &name, "kind", "string").await;
            let lines: Vec<Value> = six()
                .into_iter()
                .map(|(id, v, ns, meta)| json!({ "id": id, "values": v, "namespace": ns, "metadata": meta }))
                .collect();
            write(&emu, &name, "upsert", &lines).await;

            same(
                &ranked(&emu, &name, json!({ "vector": QUERY, "topK": 6 })).await,
                &expected(metric, |_| true),
            );
            let top3 = ranked(&emu, &name, json!({ "vector": QUERY, "topK": 3 })).await;
            same(&top3, &expected(metric, |_| true)[..3]);
            assert_eq!(ranked(&emu, &name, json!({ "vector": QUERY })).await.len(), 5, "topK defaults to 5");
            let in_b = ranked(&emu, &name, json!({ "vector": QUERY, "topK": 6, "namespace": "b" })).await;
            same(&in_b, &expected(metric, |id| id == "v3" || id == "v4"));
            let filter = json!({ "kind": { "$in": ["doc", "blog"] }, "year": { "$gte": 2021 } });
            let filtered = ranked(&emu, &name, json!({ "vector": QUERY, "topK": 6, "filter": filter })).await;
            same(&filtered, &expected(metric, |id| ["v3", "v4", "v5"].contains(&id)));
            let eq =
                ranked(&emu, &name, json!({ "vector": QUERY, "topK": 6, "filter": { "kind": "faq" } })).await;
            same(&eq, &expected(metric, |id| id == "v2" || id == "v6"));
        }
        let q = |body: Value| post(&emu, "/m-cosine/query", body);
        let msg = refused(q(json!({ "vector": QUERY, "filter": { "free": "x" } })).await, 400, 40027);
        assert!(msg.contains("\"free\"") && msg.contains("no metadata index"), "{msg}");
        // The documented limits (docs vectorize/reference/client-api.mdx, "topK").
        let msg = refused(q(json!({ "vector": QUERY, "topK": 21, "returnValues": true })).await, 400, 40025);
        assert!(msg.contains("max topK is 20, but got 21"), "{msg}");
        refused(q(json!({ "vector": QUERY, "topK": 21, "returnMetadata": "all" })).await, 400, 40025);
        let (status, v) = q(json!({ "vector": QUERY, "topK": 20, "returnValues": true })).await;
        assert_eq!(status, 200, "{v}");
        let msg = refused(q(json!({ "vector": QUERY, "topK": 101 })).await, 400, 40025);
        assert!(msg.contains("from 1 to 100, got 101"), "{msg}");
        refused(q(json!({ "vector": QUERY, "topK": 0 })).await, 400, 40025);
        let msg = refused(q(json!({ "vector": [1.0, 0.5] })).await, 400, 40006);
        assert!(msg.contains("expected 3 dimensions, and got 2 dimensions"), "{msg}");
        let all = json!({ "vector": QUERY, "topK": 100, "returnMetadata": "indexed" });
        assert_eq!(ranked(&emu, "m-cosine", all).await.len(), 6);

        // What a match carries.
        let (_, v) =
            q(json!({ "vector": [-1, 0, 0], "topK": 1, "returnValues": true, "returnMetadata": "all" }))
                .await;
        let meta = json!({ "year": 2018, "kind": "faq", "free": "x" });
        let want = json!({ "id": "v6", "score": 1.0, "values": [-1.0, 0.0, 0.0], "metadata": meta });
        assert_eq!(v["result"]["matches"][0], want);
        let (_, v) = q(json!({ "vector": [-1, 0, 0], "topK": 1, "returnMetadata": "indexed" })).await;
        assert_eq!(v["result"]["matches"][0]["metadata"], json!({ "year": 2018, "kind": "faq" }));
        let (_, v) = q(json!({ "vector": [1, 0, 0], "topK": 1 })).await;
        assert_eq!(v["result"]["matches"][0], json!({ "id": "v1", "score": 1.0, "namespace": "a" }));
    });
}

#[test]
fn emulator_vectorize_limits_are_errors() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        create(&emu, "lim", 2, "cosine").await;
        let line = |i: usize| json!({ "id": format!("x{i}"), "values": [1, 0] }).to_string();
        let many: Vec<String> = (0..5001).map(line).collect();
        let msg = refused(send(&emu, "lim", "upsert", many.join("\n")).await, 400, 40014);
        assert!(msg.contains("line 5001") && msg.contains("5000"), "{msg}");
        let i = info(&emu, "lim").await;
        let progress = (i["vectorCount"].clone(), i["processedUpToMutation"].clone());
        assert_eq!(progress, (json!(0), Value::Null), "nothing applied");
        let (status, v) = send(&emu, "lim", "upsert", many[..5000].join("\n")).await;
        assert_eq!((status, v["result"]["mutationId"].is_string()), (200, true), "5000 is allowed: {v}");

        let ok_line = json!({ "id": "fine", "values": [1, 0] }).to_string();
        let big = json!({ "id": "big", "values": [1, 0], "metadata": { "t": "x".repeat(10_300) } });
        let cases: Vec<(String, u32, Vec<&str>)> = vec![
            (
                json!({ "id": "y".repeat(65), "values": [1, 0] }).to_string(),
                40008,
                vec!["line 2", "max is 64 bytes, got 65 bytes"],
            ),
            (big.to_string(), 40013, vec!["line 2, id \"big\"", "10240"]),
            (
                json!({ "id": "key", "values": [1, 0], "metadata": { "a.b": 1 } }).to_string(),
                40013,
                vec!["\"a.b\""],
            ),
            (
                json!({ "id": "ns", "values": [1, 0], "namespace": "n".repeat(65) }).to_string(),
                40009,
                vec!["max is 64 bytes, got 65"],
            ),
            (
                format!("{ok_line}\n{}", json!({ "id": "dim", "values": [1, 0, 0] })),
                40012,
                vec!["line 3, id \"dim\"", "expected 2 dimensions, and got 3"],
            ),
            ("not json".to_string(), 40023, vec!["line 2", "unparsable-behavior=discard"]),
        ];
        for (bad, code, expected) in cases {
            let msg = refused(send(&emu, "lim", "upsert", format!("{ok_line}\n{bad}")).await, 400, code);
            assert!(expected.iter().all(|e| msg.contains(e)), "{code}: expected {expected:?} in `{msg}`");
        }
        assert!(by_ids(&emu, "lim", &["fine"]).await.is_empty(), "a refused request applies nothing");
        let r = emu
            .http
            .post(url(&emu, "/lim/upsert?unparsable-behavior=discard"))
            .bearer_auth(TOKEN)
            .body(format!("{ok_line}\nnot json\n"))
            .send()
            .await
            .expect("request");
        let v: Value = r.json().await.expect("json");
        assert!(v["result"]["mutationId"].is_string(), "the bad line is discarded: {v}");

        let ids = |n: usize| (0..n).map(|i| format!("x{i}")).collect::<Vec<_>>();
        let msg = refused(post(&emu, "/lim/delete_by_ids", json!({ "ids": ids(101) })).await, 400, 40007);
        assert!(msg.contains("max id count is 100, got 101"), "{msg}");
        let msg = refused(post(&emu, "/lim/get_by_ids", json!({ "ids": ids(21) })).await, 400, 40007);
        assert!(msg.contains("max id count is 20, got 21"), "{msg}");
        let (status, v) = post(&emu, "/lim/delete_by_ids", json!({ "ids": ids(100) })).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(info(&emu, "lim").await["vectorCount"], 4901, "5000 + `fine` - 100");

        let filter = json!({ "p": "x".repeat(2048) });
        let msg = refused(
            post(&emu, "/lim/query", json!({ "vector": [1, 0], "filter": filter })).await,
            400,
            40027,
        );
        assert!(msg.contains("under 2048"), "{msg}");
        for i in 0..10 {
            metadata_index(&emu, "lim", &format!("p{i}"), "string").await;
        }
        let body = json!({ "propertyName": "p10", "indexType": "number" });
        let msg = refused(post(&emu, "/lim/metadata_index/create", body).await, 400, 40030);
        assert!(msg.contains("10 metadata indexes"), "{msg}");
        let body = json!({ "propertyName": "p3", "indexType": "number" });
        let msg = refused(post(&emu, "/lim/metadata_index/create", body).await, 400, 40030);
        assert!(msg.contains("already exists"), "{msg}");
        let (status, _) = post(&emu, "/lim/metadata_index/delete", json!({ "propertyName": "p3" })).await;
        assert_eq!(status, 200);
        let (_, v) = get(&emu, "/lim/metadata_index/list").await;
        let listed = v["result"]["metadataIndexes"].as_array().expect("array");
        assert_eq!(listed.len(), 9);
        assert_eq!(listed[0], json!({ "propertyName": "p0", "indexType": "string" }));
        let body = json!({ "propertyName": "q", "indexType": "date" });
        refused(post(&emu, "/lim/metadata_index/create", body).await, 400, 40030);
    });
}
