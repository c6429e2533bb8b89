//! `pgflare load` with Vectorize: seeded Postgres into NDJSON files and
//! into the emulator's Vectorize API, checked vector by vector (float32
//! bits, metadata) by an independent reader (`compare_vectorize.py`), the
//! similarity order checked against an exact computation from the source
//! values, rows Vectorize would refuse handled by policy, and a load killed
//! during its Vectorize upload run again to an exact result.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

const METADATA: &str = "document_id,chunk_index,token_count,tags,created_at,updated_at";

/// `pgflare init`'s config for the seeded tables, with `extra` lines in
/// its `[vectorize]` section.
fn init_config(db: &TestDb, dir: &Path, extra: &str) -> PathBuf {
    let config = PathBuf::from(crate::common::init_config(db, dir));
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("\n[vectorize]\n"), "init writes a [vectorize] section");
    std::fs::write(&config, text.replace("\n[vectorize]\n", &format!("\n[vectorize]\n{extra}\n")))
        .expect("write");
    config
}

fn compare_vectors(db: &TestDb, target: &[&str], extra: &[&str], token: &str) -> (bool, serde_json::Value) {
    let mut args = vec![db.url.as_str(), "public.chunks", "--vector", "embedding", "--metadata", METADATA];
    args.extend_from_slice(target);
    args.extend_from_slice(extra);
    let o = python_env("compare_vectorize.py", &args, &[("CLOUDFLARE_API_TOKEN", token)]);
    let v =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("compare_vectorize.py: {}", text(&o)));
    (o.status.success(), v)
}

#[test]
fn ndjson_files_hold_every_vector_exactly_and_validate() {
    let db = TestDb::new("vecfiles");
    db.seed(700, 16);
    let dir = temp_dir("vecfiles");
    let config = init_config(&db, dir.path(), "vectors_per_request = 100");
    let out = dir.path().join("out");
    let o = pgflare(
        &db,
        &[
            "--json",
            "load",
            "--config",
            config.to_str().expect("p"),
            "--target",
            "files",
            "--out",
            out.to_str().expect("p"),
            "--partition-mib",
            "1",
            "--state-dir",
            dir.path().join("state").to_str().expect("p"),
        ],
    );
    let s: serde_json::Value = ok_json(o);
    let v = &table(&s, "public.chunks")["vectors"];
    let nulls = db.count("SELECT count(*)::text FROM chunks WHERE embedding IS NULL");
    assert!(nulls > 0, "the seed has NULL embeddings");
    assert_eq!(v["null"].as_u64(), Some(nulls), "{s:#}");
    assert_eq!(
        v["written"].as_u64(),
        Some(db.count("SELECT count(*)::text FROM chunks WHERE embedding IS NOT NULL"))
    );
    assert_eq!(v["skipped"], 0);

    // Every file: at most vectors_per_request lines, under 100 MB, valid lines.
    let vdir = out.join("vectorize");
    let files: Vec<PathBuf> = std::fs::read_dir(vdir.join("chunks"))
        .expect("vectorize/chunks")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(files.len() >= 7, "700 vectors at 100 per file: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        assert!(text.lines().count() <= 100 && text.len() < 100_000_000, "{f:?}");
        assert!(text.ends_with('\n'));
    }
    assert_schema("vectorize-ndjson", &files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let manifest = out.join("manifest.json");
    assert_schema("d1-files-manifest", &[&manifest]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("m")).expect("json");
    let listed = m["vectorize"]["tables"][0]["files"].as_array().expect("files").len();
    assert_eq!(listed, files.len());

    let (same, report) = compare_vectors(
        &db,
        &["--ndjson", vdir.to_str().expect("p")],
        &["--config", config.to_str().expect("p")],
        "",
    );
    assert!(same, "{report:#}");

    // The reader must see a changed float (one ulp) and name the vector.
    let victim = &files[0];
    let text = std::fs::read_to_string(victim).expect("read");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    let x = first["values"][0].as_f64().expect("f") as f32;
    let bumped = f32::from_bits(x.to_bits() + 1);
    let mut line: serde_json::Value = first.clone();
    line["values"][0] = serde_json::json!(bumped as f64);
    let tampered = text.replacen(text.lines().next().expect("l"), &line.to_string(), 1);
    std::fs::write(victim, tampered).expect("tamper");
    let (same, report) = compare_vectors(
        &db,
        &["--ndjson", vdir.to_str().expect("p")],
        &["--config", config.to_str().expect("p")],
        "",
    );
    assert!(!same);
    assert_eq!(report["differences"][0]["id"], first["id"]);
    assert_eq!(report["differences"][0]["kind"], "values");
}

/// A table with every kind of row Vectorize refuses.
fn bad_rows(db: &TestDb) {
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE items (id text PRIMARY KEY, embedding vector, note text);
         INSERT INTO items VALUES
           ('ok1', '[1,2,3]', 'fine'),
           ('ok2', '[0.5,-0.25,1e-7]', NULL),
           ('wrong-dims', '[1,2,3,4]', 'four'),
           (repeat('k', 70), '[1,1,1]', 'long id'),
           ('big-metadata', '[3,2,1]', repeat('m', 11 * 1024)),
           ('no-vector', NULL, 'null vector');",
    );
}

fn bad_rows_config(dir: &Path, policy: &str) -> PathBuf {
    let config = dir.join("pgflare.toml");
    std::fs::write(
        &config,
        format!(
            "[vectorize]\ndimensions = 3\non_invalid = \"{policy}\"\n\n\
             [[tables]]\nname = \"items\"\nvector = \"embedding\"\nvector_metadata = [\"note\"]\n"
        ),
    )
    .expect("config");
    config
}

#[test]
fn rows_vectorize_refuses_are_skipped_and_named_or_stop_the_load() {
    let db = TestDb::new("vecbad");
    bad_rows(&db);
    let dir = temp_dir("vecbad");
    let (sqlite, vout) = (dir.path().join("d1.sqlite"), dir.path().join("vectors"));
    let run = |policy: &str, state: &str| {
        let config = bad_rows_config(dir.path(), policy);
        pgflare(
            &db,
            &[
                "--json",
                "load",
                "--config",
                config.to_str().expect("p"),
                "--target",
                "sqlite",
                "--sqlite",
                sqlite.to_str().expect("p"),
                "--vectorize-out",
                vout.to_str().expect("p"),
                "--state-dir",
                dir.path().join(state).to_str().expect("p"),
            ],
        )
    };

    // fail: exit 2, the first refused row named with its limit and the way out.
    let o = run("fail", "state-fail");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "table public.items, column note, row id=big-metadata: makes the metadata 11275 bytes of JSON \
             (11266 of them from this value); Vectorize allows 10240 per vector"
        ),
        "{err}"
    );
    assert!(err.contains("on_invalid = \"skip\""), "{err}");

    // skip: the other vectors load, the refused rows are named, D1 has every row.
    // The natural next step, the same command with `skip`, resumes that load.
    let s: serde_json::Value = ok_json(run("skip", "state-fail"));
    let v = &table(&s, "public.items")["vectors"];
    assert_eq!(
        (v["written"].as_u64(), v["null"].as_u64(), v["skipped"].as_u64()),
        (Some(2), Some(1), Some(3)),
        "{s:#}"
    );
    let rejected: Vec<String> = v["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            format!(
                "{} | {} | {}",
                r["key"].as_str().unwrap_or(""),
                r["column"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        rejected.iter().any(|r| r == "id=wrong-dims | embedding | has 4 dimensions; the index has 3"),
        "{rejected:?}"
    );
    assert!(
        rejected.iter().any(|r| r.starts_with(&format!("id={} | id | id `", "k".repeat(70)))
            && r.ends_with("is 70 bytes; Vectorize ids are 1 to 64")),
        "{rejected:?}"
    );
    assert!(
        rejected.iter().any(|r| r.starts_with("id=big-metadata | note | makes the metadata 11275 bytes")
            && r.contains("Vectorize allows 10240 per vector")),
        "{rejected:?}"
    );
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(vout.join("items").join("part-00000-000.ndjson"))
            .expect("ndjson")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["ok1", "ok2"]);
    assert_eq!(lines[0]["metadata"], serde_json::json!({"note": "fine"}));
    assert_eq!(lines[1]["metadata"], serde_json::json!({}), "a NULL column is an absent key");
    assert_eq!(lines[1]["values"], serde_json::json!([0.5, -0.25, 1e-7]));
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    let n: i64 = c.query_row("SELECT count(*) FROM items", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 6, "every row is in D1, with or without its vector");
}

fn api_args<'a>(config: &'a str, state: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--json",
        "load",
        "--config",
        config,
        "--target",
        "api",
        "--d1-database-id",
        "db1",
        "--vectorize-index",
        "chunks-index",
        "--create-index",
        "--partition-mib",
        "1",
        "--state-dir",
        state,
    ];
    a.extend_from_slice(extra);
    a
}

fn api_target(emu: &Emulator) -> Vec<String> {
    vec!["--api".into(), emu.base_url.clone(), emu.account.clone(), "chunks-index".into()]
}

fn compare_api(db: &TestDb, emu: &Emulator, extra: &[&str]) -> serde_json::Value {
    let target = api_target(emu);
    let t: Vec<&str> = target.iter().map(String::as_str).collect();
    let (same, v) = compare_vectors(db, &t, extra, &emu.token);
    assert!(same, "Vectorize differs from the source: {v:#}");
    v
}

#[test]
fn api_load_fills_d1_and_vectorize_and_queries_agree_with_exact_cosine() {
    let db = TestDb::new("vecapi");
    db.seed(700, 16);
    // Writes become visible 0.7 s after they are accepted: the load must
    // wait for them. Injected 5xx answers and connections dropped after the
    // work was done: retried writes (and creates) must still end exact.
    let emu = Emulator::start(&[
        "--vectorize-delay-ms",
        "700",
        "--fail-rate",
        "0.1",
        "--drop-rate",
        "0.05",
        "--seed",
        "7",
    ]);
    let dir = temp_dir("vecapi");
    let config = init_config(&db, dir.path(), "vectors_per_request = 250");
    let state = dir.path().join("state");
    let (c, st) = (config.to_str().expect("p"), state.to_str().expect("p"));
    let o = emu.command(&db).args(api_args(c, st, &[])).output().expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let s: serde_json::Value = ok_json(o);
    assert_eq!(s["complete"], true);
    assert!(stderr.contains("retrying"), "the faults happened and were ridden out: {stderr}");
    assert!(!stderr.contains(&emu.token), "the token never reaches the output");
    assert!(s["vectorize"]
        .as_str()
        .expect("vectorize target")
        .contains("/vectorize/v2/indexes/chunks-index"));
    // Read back at once: every vector is visible only if the load waited.
    let v = compare_api(&db, &emu, &["--config", c, "--topk", "10", "--queries", "5"]);
    assert_eq!(v["topk_queries"], 5);
    assert_eq!(v["null_vectors"].as_u64(), table(&s, "public.chunks")["vectors"]["null"].as_u64());
    assert_d1_matches(&db, &emu.d1_file("db1"), &["documents", "chunks:::-embedding"]);

    // The index has the column's dimension and the init mapping's metadata indexes.
    let http = |path: &str| {
        let url =
            format!("{}/accounts/{}/vectorize/v2/indexes/chunks-index{path}", emu.base_url, emu.account);
        block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            // The emulator injects faults here too: retry until an answer.
            for _ in 0..20 {
                let r = reqwest::Client::new().get(&url).bearer_auth(&emu.token).send().await;
                if let Some(r) = r.ok().filter(|r| r.status().is_success()) {
                    return r.json::<serde_json::Value>().await.expect("json")["result"].clone();
                }
            }
            panic!("no answer from {url}")
        })
    };
    assert_eq!(http("")["config"]["dimensions"], 16);
    let indexed: Vec<String> = http("/metadata_index/list")["metadataIndexes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["propertyName"].as_str().expect("name").to_string())
        .collect();
    assert!(indexed.contains(&"document_id".to_string()), "{indexed:?}");
    // init flags the most frequent tags: each flag has its boolean index.
    let flags = indexed.iter().filter(|p| p.starts_with("tags_")).count();
    assert_eq!((indexed.len(), flags), (10, 7), "{indexed:?}");
}

#[test]
fn a_load_killed_during_the_vectorize_upload_ends_exact() {
    let db = TestDb::new("veckill");
    db.seed(2500, 16);
    let emu = Emulator::start(&["--latency-ms", "100", "--vectorize-delay-ms", "300"]);
    let dir = temp_dir("veckill");
    let config = init_config(&db, dir.path(), "vectors_per_request = 50");
    let state = dir.path().join("state");
    let (c, st) = (config.to_str().expect("p"), state.to_str().expect("p"));
    let args = api_args(c, st, &["--jobs", "2"]);
    let mut child = emu.command(&db).args(&args).stdout(std::process::Stdio::null()).spawn().expect("spawn");
    // Kill once one range is confirmed: Vectorize holds part of the vectors.
    let started = Instant::now();
    loop {
        let done = load_state_file(&state).is_some_and(|f| {
            std::fs::read_to_string(f)
                .is_ok_and(|t| t.contains("\"done\": true") && t.contains("\"written\""))
        });
        if done || started.elapsed() > Duration::from_secs(90) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    assert!(!child.wait().expect("wait").success(), "the load finished before it could be killed");

    let o = emu.command(&db).args(&args).output().expect("rerun");
    let s: serde_json::Value = ok_json(o);
    assert_eq!(s["resumed"], true);
    let v = compare_api(&db, &emu, &["--config", c]);
    assert_eq!(v["listed"], v["source_vectors"], "no extra and none missing: {v:#}");
    assert_d1_matches(&db, &emu.d1_file("db1"), &["documents", "chunks:::-embedding"]);
}

#[test]
fn wrangler_upserts_the_loads_ndjson_files_unchanged() {
    let db = TestDb::new("vecwrangler");
    db.seed(250, 16);
    let dir = temp_dir("vecwrangler");
    let config = init_config(&db, dir.path(), "vectors_per_request = 100");
    let out = dir.path().join("out");
    let (c, o, st) = (config.to_str().expect("p"), out.to_str().expect("p"), dir.path().join("state"));
    ok(pgflare(
        &db,
        &["load", "--config", c, "--target", "files", "--out", o, "--state-dir", st.to_str().expect("p")],
    ));
    let emu = Emulator::start(&[]);
    let wrangler = |args: &[&str]| {
        let bin =
            std::env::var("PGFLARE_WRANGLER").expect("PGFLARE_WRANGLER (scripts/test.sh installs wrangler)");
        let o = std::process::Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join(".config"))
            .env("CLOUDFLARE_API_BASE_URL", &emu.base_url)
            .env("CLOUDFLARE_API_TOKEN", &emu.token)
            .env("CLOUDFLARE_ACCOUNT_ID", &emu.account)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .output()
            .expect("run wrangler");
        assert!(o.status.success(), "wrangler {args:?}: {}", text(&o));
    };
    wrangler(&["vectorize", "create", "chunks-index", "--dimensions", "16", "--metric", "cosine"]);
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("vectorize/chunks"))
        .expect("ndjson folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        wrangler(&["vectorize", "upsert", "chunks-index", "--file", f.to_str().expect("p")]);
    }
    let v = compare_api(&db, &emu, &["--config", config.to_str().expect("p")]);
    assert_eq!(v["listed"], v["source_vectors"], "{v:#}");
}

#[test]
fn halfvec_values_are_written_widened_exactly() {
    let db = TestDb::new("vechalf");
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE h (id bigint PRIMARY KEY, e halfvec(3));
         INSERT INTO h VALUES (1, '[0.5,-2,0.1]'), (2, '[65504,-0.000061035156,0]');",
    );
    let dir = temp_dir("vechalf");
    let config = dir.path().join("pgflare.toml");
    std::fs::write(&config, "[[tables]]\nname = \"h\"\nvector = \"e\"\n").expect("config");
    let out = dir.path().join("out");
    let st = dir.path().join("state");
    let args = [
        "load",
        "--config",
        config.to_str().expect("p"),
        "--target",
        "files",
        "--out",
        out.to_str().expect("p"),
    ];
    ok(pgflare(&db, &[&args[..], &["--state-dir", st.to_str().expect("p")]].concat()));
    let text = std::fs::read_to_string(out.join("vectorize/h/part-00000-000.ndjson")).expect("ndjson");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let bits = |v: &serde_json::Value| -> Vec<u32> {
        v["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|x| (x.as_f64().expect("f") as f32).to_bits())
            .collect()
    };
    // float16 holds 0.1 as 1638/16384 = 0.0999755859375; 2^-14 is its smallest normal.
    assert_eq!(lines[0]["id"], "1");
    assert_eq!(bits(&lines[0]), [0.5f32, -2.0, 1638.0 / 16384.0].map(f32::to_bits));
    assert_eq!(bits(&lines[1]), [65504.0f32, -(2f32.powi(-14)), 0.0].map(f32::to_bits));
}
