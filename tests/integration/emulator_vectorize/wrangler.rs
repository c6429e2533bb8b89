//! Listing with cursors, and uploads the way wrangler makes them: the real
//! wrangler (PGFLARE_WRANGLER) against the emulator, then the same
//! multipart request byte for byte.

use std::path::Path;

use serde_json::{json, Value};

use super::{by_ids, create, f32_bits, get, refused, url, write};
use crate::common::{self, Emulator, TOKEN};

#[test]
fn emulator_vectorize_list_pages_with_cursors() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        create(&emu, "many", 2, "euclidean").await;
        // A permutation of v00000..v02499, so storage order is not id order.
        let lines: Vec<Value> = (0..2500)
            .map(|i| json!({ "id": format!("v{:05}", (i * 7919) % 2500), "values": [i, 1] }))
            .collect();
        write(&emu, "many", "upsert", &lines).await;
        let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, Vec::new());
        loop {
            let tail = match &cursor {
                Some(c) => format!("/many/list?count=1000&cursor={c}"),
                None => "/many/list?count=1000".to_string(),
            };
            let (status, v) = get(&emu, &tail).await;
            assert_eq!(status, 200, "{v}");
            let r = &v["result"];
            assert_eq!(r["totalCount"], 2500);
            let page = r["vectors"].as_array().expect("vectors");
            let ids: Vec<String> = page.iter().map(|x| x["id"].as_str().expect("id").to_string()).collect();
            assert_eq!(r["count"], ids.len());
            pages.push((ids.len(), r["isTruncated"].as_bool().expect("isTruncated")));
            seen.extend(ids);
            if r["isTruncated"] == false {
                assert_eq!(r["nextCursor"], Value::Null);
                break;
            }
            assert!(r["cursorExpirationTimestamp"].is_string());
            cursor = Some(r["nextCursor"].as_str().expect("nextCursor").to_string());
            assert!(pages.len() < 5, "the listing never ends");
        }
        assert_eq!(pages, vec![(1000, true), (1000, true), (500, false)]);
        let want: Vec<String> = (0..2500).map(|i| format!("v{i:05}")).collect();
        assert_eq!(seen, want, "every id once, in id order");

        let (_, v) = get(&emu, "/many/list").await;
        assert_eq!(v["result"]["count"], 100, "count defaults to 100");
        refused(get(&emu, "/many/list?count=0").await, 400, 40031);
        refused(get(&emu, "/many/list?count=1001").await, 400, 40031);
        refused(get(&emu, "/many/list?cursor=zz").await, 400, 40031);
    });
}

/// Runs wrangler against the emulator in `home` (also its HOME); returns
/// the JSON it prints.
fn wrangler(home: &Path, emu: &Emulator, args: &[&str]) -> Value {
    let o = emu
        .wrangler(home)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .expect("run wrangler");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "wrangler {args:?} failed: {}\n{out}\n{err}", o.status);
    let json = out.find(['{', '[']).map(|i| &out[i..]).unwrap_or_default();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("wrangler {args:?} printed no JSON ({e}): {out}"))
}

#[test]
fn emulator_vectorize_takes_wranglers_multipart_upload() {
    let emu = Emulator::start(&[]);
    let home = common::temp_dir("wrangler-vectorize");
    let h = home.path();
    let args = ["vectorize", "create", "wv", "--dimensions", "3", "--metric", "euclidean", "--json"];
    let created = wrangler(h, &emu, &args);
    assert_eq!((created["name"].clone(), created["config"]["dimensions"].clone()), (json!("wv"), json!(3)));
    let ndjson = [
        json!({ "id": "a", "values": [0.1, 0.2, 0.3], "metadata": { "t": "x" }, "namespace": "n" }),
        json!({ "id": "b", "values": [1, 2, 3] }),
        json!({ "id": "c", "values": [-1.5, 0, 7e-8] }),
    ]
    .map(|v| v.to_string())
    .join("\n");
    std::fs::write(h.join("x.ndjson"), &ndjson).expect("write");
    let up = wrangler(h, &emu, &["vectorize", "upsert", "wv", "--file", "x.ndjson", "--json"]);
    assert_eq!(up, json!({ "index": "wv", "count": 3 }));
    let shown = wrangler(h, &emu, &["vectorize", "get", "wv", "--json"]);
    assert_eq!(shown["config"]["metric"], "euclidean");
    let i = wrangler(h, &emu, &["vectorize", "info", "wv", "--json"]);
    assert_eq!(i["vectorCount"], 3);
    assert!(i["processedUpToMutation"].is_string(), "{i}");
    common::block_on(async {
        let got = by_ids(&emu, "wv", &["a", "c"]).await;
        assert_eq!(f32_bits(&got[0]["values"]), [0.1f32, 0.2, 0.3].map(f32::to_bits));
        assert_eq!(f32_bits(&got[1]["values"]), [-1.5f32, 0.0, 7e-8].map(f32::to_bits));
        assert_eq!(
            (got[0]["metadata"].clone(), got[0]["namespace"].clone()),
            (json!({ "t": "x" }), json!("n"))
        );

        // The same request, byte for byte as wrangler 4.86 (undici's
        // FormData) sends it: a file part `vectors`, lines joined by \n.
        let boundary = "----formdata-undici-083157845530";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"vectors\"; filename=\"vectors.ndjson\"\r\n\
             Content-Type: application/x-ndjson\r\n\r\n{}\n{}\r\n--{boundary}--\r\n",
            json!({ "id": "d", "values": [4, 5, 6] }),
            json!({ "id": "a", "values": [9, 9, 9] })
        );
        let multipart = |verb: &str, body: String| {
            emu.http
                .post(url(&emu, &format!("/wv/{verb}")))
                .bearer_auth(TOKEN)
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(body)
                .send()
        };
        let r = multipart("insert", body).await.expect("send");
        let v: Value = r.json().await.expect("json");
        assert!(v["result"]["mutationId"].is_string(), "{v}");
        let got = by_ids(&emu, "wv", &["a", "d"]).await;
        let firsts = (got[0]["values"][0].clone(), got[1]["values"].clone());
        assert_eq!(firsts, (json!(0.1), json!([4.0, 5.0, 6.0])), "insert kept a");
        let no_part = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{boundary}--\r\n"
        );
        let r = multipart("upsert", no_part).await.expect("send");
        assert_eq!(r.status().as_u16(), 400);
        let v: Value = r.json().await.expect("json");
        assert!(v["errors"][0]["message"].as_str().is_some_and(|m| m.contains("`vectors`")), "{v}");
    });
}
