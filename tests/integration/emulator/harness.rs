//! The D1 transfer flows wrangler runs (import, export), spoken over HTTP
//! to an emulator of the shared harness ([`crate::common::Emulator`]).

use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{json, Value};

use crate::common::{Emulator, DB};

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// The wrangler import flow: init, PUT, ingest, poll. Returns the final poll answer.
pub async fn import(emu: &Emulator, sql: &str) -> Value {
    let etag = md5_hex(sql.as_bytes());
    let url = emu.db_url(DB, "import");
    let (status, v) = emu.post(&url, json!({ "action": "init", "etag": etag })).await;
    assert_eq!(status, 200, "{v}");
    let mut answer = v["result"].clone();
    if let Some(upload_url) = answer["upload_url"].as_str() {
        let filename = answer["filename"].as_str().expect("filename").to_string();
        let put = emu.http.put(upload_url).body(sql.to_string()).send().await.expect("PUT");
        assert_eq!(put.status().as_u16(), 200);
        let got = put
            .headers()
            .get("etag")
            .and_then(|h| h.to_str().ok())
            .expect("ETag")
            .trim_matches('"')
            .to_string();
        assert_eq!(got, etag);
        let (status, v) =
            emu.post(&url, json!({ "action": "ingest", "filename": filename, "etag": etag })).await;
        assert_eq!(status, 200, "{v}");
        answer = v["result"].clone();
    }
    for _ in 0..100 {
        assert_eq!(answer["success"], true, "{answer}");
        if answer["status"] != "active" {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let bm = answer["at_bookmark"].clone();
        answer =
            emu.post(&url, json!({ "action": "poll", "current_bookmark": bm })).await.1["result"].clone();
    }
    panic!("the import never finished: {answer}");
}

/// The wrangler export flow: start, then poll with the bookmark until it
/// is no longer active. Returns the final answer (`result` of the envelope).
pub async fn export(emu: &Emulator, dump_options: Value) -> Value {
    let url = emu.db_url(DB, "export");
    let (status, v) =
        emu.post(&url, json!({ "output_format": "polling", "dump_options": dump_options })).await;
    assert_eq!(status, 200, "{v}");
    let mut answer = v["result"].clone();
    for _ in 0..100 {
        assert_eq!(answer["success"], true, "{answer}");
        if answer["status"] != "active" {
            return answer;
        }
        let bm = answer["at_bookmark"].clone();
        let body =
            json!({ "output_format": "polling", "dump_options": dump_options, "current_bookmark": bm });
        answer = emu.post(&url, body).await.1["result"].clone();
    }
    panic!("the export never finished: {answer}");
}
