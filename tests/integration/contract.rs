//! Contract tests with clients we did not write (issue 13): Cloudflare's
//! official Python SDK (PyPI `cloudflare`, generated from the OpenAPI
//! schema) calls every D1 and Vectorize endpoint pgflare uses against
//! `pgflare emulate` and every answer must parse with the SDK's own types
//! (tests/py/sdk_contract.py); and the emulator's request log shows that
//! pgflare and wrangler send the same request shapes for the same job: the
//! D1 import flow (init, upload, ingest, poll) and Vectorize upserts.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;
use crate::wrangler::{remote_project, wrangler_remote};

/// The steps sdk_contract.py reports with `ok`: a step that silently did
/// not run fails the test too.
const SDK_STEPS: usize = 15;

#[test]
fn cloudflares_python_sdk_parses_every_answer_of_the_emulator() {
    let emu = Emulator::start(&[]);
    let o = python_env(
        "sdk_contract.py",
        &[&emu.base_url, &emu.account, "db1", "contract-index"],
        &[("CLOUDFLARE_API_TOKEN", &emu.token)],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "the SDK refused answers of the emulator:\n{}", text(&o));
    let oks = out.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(oks, SDK_STEPS, "every step ran:\n{out}");
}

/// The distinct (method, path, media type, body shape) of the lines whose
/// path template ends with one of `tails`.
fn kinds(lines: &[Value], tails: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l["path"].as_str().is_some_and(|p| tails.iter().any(|t| p.ends_with(t))))
        .map(|l| {
            let media =
                l["content_type"].as_str().map(|c| c.split(';').next().unwrap_or("").trim().to_string());
            format!("{} {} {:?} {}", l["method"], l["path"], media, l["body"])
        })
        .collect()
}

#[test]
fn the_request_log_holds_shapes_never_values_or_tokens() {
    let dir = temp_dir("reqlog");
    let log = dir.path().join("requests.jsonl");
    let emu = Emulator::start(&["--request-log", log.to_str().expect("p")]);
    let project = remote_project(dir.path());
    let secret = "value-that-must-not-be-logged-7f3a";
    wrangler_remote(
        &project,
        &emu,
        &["d1", "execute", "db1", "--remote", "--command", &format!("SELECT '{secret}' AS s")],
    );
    let lines = request_log(&log);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(secret) && !text.contains(&emu.token) && !text.contains(&emu.account), "{text}");
    let q =
        lines.iter().find(|l| l["path"].as_str().is_some_and(|p| p.ends_with("/query"))).expect("query line");
    assert_eq!(q["path"], "/client/v4/accounts/{account}/d1/database/{db}/query");
    assert_eq!((q["method"].as_str(), q["status"].as_u64()), (Some("POST"), Some(200)));
    assert_eq!(q["body"], serde_json::json!({"json": {"sql": "string"}}), "{q}");
}

#[test]
fn pgflare_and_wrangler_send_the_same_import_and_upsert_shapes() {
    let db = TestDb::new("contract");
    db.seed(3000, 8);
    let dir = temp_dir("contract");

    // pgflare: a load through the API (D1 import, Vectorize upserts).
    let ours = dir.path().join("pgflare.jsonl");
    let emu = Emulator::start(&["--request-log", ours.to_str().expect("p")]);
    let config = init_config(&db, dir.path());
    let c = config.as_str();
    let state = dir.path().join("state");
    let load = [
        "--json",
        "load",
        "--config",
        c,
        "--target",
        "api",
        "--d1-database-id",
        "db1",
        "--vectorize-index",
        "chunks-index",
        "--create-index",
        "--import-mib",
        "1",
        "--partition-mib",
        "4",
        "--state-dir",
        state.to_str().expect("p"),
    ];
    let o = emu.command(&db).args(load).output().expect("run pgflare");
    let s: Value = ok_json(o);
    assert_eq!(s["complete"], true, "{s:#}");
    let pg_lines = request_log(&ours);

    // wrangler: the same jobs, on an emulator of its own. Its SQL file is
    // one of the D1 files pgflare writes for wrangler; its NDJSON holds
    // vectors as pgflare stored them (id, values, metadata).
    let theirs = dir.path().join("wrangler.jsonl");
    let wemu = Emulator::start(&["--request-log", theirs.to_str().expect("p")]);
    let project = remote_project(dir.path());
    let sql = dir.path().join("import.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);\nINSERT INTO t VALUES (1, 'a');\n",
    )
    .expect("write");
    wrangler_remote(
        &project,
        &wemu,
        &["d1", "execute", "db1", "--remote", "--file", sql.to_str().expect("p"), "-y"],
    );
    let stored = emu.vectorize("chunks-index");
    let ids: Vec<String> = block_on(stored.list_ids()).expect("list").into_iter().take(3).collect();
    let vectors = block_on(stored.get_by_ids(&ids)).expect("get");
    let dims = vectors[0].values.len().to_string();
    let ndjson: Vec<String> = vectors
        .iter()
        .map(|v| {
            let mut line = serde_json::json!({"id": v.id, "values": v.values});
            if let Some(m) = &v.metadata {
                line["metadata"] = m.clone();
            }
            line.to_string()
        })
        .collect();
    let file = dir.path().join("v.ndjson");
    std::fs::write(&file, ndjson.join("\n") + "\n").expect("write");
    let w = |args: &[&str]| wrangler_remote(&project, &wemu, args);
    w(&["vectorize", "create", "chunks-index", "--dimensions", &dims, "--metric", "cosine"]);
    w(&["vectorize", "upsert", "chunks-index", "--file", file.to_str().expect("p")]);
    let w_lines = request_log(&theirs);

    // The import flow: the same requests with the same bodies.
    let import = ["/import", "/__upload/{id}"];
    let (ours_import, theirs_import) = (kinds(&pg_lines, &import), kinds(&w_lines, &import));
    let used = |verb: &str, tail: &str| {
        ours_import.iter().any(|k| k.starts_with(&format!("\"{verb}\"")) && k.contains(tail))
    };
    assert!(
        used("POST", "/import") && used("PUT", "/__upload/"),
        "pgflare used the import flow: {ours_import:#?}"
    );
    assert_eq!(ours_import, theirs_import, "pgflare's import requests differ from wrangler's");

    // Upserts: pgflare sends NDJSON, wrangler multipart with a `vectors`
    // part (both documented: cloudflare.md, Vectorize v2); the lines in
    // them have the same shape.
    let lines_of = |lines: &[Value]| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| l["path"].as_str().is_some_and(|p| p.ends_with("/upsert")))
            .flat_map(|l| {
                let b = &l["body"];
                let nd =
                    if b["ndjson"].is_array() { &b["ndjson"] } else { &b["multipart"]["vectors"]["ndjson"] };
                nd.as_array().cloned().unwrap_or_default()
            })
            .map(|s| s.to_string())
            .collect()
    };
    let (ours_up, theirs_up) = (lines_of(&pg_lines), lines_of(&w_lines));
    assert!(!ours_up.is_empty() && !theirs_up.is_empty(), "both upserted: {ours_up:?} {theirs_up:?}");
    assert!(
        theirs_up.is_subset(&ours_up),
        "wrangler's vector lines {theirs_up:#?} are not shapes pgflare sends {ours_up:#?}"
    );
}

/// Logging must not change an answer: with `--request-log`, an upload
/// streamed without a length and over Vectorize's 100 MB was handed on
/// empty, and refused as an empty body rather than as too large.
#[test]
fn the_request_log_leaves_an_oversized_upload_its_own_refusal() {
    let dir = temp_dir("reqlogbig");
    let log = dir.path().join("requests.jsonl");
    let emu = Emulator::start(&["--request-log", log.to_str().expect("p")]);
    let index = emu.vectorize("big");
    let want = pgflare::cloudflare::vectorize::IndexConfig { dimensions: 4, metric: "cosine".into() };
    block_on(index.ensure(&want, true)).expect("create the index");
    let url = format!("{}/accounts/{}/vectorize/v2/indexes/big/upsert", emu.base_url, emu.account);
    let (status, body) = block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // 101 chunks of 1,000,000 bytes, sent chunked (no Content-Length).
        let chunks = futures::stream::iter(
            (0..101).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1_000_000]))),
        );
        let r = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&emu.token)
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .expect("send");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("40015") && body.contains("100 MB"), "{body}");
    let lines = request_log(&log);
    let upsert =
        lines.iter().find(|l| l["path"].as_str().is_some_and(|p| p.ends_with("/upsert"))).expect("line");
    assert_eq!(upsert["status"], 413, "{upsert}");
}
