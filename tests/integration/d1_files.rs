//! The D1 `files` target: SQL batch files that an independent SQLite
//! (Python's sqlite3) applies unchanged, within D1's limits, giving back
//! exactly the source rows, hard rows included.

use std::collections::HashMap;
use std::sync::Arc;

use pgflare::progress::Progress;
use pgflare::sink::d1::{schema, D1FilesConfig};
use pgflare::source::job::read_selection;
use pgflare::source::{ReadOptions, Selection, Snapshot, Source, SplitOptions};
use sqlx::{Connection, PgConnection};

use crate::common::*;

#[test]
fn d1_files_apply_unchanged_and_hold_the_source_rows() {
    let db = TestDb::new("d1files");
    db.seed(400, 8);
    let out = temp_dir("d1files");
    let dir = out.path().join("sql");
    let url = db.url.clone();
    let config = D1FilesConfig {
        dir: dir.clone(),
        file_bytes: 256 << 10,
        max_statement_bytes: 100_000,
        mappings: Default::default(),
    };
    let reading = block_on(async move {
        let src = Source::parse(&url).expect("url");
        let snapshot = Snapshot::export(&src).await.expect("snapshot");
        let selection = Selection { schema: "public".into(), ..Selection::default() };
        let split = SplitOptions { target_bytes: 256 << 10, max_partitions: 8 };
        let read = ReadOptions { jobs: 2, batch_rows: 64, batch_bytes: 1 << 20 };
        read_selection(&src, snapshot, &selection, split, read, Arc::new(config), &Progress::hidden())
            .await
            .expect("read")
    });
    let mut ddl = String::new();
    for t in &reading.tables {
        ddl.push_str(&schema::create_table(&t.info.spec, &t.info.spec.name).expect("ddl"));
    }
    let schema_path = out.path().join("schema.sql");
    std::fs::write(&schema_path, ddl).expect("schema");
    let sqlite = out.path().join("d1.sqlite");
    let o = python(
        "apply_d1_sql.py",
        &[
            sqlite.to_str().expect("p"),
            schema_path.to_str().expect("p"),
            dir.to_str().expect("p"),
            "--dump",
            "chunks",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["files"].as_u64().expect("files") > 2, "want several files: {}", v["files"]);
    assert!(v["max_statement_bytes"].as_u64().expect("max") <= 100_000, "{}", v["max_statement_bytes"]);
    assert_eq!(v["transaction_statements"], 0);
    assert_eq!(
        v["counts"]["chunks"].as_u64().expect("n").to_string(),
        db.query_one("SELECT count(*)::text FROM chunks")
    );
    assert_eq!(
        v["counts"]["documents"].as_u64().expect("n").to_string(),
        db.query_one("SELECT count(*)::text FROM documents")
    );

    // Every chunk's text and embedding, byte for byte and bit for bit.
    let d1: HashMap<String, (String, Option<Vec<f32>>)> = v["dump"]
        .as_array()
        .expect("dump")
        .iter()
        .map(|r| {
            let emb = r[7].as_str().map(|j| serde_json::from_str::<Vec<f64>>(j).expect("vector JSON"));
            (
                r[0].as_str().expect("id").to_string(),
                (
                    r[3].as_str().expect("content").to_string(),
                    emb.map(|e| e.into_iter().map(|x| x as f32).collect()),
                ),
            )
        })
        .collect();
    let url = db.url.clone();
    let source: Vec<(String, String, Option<String>)> = block_on(async move {
        let mut c = PgConnection::connect(&url).await.expect("connect");
        sqlx::query_as("SELECT id::text, content, embedding::text FROM chunks")
            .fetch_all(&mut c)
            .await
            .expect("rows")
    });
    assert_eq!(source.len(), d1.len());
    let mut long_rows = 0;
    for (id, content, emb) in source {
        let (c, e) = d1.get(&id).unwrap_or_else(|| panic!("{id} missing in D1"));
        assert_eq!(c, &content, "content of {id}");
        long_rows += usize::from(content.len() > 100_000);
        let want: Option<Vec<f32>> = emb.map(|t| {
            t.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|x| x.parse::<f32>().expect("float"))
                .collect()
        });
        let bits =
            |v: &Option<Vec<f32>>| v.as_ref().map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        assert_eq!(bits(e), bits(&want), "embedding of {id}");
    }
    assert_eq!(long_rows, 1, "the 160 KB hard row went through the UPDATE-append path");
}

/// The `sqlite` target binds each row to a prepared upsert instead of
/// running the files' SQL text: the database it builds must be, row for
/// row and byte for byte, the one the files build when applied by another
/// SQLite (Python's sqlite3). Hard rows (a 160 KB text the files write in
/// pieces, quotes, NULs in JSON escapes, infinities) and a self-referencing
/// table (forward references: placeholders, then the link step) included.
#[test]
fn the_sqlite_target_holds_byte_for_byte_what_the_files_hold_when_applied() {
    let db = TestDb::new("boundeq");
    db.seed(400, 8);
    db.exec(
        "CREATE TABLE nodes (id int PRIMARY KEY, parent int REFERENCES nodes(id), name text, score float8);
         INSERT INTO nodes SELECT i, CASE WHEN i % 3 = 0 THEN NULL ELSE (i * 7) % 50 + 1 END, 'n''' || i,
           CASE WHEN i = 5 THEN 'Infinity'::float8 ELSE i / 3.0 END FROM generate_series(1, 50) i;",
    );
    let dir = temp_dir("boundeq");
    let p = |n: &str| dir.path().join(n).to_str().expect("p").to_string();
    let (out, files_db, bound_db) = (p("files"), p("files.sqlite"), p("bound.sqlite"));
    ok_json(pgflare(&db, &["--json", "load", "--target", "files", "--out", &out, "--state-dir", &p("s1")]));
    let o = pgflare(
        &db,
        &["--json", "load", "--target", "sqlite", "--sqlite", &bound_db, "--state-dir", &p("s2")],
    );
    ok_json(o);
    let applied = python("apply_d1_sql.py", &[&files_db, "-", &out], None);
    assert!(applied.status.success(), "{}", text(&applied));
    let dump = |path: &str| -> serde_json::Value {
        let o = python("sqlite_dump.py", &[path], None);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let (from_files, bound) = (dump(&files_db), dump(&bound_db));
    assert_eq!(from_files["tables"], bound["tables"]);
    assert_eq!(bound["tables"]["nodes"], 50, "{}", bound["tables"]);
    let (a, b) = (from_files["rows"].as_array().expect("rows"), bound["rows"].as_array().expect("rows"));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "the first row that differs");
    }
    let long = b.iter().filter(|r| r.as_str().is_some_and(|r| r.len() > 100_000)).count();
    assert_eq!(long, 1, "the 160 KB row is compared whole");
    assert!(b.iter().any(|r| r.as_str().is_some_and(|r| r.contains("Inf"))), "the infinity is compared");
}
