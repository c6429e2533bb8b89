//! An archive made with `--exclude` (the way out pgflare offers for a
//! column type it cannot read) must verify against its source: the column
//! it left out is not read again. Found with Supabase's hybrid-search
//! schema in the zoo (`fts tsvector GENERATED ALWAYS AS (to_tsvector(...))`).

use crate::common::*;

#[test]
fn archive_verify_against_source_skips_the_columns_the_archive_left_out() {
    let db = TestDb::new("archexcl");
    db.exec(
        "CREATE TABLE documents (
             id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
             content text,
             fts tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED);
         INSERT INTO documents (content) SELECT 'the quick brown fox ' || g FROM generate_series(1, 40) g;",
    );
    // Without the exclusion the type is refused, with its way out named.
    let o = pgflare(&db, &["archive", "--out", "/nonexistent/never-written"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--exclude documents.fts"), "{}", text(&o));

    let dir = temp_dir("archexcl");
    let out = dir.path().join("archive");
    let out = out.to_str().expect("p");
    ok(pgflare(&db, &["archive", "--out", out, "--exclude", "documents.fts"]));
    let o = pgflare(&db, &["--json", "archive", "verify", out, "--against-source"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!((v["rows_checked"].as_u64(), &v["problems"]), (Some(40), &serde_json::json!([])), "{v:#}");

    // A changed row is still found (the comparison did run).
    db.exec("UPDATE documents SET content = 'changed' WHERE id = 7");
    let o = pgflare(&db, &["--json", "archive", "verify", out, "--against-source"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("changed_row"), "{}", text(&o));
}
