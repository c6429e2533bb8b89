//! The D1 REST API's shapes as the real service has them: imports and
//! exports as asynchronous jobs holding the database, their failure forms,
//! request bodies held to the OpenAPI schema, the paged database list.

use serde_json::{json, Value};

use super::harness::{self, import};
use crate::common::{self, Emulator, ACCOUNT, DB, TOKEN};

/// D1's imports and exports are jobs: `active` for some polls, the
/// database refused to everything else meanwhile, the end answered once,
/// a poll without a bookmark refused by the schema.
#[test]
fn emulator_transfers_are_asynchronous_and_hold_the_database() {
    let emu = Emulator::start(&["--transfer-polls", "3"]);
    common::block_on(async {
        let url = emu.db_url(DB, "import");
        let sql = "CREATE TABLE t (id INTEGER PRIMARY KEY);\n";
        let etag = harness::md5_hex(sql.as_bytes());
        let (_, init) = emu.post(&url, json!({ "action": "init", "etag": etag })).await;
        let upload = init["result"]["upload_url"].as_str().expect("upload_url");
        emu.http.put(upload).body(sql).send().await.expect("PUT");
        let filename = init["result"]["filename"].clone();
        let (_, v) = emu.post(&url, json!({ "action": "ingest", "filename": filename, "etag": etag })).await;
        assert_eq!(v["result"]["status"], "active", "{v}");
        let bm = v["result"]["at_bookmark"].clone();
        // Everything else on the database is refused while it runs.
        let (status, q) = emu.query(json!({ "sql": "SELECT 1" })).await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(q["errors"][0]["code"], 7500);
        assert_eq!(q["errors"][0]["message"], "Currently processing a long-running import.");
        let other = harness::md5_hex(b"other");
        let (_, v) = emu.post(&url, json!({ "action": "init", "etag": other })).await;
        assert_eq!(
            v["result"],
            json!({ "success": false, "error": "Currently processing a long-running import." })
        );
        let (_, v) = emu.post(&emu.db_url(DB, "export"), json!({ "output_format": "polling" })).await;
        assert_eq!(v["result"]["success"], false, "{v}");
        // A poll without a bookmark is not a poll the schema allows.
        for bad in [json!({ "action": "poll" }), json!({ "action": "poll", "current_bookmark": null })] {
            let (status, v) = emu.post(&url, bad.clone()).await;
            assert_eq!((status, v["errors"][0]["code"].clone()), (400, json!(10001)), "{bad}: {v}");
        }
        let (_, v) = emu.post(&url, json!({ "action": "poll", "current_bookmark": "0-0-nope" })).await;
        assert_eq!(v["result"], json!({ "success": false, "error": "Not currently importing anything." }));
        let poll = json!({ "action": "poll", "current_bookmark": bm });
        // `--transfer-polls 3` is a minimum: the ingest was the first active
        // answer, two more polls are active whatever happens, and the job
        // completes when its SQL has run too (later on a loaded machine).
        let mut statuses = Vec::new();
        while statuses.last().map(String::as_str) != Some("complete") && statuses.len() < 50 {
            let (_, v) = emu.post(&url, poll.clone()).await;
            statuses.push(v["result"]["status"].as_str().unwrap_or("-").to_string());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(statuses[..2], ["active", "active"], "ingest was the first active answer: {statuses:?}");
        assert_eq!(statuses.last().map(String::as_str), Some("complete"), "{statuses:?}");
        assert!(statuses[..statuses.len() - 1].iter().all(|s| s == "active"), "{statuses:?}");
        let (_, v) = emu.post(&url, poll).await;
        assert_eq!(v["result"]["error"], "Not currently importing anything.", "the end is answered once");
        emu.ok("SELECT count(*) FROM t").await;
    });
}

#[test]
fn emulator_failure_forms_and_the_export_of_a_virtual_table() {
    for (form, field) in [("wrangler", "error"), ("schema", "error"), ("refusal", "")] {
        let emu = Emulator::start(&["--transfer-failure", form, "--transfer-polls", "0"]);
        common::block_on(async {
            emu.ok("CREATE VIRTUAL TABLE docs USING fts5(body)").await;
            let (_, v) = emu.post(&emu.db_url(DB, "export"), json!({ "output_format": "polling" })).await;
            let mut v = v["result"].clone();
            for _ in 0..50 {
                if v["status"] != "active" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let body = json!({ "output_format": "polling", "current_bookmark": v["at_bookmark"] });
                v = emu.post(&emu.db_url(DB, "export"), body).await.1["result"].clone();
            }
            if field.is_empty() {
                assert_eq!(v["success"], false, "{form}: {v}");
            } else {
                assert_eq!(v["status"], "error", "{form}: {v}");
            }
            let text = v["error"].as_str().unwrap_or_default();
            assert!(text.contains("cannot export databases with Virtual Tables"), "{form}: {v}");
            if form == "refusal" {
                return; // the harness's import reads only answers that succeed
            }
            let failed = import(&emu, "INSERT INTO nowhere VALUES (1);\n").await;
            match form {
                "wrangler" => {
                    assert!(failed["errors"][0].as_str().is_some_and(|e| e.contains("no such table")))
                }
                "schema" => assert!(failed["error"].as_str().is_some_and(|e| e.contains("no such table"))),
                _ => {}
            }
        });
    }
}

/// Request bodies are held to the OpenAPI schema (params are strings).
#[test]
fn emulator_refuses_bodies_the_schema_does_not_allow() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        let bad = [
            json!({ "sql": "SELECT ?1", "params": [1] }),
            json!({ "sql": "SELECT ?1", "params": [null] }),
            json!({ "sql": "SELECT 1", "extra": true }),
            json!({ "sql": 5 }),
            json!({ "batch": [{ "sql": "SELECT 1", "params": [true] }] }),
            json!({ "sql": "SELECT 1", "batch": [{ "sql": "SELECT 1" }] }),
            json!({ "batch": [] }),
        ];
        for body in bad {
            let (status, v) = emu.query(body.clone()).await;
            assert_eq!((status, v["errors"][0]["code"].clone()), (400, json!(10001)), "{body}: {v}");
        }
        let (status, v) = emu.query(json!({ "sql": "SELECT ?1 + 1 AS n", "params": ["41"] })).await;
        assert_eq!((status, v["result"][0]["results"][0]["n"].clone()), (200, json!(42)), "{v}");
        let (status, v) = emu
            .post(&emu.db_url(DB, "export"), json!({ "output_format": "polling", "current_bookmark": null }))
            .await;
        assert_eq!((status, v["errors"][0]["code"].clone()), (400, json!(10001)), "{v}");
        let (status, _) = emu.post(&emu.db_url(DB, "export"), json!({ "output_format": "file" })).await;
        assert_eq!(status, 400);
    });
}

/// The database list is paged as the SDKs page it; a page past the end is
/// empty (an emulator ignoring `page` makes their loops run for ever).
#[test]
fn emulator_pages_the_database_list() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        let url = format!("{}/accounts/{ACCOUNT}/d1/database", emu.base_url);
        for i in 0..11 {
            let (status, v) = emu.post(&url, json!({ "name": format!("d{i:02}") })).await;
            assert_eq!(status, 200, "{v}");
        }
        let get = |q: &'static str| {
            let url = format!("{url}{q}");
            let http = emu.http.clone();
            async move {
                let r = http.get(url).bearer_auth(TOKEN).send().await.expect("list");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.expect("json"))
            }
        };
        let (_, first) = get("").await;
        assert_eq!(first["result"].as_array().map(Vec::len), Some(10), "default per_page: {first}");
        assert_eq!(first["result_info"]["total_count"], 12);
        let (_, second) = get("?page=2&per_page=10").await;
        assert_eq!(second["result"].as_array().map(Vec::len), Some(2));
        assert_eq!(second["result_info"]["page"], 2);
        let (_, past) = get("?page=3&per_page=10").await;
        assert_eq!(past["result"], json!([]));
        let (status, _) = get("?per_page=5").await;
        assert_eq!(status, 400, "per_page is at least 10");
        let (_, named) = get("?name=d03").await;
        assert_eq!(named["result"][0]["name"], "d03");
        // wrangler looks a database up by name on the database path.
        let (_, by_name) = get("/d03").await;
        assert_eq!(by_name["result"]["name"], "d03");
    });
}
