//! A declaratively partitioned table (multi-tenant RAG schemas partition
//! their chunks by tenant) is one table for pgflare: its size and row
//! estimate are its partitions', so it is split into key ranges like any
//! table of that size. Found with the schema zoo: the parent relation has
//! no storage of its own (0 bytes) and autovacuum never analyzes it, so a
//! table of any size was read as one range with no row estimate.

use crate::common::*;

#[test]
fn a_partitioned_table_is_sized_and_split_by_its_partitions() {
    let db = TestDb::new("partitioned");
    db.exec(
        "CREATE TABLE tenants (id int PRIMARY KEY);
         CREATE TABLE chunks (tenant_id int NOT NULL REFERENCES tenants, id bigint NOT NULL, content text,
                              PRIMARY KEY (id, tenant_id)) PARTITION BY LIST (tenant_id);
         CREATE TABLE chunks_t1 PARTITION OF chunks FOR VALUES IN (1);
         CREATE TABLE chunks_t2 PARTITION OF chunks FOR VALUES IN (2);
         INSERT INTO tenants VALUES (1), (2);
         INSERT INTO chunks SELECT 1 + g % 2, g, (SELECT string_agg(md5(g::text || i::text), ' ') FROM generate_series(1, 50) i)
           FROM generate_series(1, 3000) g;
         -- The same rows in a plain table, sized and split the same way.
         CREATE TABLE plain_chunks (LIKE chunks INCLUDING ALL);
         INSERT INTO plain_chunks SELECT * FROM chunks;
         -- What autovacuum does: the partitions get analyzed, the parent never.
         ANALYZE chunks_t1; ANALYZE chunks_t2; ANALYZE plain_chunks;",
    );
    let partitions_bytes: u64 = db
        .query_one(
            "SELECT sum(pg_total_relation_size(c))::text FROM unnest('{chunks_t1,chunks_t2}'::regclass[]) c",
        )
        .parse()
        .expect("bytes");
    assert!(partitions_bytes > 5 << 20, "the test needs several MiB: {partitions_bytes}");

    let args = ["--json", "inspect", "--no-scan", "--table", "chunks", "--table", "plain_chunks"];
    let v: serde_json::Value = ok_json(pgflare(&db, &args));
    for t in v["tables"].as_array().expect("tables") {
        assert!(t["total_bytes"].as_u64().expect("bytes") >= partitions_bytes, "{t:#}");
        assert_eq!(t["row_estimate"].as_u64(), Some(3000), "{t:#}");
    }

    // Several ranges of about 1 MiB, loaded and verified.
    let dir = temp_dir("partitioned");
    let sqlite = dir.path().join("d1.sqlite");
    let st = dir.path().join("state");
    let out = ok(pgflare(
        &db,
        &[
            "--json",
            "load",
            "--target",
            "sqlite",
            "--sqlite",
            sqlite.to_str().expect("p"),
            "--partition-mib",
            "1",
            "--state-dir",
            st.to_str().expect("p"),
        ],
    ));
    let s: serde_json::Value = serde_json::from_str(&out).expect("load JSON");
    for name in ["public.chunks", "public.plain_chunks"] {
        let t = s["tables"].as_array().expect("t").iter().find(|t| t["table"] == name).expect("table");
        assert_eq!(t["rows"], 3000, "{s:#}");
        assert!(t["partitions"].as_u64().expect("n") >= 4, "split like a table of its size: {t:#}");
    }
    let report = dir.path().join("report");
    let o = pgflare(
        &db,
        &["verify", "--sqlite", sqlite.to_str().expect("p"), "--report-dir", report.to_str().expect("p")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
