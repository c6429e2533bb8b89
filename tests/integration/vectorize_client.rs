//! pgflare's Vectorize client (`pgflare::cloudflare::Vectorize`) against
//! the emulator over HTTP, answering as the real Vectorize does: a missing
//! index is HTTP 400 with code 3000 (not a 404), a deleted one HTTP 410
//! with code 3005 for a while; batches of 20 ids per `get_by_ids` and 100
//! per `delete_by_ids`; writes applied asynchronously; a create whose
//! answer was lost; `verify --k` within topK's limit. No Postgres needed.

use std::time::Duration;

use pgflare::cloudflare::vectorize::IndexConfig;
use serde_json::Value;

use crate::common::*;

/// What the emulator answers to `GET indexes/{name}`: status and first code.
fn get_index_answer(emu: &Emulator, name: &str) -> (u16, Value) {
    let (status, v) = emu.request(reqwest::Method::GET, &format!("vectorize/v2/indexes/{name}"), None);
    (status, v["errors"][0]["code"].clone())
}

/// Found by the issue-13 review: Vectorize answers a missing index with
/// HTTP 400 and code 3000, and the client took only a 404 for "missing",
/// so `--create-index` failed on the real answer instead of creating it.
#[test]
fn create_index_recognises_a_missing_index_by_code_3000_not_by_http_404() {
    let emu = Emulator::start(&[]);
    assert_eq!(get_index_answer(&emu, "fresh"), (400, serde_json::json!(3000)), "as Vectorize answers");
    let v = emu.vectorize("fresh");
    let want = IndexConfig { dimensions: 3, metric: "cosine".into() };
    block_on(async {
        assert_eq!(v.config().await.expect("a missing index is not an error"), None);
        assert_eq!(v.created_on().await.expect("created_on"), None);
        let e = v.ensure(&want, false).await.expect_err("missing and not asked to create").to_string();
        assert!(e.contains("does not exist") && e.contains("--create-index"), "{e}");
        assert_eq!(v.ensure(&want, true).await.expect("--create-index creates it"), want);
        assert_eq!(v.config().await.expect("config"), Some(want));
    });
}

/// Vectorize answers HTTP 410, code 3005 for an index deleted lately: the
/// client took it for a failure; it is an index that does not exist, and
/// the message says it was deleted.
#[test]
fn a_deleted_index_answered_410_code_3005_is_missing_and_named_deleted() {
    let emu = Emulator::start(&[]);
    let v = emu.vectorize("gone");
    let want = IndexConfig { dimensions: 3, metric: "euclidean".into() };
    block_on(v.ensure(&want, true)).expect("created");
    emu.delete_index("gone");
    assert_eq!(get_index_answer(&emu, "gone"), (410, serde_json::json!(3005)), "as Vectorize answers");
    block_on(async {
        assert_eq!(v.config().await.expect("a deleted index is not an error"), None);
        assert_eq!(v.created_on().await.expect("created_on"), None);
        let e = v.ensure(&want, false).await.expect_err("deleted and not asked to create").to_string();
        assert!(e.contains("was deleted") && e.contains("--create-index"), "{e}");
        assert_eq!(v.ensure(&want, true).await.expect("created again"), want);
    });
    assert_eq!(get_index_answer(&emu, "gone").0, 200);
}

#[test]
fn the_vectorize_client_upserts_waits_reads_and_deletes_in_batches() {
    let emu = Emulator::start(&["--vectorize-delay-ms", "200"]);
    let v = emu.vectorize("client-test");
    block_on(async {
        let want = IndexConfig { dimensions: 3, metric: "euclidean".into() };
        let e = v.ensure(&want, false).await.expect_err("missing and not asked to create").to_string();
        assert!(e.contains("does not exist") && e.contains("--create-index"), "{e}");
        assert_eq!(v.ensure(&want, true).await.expect("created"), want);
        let other = IndexConfig { dimensions: 3, metric: "cosine".into() };
        let e = v.ensure(&other, true).await.expect_err("mismatch").to_string();
        assert!(e.contains("exists with 3 dimensions and metric euclidean"), "{e}");

        let lines: String =
            (0..250).map(|i| format!("{{\"id\":\"v{i:03}\",\"values\":[{i},{},0.5]}}\n", i * 2)).collect();
        let t = v.upsert("test upsert", lines.into()).await.expect("upsert");
        let quiet = |_: &str| {};
        v.wait_applied(t, Duration::from_secs(30), &quiet).await.expect("applied");
        assert_eq!(v.info().await.expect("info").vector_count, Some(250));
        let ids: Vec<String> = (0..45).map(|i| format!("v{i:03}")).collect();
        let got = v.get_by_ids(&ids).await.expect("get_by_ids in batches of 20");
        assert_eq!(got.iter().map(|g| g.id.clone()).collect::<Vec<_>>(), ids);
        assert_eq!(got[7].values, vec![7.0, 14.0, 0.5]);
        let m = v.query(&[7.0, 14.0, 0.5], 3, None).await.expect("query");
        assert_eq!(m[0].id, "v007");
        assert_eq!(m[0].score, 0.0, "euclidean distance to itself");

        let doomed: Vec<String> = (0..150).map(|i| format!("v{i:03}")).collect();
        let t = v
            .delete_by_ids("test delete", &doomed)
            .await
            .expect("delete in batches of 100")
            .expect("a write");
        v.wait_applied(t, Duration::from_secs(30), &quiet).await.expect("applied");
        let left = v.list_ids().await.expect("list");
        assert_eq!(left, (150..250).map(|i| format!("v{i:03}")).collect::<Vec<_>>());
    });
}

/// A proxy in front of the emulator: forwards every request, but answers
/// 502 to the first POST whose path ends with `lose`, after the emulator
/// did it: a write whose answer was lost on the way back, which the client
/// retries into its own doing. Returns the base URL to give the client.
async fn losing_proxy(emu: &Emulator, lose: &'static str) -> String {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let origin = emu.base_url.trim_end_matches("/client/v4").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let lost = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (origin, lost, http) = (origin.clone(), lost.clone(), http.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.expect("request body");
            let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let mut forward = http.request(parts.method.clone(), format!("{origin}{path}")).body(body);
            for name in [axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE] {
                if let Some(v) = parts.headers.get(&name) {
                    forward = forward.header(name, v.clone());
                }
            }
            let r = forward.send().await.expect("the emulator answers");
            let status = r.status().as_u16();
            let answer = r.bytes().await.expect("answer body");
            let lose_it = parts.method == axum::http::Method::POST
                && parts.uri.path().ends_with(lose)
                && !lost.swap(true, Ordering::SeqCst);
            let (status, answer) = if lose_it {
                (
                    502,
                    br#"{"success":false,"errors":[{"code":10013,"message":"bad gateway"}]}"#.to_vec().into(),
                )
            } else {
                (status, answer)
            };
            axum::response::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(answer))
                .expect("response")
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/client/v4")
}

/// pgflare's client on `index` through `base_url`.
fn client_at(emu: &Emulator, base_url: &str, index: &str) -> pgflare::cloudflare::Vectorize {
    pgflare::cloudflare::Vectorize::new(emu.api_at(base_url), index)
}

/// The retry of a create whose answer was lost meets the index it made:
/// Vectorize says so with code 3002 (`vectorize.index.duplicate_name`),
/// whose HTTP status is not known (the emulator answers 400); the client
/// took only a 409 for it and failed the load.
#[test]
fn a_create_whose_answer_was_lost_meets_code_3002_and_goes_on_with_the_index() {
    let emu = Emulator::start(&[]);
    let want = IndexConfig { dimensions: 4, metric: "dot-product".into() };
    block_on(async {
        let base = losing_proxy(&emu, "/vectorize/v2/indexes").await;
        let v = client_at(&emu, &base, "raced");
        assert_eq!(v.ensure(&want, true).await.expect("the retried create finds its index"), want);
    });
    assert_eq!(get_index_answer(&emu, "raced").0, 200);
}

/// The same for a metadata index: its retried create is refused as a
/// duplicate (HTTP 400 here, the real answer is not known), and the client
/// took only a 409 for that.
#[test]
fn a_metadata_index_create_whose_answer_was_lost_is_found_listed() {
    let emu = Emulator::start(&[]);
    let want = IndexConfig { dimensions: 2, metric: "cosine".into() };
    let url = format!("{}/accounts/{}/vectorize/v2/indexes", emu.base_url, emu.account);
    block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let body = serde_json::json!({"name": "meta", "config": {"dimensions": 2, "metric": "cosine"}});
        let r = reqwest::Client::new().post(&url).bearer_auth(&emu.token).json(&body).send().await;
        assert!(r.expect("create").status().is_success());
        let base = losing_proxy(&emu, "/metadata_index/create").await;
        let v = client_at(&emu, &base, "meta");
        assert_eq!(v.ensure(&want, false).await.expect("exists"), want);
        let wanted = [("kind".to_string(), "string".to_string()), ("year".to_string(), "number".to_string())];
        v.ensure_metadata_indexes(&wanted).await.expect("the retried create finds its metadata index");
        let mut listed = v.metadata_indexes().await.expect("list");
        listed.sort();
        assert_eq!(listed, wanted.to_vec());
        // A refusal for another reason is still an error, named.
        let e = v
            .ensure_metadata_indexes(&[("$bad".to_string(), "string".to_string())])
            .await
            .expect_err("an invalid property name")
            .to_string();
        assert!(e.contains("40030") && e.contains("$bad"), "{e}");
    });
}

/// `verify --k` above Vectorize's topK limit (100 without values) was
/// accepted, and the parity queries were refused only after the whole
/// source had been read for the exact top-k.
#[test]
fn verify_refuses_a_top_k_vectorize_would_refuse_before_any_work() {
    for k in ["101", "0"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgflare"))
            .args(["verify", "--k", k])
            .env_remove("DATABASE_URL")
            .env_remove("SUPABASE_DB_URL")
            .output()
            .expect("run pgflare");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("--k") && err.contains("from 1 to 100"), "{err}");
    }
}
