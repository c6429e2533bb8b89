//! Parallel export reads exactly one point in time: the snapshot's rows,
//! no more, no less, whatever commits while the workers run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pgflare::archive::{export_at, ArchiveOptions, ParquetConfig};
use pgflare::progress::Progress;
use pgflare::source::{ReadOptions, Selection, Snapshot, Source, SplitOptions};
use sqlx::{Connection, PgConnection};

use crate::common::*;

const FINGERPRINT_SQL: &str =
    "SELECT count(*)::text || ' ' || md5(string_agg(id::text || content, ',' ORDER BY id::text)) FROM chunks";

fn fingerprint(dir: &std::path::Path) -> serde_json::Value {
    let o = python("table_fingerprint.py", &[dir.to_str().expect("p"), "chunks", "id", "content"], None);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn changes_committed_after_the_snapshot_are_not_in_the_archive() {
    let db = TestDb::new("snapshot");
    db.seed(1500, 8);
    let before = db.query_one(FINGERPRINT_SQL);
    let out = temp_dir("snapshot");
    let opts = ArchiveOptions {
        selection: Selection {
            schema: "public".into(),
            tables: vec!["chunks".into()],
            ..Selection::default()
        },
        read: ReadOptions { jobs: 3, batch_rows: 100, batch_bytes: 1 << 20 },
        split: SplitOptions { target_bytes: 256 << 10, max_partitions: 16 },
        parquet: ParquetConfig {
            dir: out.path().to_path_buf(),
            file_bytes: 1 << 30,
            row_group_bytes: 1 << 20,
            zstd_level: 1,
        },
        overwrite: false,
    };
    let url = db.url.clone();
    let summary = block_on(async move {
        let src = Source::parse(&url).expect("url");
        let snapshot = Snapshot::export(&src).await.expect("snapshot");
        // Committed after the snapshot was exported, before any worker reads.
        let mut other = PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(
            "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT 50);
             UPDATE chunks SET content = 'MUTATED' WHERE id IN (SELECT id FROM chunks ORDER BY id DESC LIMIT 50);
             INSERT INTO chunks (id, document_id, chunk_index, content, token_count, created_at, updated_at)
               SELECT gen_random_uuid(), document_id, chunk_index + 100000, 'INSERTED', 1, now(), now()
                 FROM chunks ORDER BY id LIMIT 100;",
        )
        .execute(&mut other)
        .await
        .expect("mutate");
        export_at(&src, snapshot, &opts, &Progress::hidden()).await.expect("archive").1
    });
    assert!(summary.tables[0].partitions > 1, "want several partitions: {summary:?}");
    let after = db.query_one(FINGERPRINT_SQL);
    assert_ne!(before, after, "the mutation changed nothing?");
    let archived = fingerprint(out.path());
    assert_eq!(format!("{} {}", archived["rows"], archived["md5"].as_str().expect("md5")), before);
}

#[test]
fn a_busy_writer_never_splits_a_transaction_across_partitions() {
    let db = TestDb::new("busy");
    db.seed(3000, 32);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (db.url.clone(), stop.clone());
        std::thread::spawn(move || {
            block_on(async move {
                let mut c = PgConnection::connect(&url).await.expect("connect");
                let started = std::time::Instant::now();
                let mut n = 0u64;
                // Bounded in count and time, whatever happens to the archive.
                while !stop.load(Ordering::SeqCst) && n < 20_000 && started.elapsed().as_secs() < 60 {
                    let sql = format!(
                        "BEGIN;
                         INSERT INTO chunks (id, document_id, chunk_index, content, token_count, created_at, updated_at)
                           SELECT gen_random_uuid(), d.id, 200000 + {n} * 2 + g, 'pair-{n}', 1, now(), now()
                             FROM (SELECT id FROM documents ORDER BY id LIMIT 1) d, generate_series(0, 1) g;
                         COMMIT;"
                    );
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.expect("insert pair");
                    n += 1;
                }
                n
            })
        })
    };
    // Let the writer get going, then archive with many small partitions.
    let waiting = std::time::Instant::now();
    let pairs = || db.query_one("SELECT count(*)::text FROM chunks WHERE content LIKE 'pair-%'");
    while pairs().parse::<u64>().unwrap_or(0) < 20 {
        assert!(!writer.is_finished(), "the writer stopped before writing 20 pairs");
        assert!(waiting.elapsed().as_secs() < 60, "the writer wrote no pairs in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = temp_dir("busy");
    ok(pgflare(
        &db,
        &[
            "archive",
            "--quiet",
            "--out",
            out.path().to_str().expect("p"),
            "--table",
            "chunks",
            "--jobs",
            "4",
            "--partition-mib",
            "1",
            "--batch-rows",
            "64",
        ],
    ));
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");
    let fp = fingerprint(out.path());
    assert!(fp["pairs"].as_u64().expect("pairs") >= 10, "{fp}");
    assert_eq!(fp["broken_pairs"], 0, "a transaction was split: {fp} (writer committed {written} pairs)");
}
