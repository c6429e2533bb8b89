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
