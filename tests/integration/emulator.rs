//! `pgflare emulate` as a client sees it: the real binary started as a
//! child process, spoken to over HTTP with reqwest, its SQLite files read
//! back with Python's sqlite3 (an independent reader). No Postgres needed.

mod d1_api;
pub(crate) mod harness;

use std::time::Duration;

use serde_json::{json, Value};

use harness::{export, import};

use crate::common::{self, py_rows, python_code, Emulator, ACCOUNT, DB, TOKEN};

#[test]
fn emulator_query_raw_and_database_endpoints() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        emu.ok("CREATE TABLE t (id INTEGER PRIMARY KEY, r REAL, s TEXT, b BLOB, n INTEGER)").await;
        let (status, v) = emu.query(json!({ "sql": "INSERT INTO t (id) VALUES (?)", "params": [] })).await;
        assert_eq!(status, 400, "one placeholder needs one param: {v}");
        let r = emu.ok("INSERT INTO t VALUES (1, 2.5, 'it''s', X'00ff10', NULL)").await;
        let meta = &r[0]["meta"];
        assert_eq!(meta["changes"], 1);
        assert_eq!(meta["last_row_id"], 1);
        assert_eq!(meta["changed_db"], true);
        assert_eq!(meta["served_by"], "pgflare-emulate");
        assert!(meta["size_after"].as_u64().expect("size_after") > 0);
        for key in ["duration", "rows_read", "rows_written"] {
            assert!(meta[key].is_number(), "meta.{key}: {meta}");
        }
        let (status, v) = emu
            .query(json!({ "sql": "INSERT INTO t (id, s) VALUES (?1, ?2)", "params": ["2", "two"] }))
            .await;
        assert_eq!(status, 200, "{v}");

        let r = emu.ok("SELECT * FROM t ORDER BY id").await;
        assert_eq!(r[0]["success"], true);
        assert_eq!(
            r[0]["results"][0],
            json!({ "id": 1, "r": 2.5, "s": "it's", "b": [0, 255, 16], "n": null }),
            "a BLOB is an array of byte numbers"
        );
        assert_eq!(r[0]["results"][1]["s"], "two");

        let (status, v) =
            emu.post(&emu.db_url(DB, "raw"), json!({ "sql": "SELECT id, s FROM t ORDER BY id" })).await;
        assert_eq!(status, 200);
        assert_eq!(
            v["result"][0]["results"],
            json!({ "columns": ["id", "s"], "rows": [[1, "it's"], [2, "two"]] })
        );

        // Several statements: one result each.
        let r = emu.ok("SELECT 1 AS a; SELECT 2 AS b").await;
        assert_eq!(r.as_array().map(Vec::len), Some(2));
        assert_eq!(r[1]["results"][0]["b"], 2);

        // Databases: create, show, list.
        let url = format!("{}/accounts/{ACCOUNT}/d1/database", emu.base_url);
        let (status, v) = emu.post(&url, json!({ "name": "made" })).await;
        assert_eq!(status, 200, "{v}");
        let uuid = v["result"]["uuid"].as_str().expect("uuid").to_string();
        assert_eq!(v["result"]["version"], "production");
        assert_eq!(v["result"]["num_tables"], 0);
        let (status, _) = emu.post(&url, json!({ "name": "made" })).await;
        assert_eq!(status, 400, "a name is unique");
        let show = emu.http.get(format!("{url}/{DB}")).bearer_auth(TOKEN).send().await.expect("show");
        let show: Value = show.json().await.expect("json");
        assert_eq!(show["result"]["num_tables"], 1);
        assert!(show["result"]["file_size"].as_u64().expect("file_size") > 0);
        let list: Value =
            emu.http.get(&url).bearer_auth(TOKEN).send().await.expect("list").json().await.expect("json");
        let ids: Vec<&str> =
            list["result"].as_array().expect("array").iter().filter_map(|d| d["uuid"].as_str()).collect();
        assert!(ids.contains(&DB) && ids.contains(&uuid.as_str()), "{list}");
        let (status, _) = emu.post(&emu.db_url(&uuid, "query"), json!({ "sql": "SELECT 1" })).await;
        assert_eq!(status, 200);
    });
    // Independent reader: the committed rows are in the file.
    assert_eq!(
        py_rows(&emu.d1_file(DB), "t"),
        r#"[[1, 2.5, "it's", "00ff10", null], [2, null, "two", null, null]]"#
    );
}

#[test]
fn emulator_request_is_one_transaction() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        emu.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)").await;
        let msg = emu
            .refused(json!({ "sql": "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)" }))
            .await;
        assert!(msg.contains("UNIQUE constraint failed: t.id") && msg.contains("SQLITE_CONSTRAINT"), "{msg}");
        let msg = emu
            .refused(json!({ "batch": [
                { "sql": "INSERT INTO t VALUES (?)", "params": ["5"] },
                { "sql": "CREATE TABLE u (x)" },
                { "sql": "SELEC 1" },
            ] }))
            .await;
        assert!(msg.contains("near \"SELEC\": syntax error"), "{msg}");
        let r = emu
            .ok("SELECT count(*) AS n FROM t; SELECT count(*) AS n FROM sqlite_master WHERE name = 'u'")
            .await;
        assert_eq!(r[0]["results"][0]["n"], 0, "nothing of the failed requests stays");
        assert_eq!(r[1]["results"][0]["n"], 0);
        let (status, v) = emu
            .query(json!({ "batch": [
                { "sql": "INSERT INTO t VALUES (?)", "params": ["5"] },
                { "sql": "INSERT INTO t VALUES (?)", "params": ["6"] },
            ] }))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["result"].as_array().map(Vec::len), Some(2));
    });
}

#[test]
fn emulator_enforces_d1_rules() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        emu.ok("CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id))")
            .await;
        let long = format!("SELECT '{}'", "x".repeat(100_001));
        let cols = (0..101).map(|i| format!("c{i} INTEGER")).collect::<Vec<_>>().join(", ");
        let wide = format!("CREATE TABLE wide ({cols})");
        let cases: Vec<(&str, &str)> = vec![
            ("BEGIN TRANSACTION", "BEGIN TRANSACTION or SAVEPOINT"),
            ("COMMIT", "every D1 request already runs in one transaction"),
            ("SAVEPOINT sp", "SAVEPOINT"),
            ("PRAGMA journal_mode = WAL", "PRAGMA journal_mode is not allowed"),
            ("CREATE TABLE _CF_x (a)", "names starting with _cf_"),
            ("CREATE INDEX _cf_i ON p(id)", "names starting with _cf_"),
            ("ATTACH DATABASE 'other.db' AS o", "ATTACH"),
            ("CREATE VIRTUAL TABLE v USING fts4(a)", "D1 allows fts5, fts5vocab, rtree, rtree_i32"),
            // workerd's authorizer denies every temporary object.
            ("CREATE TEMP TABLE t (a)", "temporary tables"),
            ("CREATE TEMPORARY VIEW tv AS SELECT 1", "temporary tables"),
            (long.as_str(), "statement too long: 100010 bytes, D1 allows 100000"),
            (wide.as_str(), "too many columns on wide"),
            ("INSERT INTO c VALUES (1, 42)", "FOREIGN KEY constraint failed"),
        ];
        for (sql, expected) in cases {
            let msg = emu.refused(json!({ "sql": sql })).await;
            let shown: String = sql.chars().take(60).collect();
            assert!(msg.contains(expected), "{shown}: expected `{expected}` in `{msg}`");
        }
        let msg = emu.refused(json!({ "sql": "PRAGMA schema_version" })).await;
        assert!(msg.contains("not authorized") && msg.contains("SQLITE_AUTH"), "{msg}");
        // Values over 2,000,000 bytes and more than 100 bound parameters.
        let big = "y".repeat(2_000_001);
        let msg = emu.refused(json!({ "sql": "INSERT INTO p VALUES (length(?))", "params": [big] })).await;
        assert!(msg.contains("SQLITE_TOOBIG") && msg.contains("2000000"), "{msg}");
        let marks = vec!["?"; 101].join(",");
        let params: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let msg = emu.refused(json!({ "sql": format!("SELECT {marks}"), "params": params })).await;
        assert!(msg.contains("too many SQL variables") && msg.contains("100"), "{msg}");

        // Allowed: what D1 allows.
        emu.ok("PRAGMA defer_foreign_keys = on; INSERT INTO c VALUES (1, 7); INSERT INTO p VALUES (7)").await;
        let msg = emu
            .refused(json!({ "sql": "PRAGMA defer_foreign_keys = on; INSERT INTO c VALUES (2, 99)" }))
            .await;
        assert!(msg.contains("FOREIGN KEY constraint failed"), "deferred, still checked at the end: {msg}");
        let r = emu.ok("PRAGMA table_info(c)").await;
        assert_eq!(r[0]["results"].as_array().map(Vec::len), Some(2));
        emu.ok("CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO docs VALUES ('hello world')").await;
        let r = emu.ok("SELECT count(*) AS n FROM docs WHERE docs MATCH 'hello'").await;
        assert_eq!(r[0]["results"][0]["n"], 1);
        emu.ok("CREATE VIRTUAL TABLE words USING fts5vocab(docs, row)").await;
        emu.ok("CREATE VIRTUAL TABLE boxes USING rtree_i32(id, x0, x1)").await;
        emu.ok("CREATE VIRTUAL TABLE places USING rtree(id, x0, x1)").await;
        let msg = emu.refused(json!({ "sql": "PRAGMA page_size = 8192" })).await;
        assert!(msg.contains("PRAGMA page_size is not allowed"), "read, never set: {msg}");
        let ok_cols = (0..100).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", ");
        emu.ok(&format!("CREATE TABLE w100 ({ok_cols})")).await;
        let r = emu.ok("SELECT count(*) AS n FROM c").await;
        assert_eq!(r[0]["results"][0]["n"], 1);
    });
}

#[test]
fn emulator_auth_routing_and_errors() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        let url = emu.db_url(DB, "query");
        let body = json!({ "sql": "SELECT 1" });
        let r = emu.http.post(&url).bearer_auth("wrong").json(&body).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 403);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["errors"][0], json!({ "code": 10000, "message": "Authentication error" }));

        // No credentials at all: 9106 (observed on the real API).
        let r = emu.http.post(&url).json(&body).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 400);
        let v: Value = r.json().await.expect("json");
        assert_eq!(
            v["errors"][0],
            json!({ "code": 9106, "message": "Missing X-Auth-Key, X-Auth-Email or Authorization headers" })
        );
        // An Authorization header Cloudflare cannot read: 6003 with 6111.
        let quoted = format!("Bearer \"{TOKEN}\"");
        let spaced = format!("Bearer  {TOKEN}");
        for value in [TOKEN, quoted.as_str(), spaced.as_str(), "Bearer "] {
            let r =
                emu.http.post(&url).header("Authorization", value).json(&body).send().await.expect("send");
            assert_eq!(r.status().as_u16(), 400, "{value}");
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["errors"][0]["code"], 6003, "{value}: {v}");
            assert_eq!(
                v["errors"][0]["error_chain"][0],
                json!({ "code": 6111, "message": "Invalid format for Authorization header" }),
                "{value}"
            );
        }
        // A global API key (the emulator knows only its token): 6003 with 6102/6103.
        let r = emu.http.post(&url).header("X-Auth-Email", "me@example.com").header("X-Auth-Key", "k");
        let v: Value = r.json(&body).send().await.expect("send").json().await.expect("json");
        assert_eq!(v["errors"][0]["code"], 6003);
        assert_eq!(v["errors"][0]["error_chain"][0]["code"], 6102);
        assert_eq!(v["errors"][0]["error_chain"][1]["code"], 6103);

        let other = url.replace(ACCOUNT, "someone-else");
        let (status, v) = emu.post(&other, body.clone()).await;
        assert_eq!(status, 404);
        assert_eq!(v["errors"][0]["code"], 7003);
        assert!(v["errors"][0]["message"].as_str().is_some_and(|m| m.contains("Could not route to")), "{v}");

        let (status, v) = emu.post(&emu.db_url("no-such-db", "query"), body.clone()).await;
        assert_eq!(status, 404);
        assert_eq!(v["errors"][0]["code"], 7404);
        assert!(v["errors"][0]["message"].as_str().is_some_and(|m| m.contains("no-such-db")));

        let (status, v) = emu.query(json!({ "nothing": 1 })).await;
        assert_eq!((status, v["success"].clone()), (400, json!(false)), "{v}");
    });
}

#[test]
fn emulator_import_flow() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        // Children before parents: fine with deferred foreign keys.
        let good = "PRAGMA defer_foreign_keys = on;\nCREATE TABLE p (id INTEGER PRIMARY KEY, s TEXT);\n\
                    CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id));\nINSERT INTO c VALUES (1, 1);\n\
                    INSERT INTO p VALUES (1, 'a;\nb'), (2, 'it''s');\n-- a comment;\n";
        let done = import(&emu, good).await;
        assert_eq!(done["status"], "complete", "{done}");
        assert_eq!(done["result"]["num_queries"], 5);
        assert!(done["result"]["final_bookmark"].is_string());
        assert_eq!(done["result"]["meta"]["rows_written"], 3);
        let r = emu.ok("SELECT s FROM p ORDER BY id").await;
        assert_eq!(r[0]["results"], json!([{ "s": "a;\nb" }, { "s": "it's" }]));

        // The same file again: init answers as a poll (already uploaded),
        // and the second run fails on the existing table, changing nothing.
        let again = import(&emu, good).await;
        assert_eq!(again["status"], "error");
        // wrangler's form of a failed import: `errors`, strings (types.ts).
        assert!(again["errors"][0].as_str().is_some_and(|e| e.contains("table p already exists")), "{again}");

        let bad =
            "INSERT INTO p VALUES (3, 'x');\nCREATE TABLE more (a);\nINSERT INTO p VALUES (1, 'dup');\n";
        let failed = import(&emu, bad).await;
        assert_eq!(failed["status"], "error");
        let msg = failed["errors"][0].as_str().expect("errors");
        assert!(msg.contains("UNIQUE constraint failed: p.id"), "{msg}");
        let rules = import(&emu, "INSERT INTO p VALUES (4, 'y');\nBEGIN;\n").await;
        assert!(rules["errors"][0].as_str().is_some_and(|e| e.contains("SAVEPOINT")), "{rules}");
    });
    let path = emu.d1_file(DB);
    assert_eq!(py_rows(&path, "p"), r#"[[1, "a;\nb"], [2, "it's"]]"#, "failed imports left nothing behind");
    let tables = python_code(
        "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
         print(','.join(r[0] for r in c.execute(\"SELECT name FROM sqlite_master WHERE type='table' ORDER BY name\")))",
        &[&path.display().to_string()],
    );
    assert_eq!(tables, "c,p");
}

#[test]
fn emulator_export_dump_replays_to_the_same_data() {
    // Integers up to 2^53 - 1 only: beyond, D1's export rounds them like
    // JavaScript does (see `emulator::d1_dump`'s tests and `exact_ints`).
    let emu = Emulator::start(&[]);
    let dump = common::block_on(async {
        emu.ok(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, s TEXT, r REAL, b BLOB, n); \
             CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER NOT NULL REFERENCES p(id)); \
             CREATE INDEX c_p ON c(p); \
             INSERT INTO p VALUES (1, 'it''s \"q\"' || char(10) || 'é😀', 0.1, X'00FF', NULL), \
               (2, '', 1e300, X'', 9007199254740991), (3, NULL, -2.5e-7, NULL, 'text'), (4, 'x', 3.0, NULL, 1.5); \
             INSERT INTO c VALUES (1, 2), (2, 1)",
        )
        .await;
        let url = emu.db_url(DB, "export");
        let v = export(&emu, json!({})).await;
        assert_eq!(v["status"], "complete", "{v}");
        let signed = v["result"]["signed_url"].as_str().expect("signed_url").to_string();
        let bm = v["at_bookmark"].clone();
        let (_, again) = emu.post(&url, json!({ "output_format": "polling", "current_bookmark": bm })).await;
        assert_eq!(again["result"]["success"], false, "the end is answered once: {again}");
        let r = reqwest::get(&signed).await.expect("download");
        assert_eq!(r.status().as_u16(), 200);
        let dump = r.text().await.expect("dump");
        let v = export(&emu, json!({ "no_data": true, "tables": ["c"] })).await;
        let schema_url = v["result"]["signed_url"].as_str().expect("signed_url").to_string();
        let schema = reqwest::get(&schema_url).await.expect("download").text().await.expect("text");
        assert!(
            schema.contains("CREATE TABLE c")
                && !schema.contains("INSERT")
                && !schema.contains("CREATE TABLE p")
        );
        dump
    });
    assert!(dump.starts_with("PRAGMA defer_foreign_keys=TRUE;"), "{dump}");
    let dump_path = emu.data_dir.path().join("dump.sql");
    std::fs::write(&dump_path, &dump).expect("write dump");
    // Replay into an empty database with Python and compare every value and
    // its storage class with the emulator's file.
    let out = python_code(
        "import sqlite3,sys\nsrc=sqlite3.connect(sys.argv[1])\ndst=sqlite3.connect(':memory:')\n\
         dst.executescript(open(sys.argv[2],encoding='utf-8').read())\n\
         q=lambda c,t: c.execute('SELECT *, ' + ','.join('typeof(%s)' % n for n in [r[1] for r in c.execute('PRAGMA table_info(%s)' % t)]) + ' FROM %s ORDER BY 1' % t).fetchall()\n\
         same=all(q(src,t)==q(dst,t) for t in ('p','c'))\n\
         idx=dst.execute(\"SELECT count(*) FROM sqlite_master WHERE name='c_p'\").fetchone()[0]\n\
         print('same' if same and idx==1 and len(q(dst,'p'))==4 else 'different')",
        &[&emu.d1_file(DB).display().to_string(), &dump_path.display().to_string()],
    );
    assert_eq!(out, "same", "{dump}");
}

#[test]
fn emulator_rate_limit_answers_429_with_retry_after() {
    let emu = Emulator::start(&["--rate-limit", "3/2", "--json"]);
    common::block_on(async {
        let send = || async {
            let r =
                emu.http.post(emu.db_url(DB, "query")).bearer_auth(TOKEN).json(&json!({ "sql": "SELECT 1" }));
            r.send().await.expect("send")
        };
        for _ in 0..3 {
            let r = send().await;
            assert_eq!(r.status().as_u16(), 200);
            assert!(r.headers().contains_key("ratelimit"));
        }
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(1200));
        let r = send().await;
        assert_eq!(r.status().as_u16(), 429);
        let retry: u64 = r.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
        assert_eq!(retry, 2, "blocked for a whole window from the request over the limit");
        assert_eq!(r.headers()["ratelimit-policy"], "\"default\";q=3;w=2");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["errors"][0]["code"], 971);
        // At 2.4 s the first three requests have left the window, but the
        // block holds every call until 3.2 s (cloudflare-docs: "all API
        // calls for the next five minutes will be blocked").
        std::thread::sleep(Duration::from_millis(2400).saturating_sub(t0.elapsed()));
        let r = send().await;
        assert_eq!(r.status().as_u16(), 429, "still blocked");
        std::thread::sleep(Duration::from_millis(3500).saturating_sub(t0.elapsed()));
        assert_eq!(send().await.status().as_u16(), 200, "the block is over");
    });
}

#[test]
fn emulator_bandwidth_paces_uploads_and_answers() {
    let emu = Emulator::start(&["--bandwidth", "256K"]);
    common::block_on(async {
        // A request of 512 KiB (one bound string): read at 256 KiB/s, about 2 s.
        let blob = "x".repeat(512 * 1024);
        let started = std::time::Instant::now();
        let (status, v) = emu.query(json!({ "sql": "SELECT length(?) AS n", "params": [blob] })).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["result"][0]["results"][0]["n"], 512 * 1024);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1900), "the upload was not paced: {took:?}");
        // ... and the answer, which holds the string again, as much.
        let started = std::time::Instant::now();
        let (status, v) =
            emu.query(json!({ "sql": "SELECT ? AS s", "params": ["y".repeat(100 * 1024)] })).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["result"][0]["results"][0]["s"].as_str().map(str::len), Some(100 * 1024));
        assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
    });
}

#[test]
fn emulator_internal_errors_are_http_500_with_code_7500_and_do_not_run() {
    let emu = Emulator::start(&["--internal-error-rate", "1.0"]);
    common::block_on(async {
        let (status, v) = emu.query(json!({ "sql": "CREATE TABLE t (a)" })).await;
        assert_eq!(status, 500, "{v}");
        assert_eq!(v["errors"][0]["code"], 7500);
        assert!(v["errors"][0]["message"].as_str().is_some_and(|m| m.starts_with("D1_ERROR: ")), "{v}");
    });
    let tables = python_code(
        "import sqlite3,sys\nprint(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM sqlite_master').fetchone()[0])",
        &[&emu.d1_file(DB).display().to_string()],
    );
    assert_eq!(tables, "0", "the refused request did not run");
}

#[test]
fn emulator_injects_faults() {
    let failing = Emulator::start(&["--fail-rate", "1.0"]);
    common::block_on(async {
        let (status, v) = failing.query(json!({ "sql": "CREATE TABLE t (a)" })).await;
        assert!([500, 502, 503].contains(&status), "{status} {v}");
    });
    // Upload URLs are never faulted, and the failed request did nothing.
    let tables = python_code(
        "import sqlite3,sys\nprint(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM sqlite_master').fetchone()[0])",
        &[&failing.d1_file(DB).display().to_string()],
    );
    assert_eq!(tables, "0");

    let dropping = Emulator::start(&["--drop-rate", "1.0", "--latency-ms", "20"]);
    common::block_on(async {
        let sql = json!({ "sql": "CREATE TABLE t (a); INSERT INTO t VALUES (42)" });
        let r = dropping.http.post(dropping.db_url(DB, "query")).bearer_auth(TOKEN).json(&sql).send().await;
        assert!(r.is_err(), "the connection must close without an answer: {r:?}");
    });
    // ... but the write happened (the client cannot know).
    assert_eq!(py_rows(&dropping.d1_file(DB), "t"), "[[42]]");
}

/// workerd's `SqliteDatabase::prepareSql` hands SQLite the whole text not
/// yet run, so D1's 100,000-byte limit holds for a multi-statement `sql` as
/// a whole (from each statement to the end); a `batch` prepares its entries
/// one by one. Only the last statement of a multi-statement `sql` may have
/// parameters.
#[test]
fn a_multi_statement_sql_is_limited_as_a_whole_and_a_batch_is_not() {
    let emu = Emulator::start(&[]);
    common::block_on(async {
        emu.ok("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)").await;
        let statements: Vec<String> =
            (0..150).map(|i| format!("INSERT INTO t VALUES ({i}, '{}');", "x".repeat(1000))).collect();
        let msg = emu.refused(json!({ "sql": statements.concat() })).await;
        assert!(msg.contains("statement too long") && msg.contains("SQLITE_TOOBIG"), "{msg}");
        let r = emu.ok("SELECT count(*) AS n FROM t").await;
        assert_eq!(r[0]["results"][0]["n"], 0, "nothing of the refused request stays");
        let batch: Vec<_> = statements.iter().map(|s| json!({ "sql": s })).collect();
        let (status, v) = emu.query(json!({ "batch": batch })).await;
        assert_eq!(status, 200, "{v}");
        // 90 of them (about 93 KB) fit in one text.
        emu.ok("DELETE FROM t").await;
        emu.ok(&statements[..90].concat()).await;
        let r = emu.ok("SELECT count(*) AS n FROM t").await;
        assert_eq!(r[0]["results"][0]["n"], 90);
        let msg = emu.refused(json!({ "sql": "SELECT ?; SELECT 1", "params": ["1"] })).await;
        assert!(msg.contains("only the last statement can have parameters"), "{msg}");
        let (status, v) = emu.query(json!({ "sql": "SELECT 1; SELECT ? AS v", "params": ["7"] })).await;
        assert_eq!(status, 200, "{v}");
    });
}
