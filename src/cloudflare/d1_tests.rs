//! The D1 client against the emulator (in process, over HTTP), with the
//! real service's import and export behaviour: jobs that answer `active`
//! before they end, each failure form, a database refused while a job
//! holds it, and string-only parameters.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::cloudflare::client::ApiSettings;
use crate::emulator::{Emulator, EmulatorConfig, FailureForm, TransferOptions};

const TOKEN: &str = "d1-test-token";

async fn emulator(transfers: TransferOptions) -> (Emulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EmulatorConfig { d1_transfers: transfers, ..EmulatorConfig::for_tests(dir.path(), TOKEN) };
    (Emulator::start(cfg).await.expect("emulator"), dir)
}

fn client(emu: &Emulator, d1_wait: Duration) -> D1 {
    let settings = ApiSettings {
        timeouts: crate::timeouts::Timeouts { d1_wait, ..Default::default() },
        ..ApiSettings::for_tests(&emu.base_url, TOKEN)
    };
    D1::new(Arc::new(Api::new(settings).expect("api")), "db1")
}

fn polls(failure: FailureForm) -> TransferOptions {
    TransferOptions { polls: 3, failure, ..TransferOptions::default() }
}

#[tokio::test]
async fn an_import_polled_through_its_active_answers_completes() {
    let (emu, _dir) = emulator(polls(FailureForm::Wrangler)).await;
    let d1 = client(&emu, Duration::from_secs(60));
    let sql = "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT);\nINSERT INTO t VALUES (1, 'a'), (2, 'b');\n";
    let applied = d1.import("import test", bytes::Bytes::from(sql)).await.expect("import");
    assert_eq!((applied.statements, applied.rows_written), (2, 2));
    let rows = d1.select("count", "SELECT count(*) AS n FROM t", &[]).await.expect("select");
    assert_eq!(rows[0]["n"], 2);
}

/// Found by the emulator's failure forms: the client read only `error`
/// and so showed "import failed" for wrangler's `errors`, and took a
/// refusal (`success: false`) for a running import and polled it with a
/// null bookmark.
#[tokio::test]
async fn a_failed_import_shows_cloudflares_text_in_every_form() {
    for form in [FailureForm::Wrangler, FailureForm::Schema, FailureForm::Refusal] {
        let (emu, _dir) = emulator(polls(form)).await;
        let d1 = client(&emu, Duration::from_secs(60));
        d1.query("schema", "CREATE TABLE t (id INTEGER PRIMARY KEY)").await.expect("create");
        let sql = "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (1);\n";
        let err = d1.import("import test", bytes::Bytes::from(sql)).await.expect_err("duplicate key");
        let text = err.to_string();
        assert!(text.contains("UNIQUE constraint failed: t.id"), "{form:?}: {text}");
        assert!(!text.contains("current_bookmark"), "{form:?}: polled without a bookmark: {text}");
        let rows = d1.select("count", "SELECT count(*) AS n FROM t", &[]).await.expect("select");
        assert_eq!(rows[0]["n"], 0, "{form:?}: a failed import leaves nothing");
    }
}

/// Found by the emulator's asynchronous export: the client read an
/// export's failure from `error` only with `to_string()` (quotes) and
/// polled a refusal with a null bookmark.
#[tokio::test]
async fn an_export_that_d1_refuses_shows_cloudflares_text_in_every_form() {
    for form in [FailureForm::Wrangler, FailureForm::Schema, FailureForm::Refusal] {
        let (emu, dir) = emulator(polls(form)).await;
        let d1 = client(&emu, Duration::from_secs(60));
        d1.query("schema", "CREATE VIRTUAL TABLE docs USING fts5(body)").await.expect("create");
        let err = d1.export_to("verify", &dir.path().join("dump.sql")).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("cannot export databases with Virtual Tables"), "{form:?}: {text}");
        assert!(!text.contains("current_bookmark"), "{form:?}: {text}");
    }
}

#[tokio::test]
async fn an_export_polled_through_its_active_answers_downloads_the_dump() {
    let (emu, dir) = emulator(polls(FailureForm::Wrangler)).await;
    let d1 = client(&emu, Duration::from_secs(60));
    d1.query("schema", "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (7)").await.expect("t");
    let path = dir.path().join("dump.sql");
    let n = d1.export_to("verify", &path).await.expect("export");
    let dump = std::fs::read_to_string(&path).expect("dump");
    assert_eq!(n.bytes, dump.len() as u64);
    assert!(n.at_bookmark.is_some(), "an export names the state it holds");
    assert!(dump.contains("INSERT INTO") && dump.contains("7"), "{dump}");
}

/// Starts an import with the wire calls of another client and leaves it
/// unpolled: the database stays held until the emulator drops it.
async fn hold_with_an_import(emu: &Emulator) -> String {
    let http = reqwest::Client::new();
    let url = format!("{}/accounts/acct/d1/database/db1/import", emu.base_url);
    let sql = "CREATE TABLE held (id INTEGER PRIMARY KEY);\n";
    let etag = hex::encode(Md5::digest(sql.as_bytes()));
    let post = |body: Value| http.post(&url).bearer_auth(TOKEN).json(&body).send();
    let init: Value =
        post(json!({"action": "init", "etag": etag})).await.expect("init").json().await.expect("j");
    let upload = init["result"]["upload_url"].as_str().expect("upload_url");
    http.put(upload).body(sql).send().await.expect("upload");
    let filename = init["result"]["filename"].clone();
    let ingest: Value = post(json!({"action": "ingest", "filename": filename, "etag": etag}))
        .await
        .expect("ingest")
        .json()
        .await
        .expect("json");
    assert_eq!(ingest["result"]["status"], "active", "{ingest}");
    ingest["result"]["at_bookmark"].as_str().expect("bookmark").to_string()
}

/// Found by the emulator refusing requests while a job runs: a query sent
/// then failed the whole run with HTTP 400.
#[tokio::test]
async fn a_query_waits_for_a_database_another_import_holds() {
    let opts = TransferOptions { poll_timeout: Duration::from_millis(1500), ..polls(FailureForm::Wrangler) };
    let (emu, _dir) = emulator(opts).await;
    let d1 = client(&emu, Duration::from_secs(30));
    hold_with_an_import(&emu).await;
    let started = std::time::Instant::now();
    let rows = d1.select("after the held import", "SELECT 1 AS one", &[]).await.expect("waited");
    assert_eq!(rows[0]["one"], 1);
    assert!(started.elapsed() >= Duration::from_millis(1000), "it waited: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_database_held_past_the_wait_fails_with_cloudflares_text_and_the_flag() {
    let opts = TransferOptions { poll_timeout: Duration::from_secs(60), ..polls(FailureForm::Wrangler) };
    let (emu, _dir) = emulator(opts).await;
    let d1 = client(&emu, Duration::from_secs(2));
    hold_with_an_import(&emu).await;
    let err = d1.query("schema", "CREATE TABLE t (id)").await.expect_err("still held");
    let text = err.to_string();
    assert!(text.contains("Currently processing a long-running import"), "{text}");
    assert!(text.contains("--d1-wait"), "{text}");
    let err = d1.import("import", bytes::Bytes::from("CREATE TABLE u (id);\n")).await.expect_err("held");
    assert!(err.to_string().contains("long-running import"), "{err}");
}

/// Found by the emulator holding `params` to the schema (strings only):
/// the client sent numbers.
#[tokio::test]
async fn select_sends_numbers_as_text_and_integer_keys_still_match() {
    let (emu, _dir) = emulator(TransferOptions::default()).await;
    let d1 = client(&emu, Duration::from_secs(30));
    d1.query("schema", "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, j TEXT); \
                        INSERT INTO t VALUES (5, 10, '{\"at\": 100}'), (9223372036854775807, 2, '{\"at\": 300}')")
        .await
        .expect("t");
    let rows = d1.select("by key", "SELECT id FROM t WHERE id = ?1", &[json!(5)]).await.expect("by key");
    assert_eq!(rows, vec![json!({"id": 5})]);
    let rows =
        d1.select("rowid", "SELECT id FROM t WHERE rowid > ?1 ORDER BY rowid", &[json!(5)]).await.expect("r");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let sql = "SELECT id FROM t WHERE json_extract(j, '$.at') < CAST(?1 AS INTEGER)";
    let rows = d1.select("json", sql, &[json!(200)]).await.expect("json");
    assert_eq!(rows, vec![json!({"id": 5})]);
    let err = d1.select("null", "SELECT ?1", &[Value::Null]).await.expect_err("no null param");
    assert!(err.to_string().contains("D1's API takes strings"), "{err}");
}
