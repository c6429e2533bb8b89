//! `pgflare archive` and `archive verify` end to end.

use crate::common::*;

fn archive(db: &TestDb, out: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["archive", "--quiet", "--out", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    ok(pgflare(db, &args))
}

/// Reads the archive with pyarrow, DuckDB and polars (tests/py/compare_archive.py)
/// and asserts that every reader's values equal the source's.
pub fn readers_match_the_source(db: &TestDb, out: &std::path::Path) {
    let cmp = python("compare_archive.py", &["--archive", out.to_str().expect("path")], Some(&db.url));
    assert!(cmp.status.success(), "a reader failed or differs from the source\n{}", text(&cmp));
    let stdout = String::from_utf8_lossy(&cmp.stdout);
    assert!(stdout.contains(" 0 differences (read with pyarrow"), "{}", text(&cmp));
    assert!(stdout.contains("duckdb") && stdout.contains("polars"), "{}", text(&cmp));
}

#[test]
fn every_type_survives_the_archive_bit_for_bit() {
    let db = TestDb::new("types");
    db.exec_file("fixtures/types.sql");
    let out = temp_dir("types");
    archive(&db, out.path(), &["--jobs", "2"]);

    readers_match_the_source(&db, out.path());

    assert_schema("archive-manifest", &[&out.path().join("manifest.json")]);

    let verified =
        ok(pgflare(&db, &["archive", "verify", out.path().to_str().expect("p"), "--against-source"]));
    assert!(verified.contains("OK: 1 tables"), "{verified}");
    second_digest_implementation_agrees(out.path());
}

/// tests/py/row_digest.py implements the README's digest specification on
/// its own; it must agree with every digest in the manifest, and notice a
/// wrong one.
fn second_digest_implementation_agrees(dir: &std::path::Path) {
    let d = python("row_digest.py", &[dir.to_str().expect("p")], None);
    assert!(d.status.success(), "the two digest implementations disagree\n{}", text(&d));
    assert!(String::from_utf8_lossy(&d.stdout).contains("0 disagreements"), "{}", text(&d));

    let tampered = temp_dir("tampered-manifest");
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    let mut m: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    m["tables"][0]["row_digest"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(tampered.path().join("manifest.json"), m.to_string()).expect("write");
    for t in m["tables"].as_array().expect("tables") {
        for f in t["files"].as_array().expect("files") {
            let rel = f["path"].as_str().expect("path");
            std::fs::create_dir_all(tampered.path().join(rel).parent().expect("dir")).expect("mkdir");
            std::fs::copy(dir.join(rel), tampered.path().join(rel)).expect("copy");
        }
    }
    let d = python("row_digest.py", &[tampered.path().to_str().expect("p")], None);
    assert_eq!(d.status.code(), Some(1), "a wrong digest went unnoticed\n{}", text(&d));
    assert!(String::from_utf8_lossy(&d.stdout).contains("1 disagreements"), "{}", text(&d));
}

/// Data pages and encodings of the column chunk `column` (a leaf path such
/// as `v.list.element`) in the first row group of a Parquet file.
fn leaf_chunk(file: &std::path::Path, column: &str) -> (usize, Vec<parquet::basic::Encoding>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(file).expect("open")).expect("parquet");
    let group = reader.get_row_group(0).expect("row group 0");
    let leaf = (0..group.num_columns())
        .find(|&i| group.metadata().column(i).column_path().string() == column)
        .unwrap_or_else(|| panic!("no column {column} in {}", file.display()));
    let encodings = group.metadata().column(leaf).encodings().collect();
    let pages = group.get_column_page_reader(leaf).expect("pages");
    let data = pages
        .map(|p| p.expect("page"))
        .filter(|p| p.page_type() != parquet::basic::PageType::DICTIONARY_PAGE)
        .count();
    (data, encodings)
}

/// polars 2.1 panicked ("validity mask length must match the number of
/// values") on a fixed-size vector column whose NULL rows sit in some of its
/// data pages but not all (pyarrow and DuckDB read it). The first 100 rows
/// hold the NULLs; 25,000 rows of vector(3) fill more than one page. Every
/// other kind of column with NULLs rides along, as do an all-NULL column
/// and an empty table (which gets no file).
#[test]
fn null_vectors_on_some_pages_open_in_polars_without_the_validity_mask_panic() {
    let db = TestDb::new("polarsnull");
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE pages (id bigint PRIMARY KEY, v vector(3), hv halfvec(2), free vector, tags text[],
                             n int[], meta jsonb, never vector(3));
         INSERT INTO pages
           SELECT g, CASE WHEN g > 100 THEN format('[%s,-0,1e-45]', g)::vector END,
                  CASE WHEN g > 100 THEN '[0.5,-65504]'::halfvec END,
                  CASE WHEN g > 100 THEN format('[%s]', g)::vector END,
                  CASE WHEN g > 100 THEN ARRAY['a', NULL, g::text] END,
                  CASE WHEN g > 100 THEN ARRAY[g, NULL] END,
                  CASE WHEN g > 100 THEN jsonb_build_object('g', g) END, NULL
             FROM generate_series(1, 25000) g;
         CREATE TABLE no_rows (id int PRIMARY KEY, v vector(3));",
    );
    let out = temp_dir("polarsnull");
    archive(&db, out.path(), &[]);
    let files = parquet_files(out.path());
    assert_eq!(files.len(), 1, "one file for `pages`, none for the empty table: {files:?}");
    // Leaf paths as parquet-format's LogicalTypes.md names them (`element`).
    for column in ["v.list.element", "hv.list.element"] {
        let (pages, encodings) = leaf_chunk(&files[0], column);
        assert!(pages > 1, "{column} must span several pages (NULLs in the first only) to matter: {pages}");
        assert!(encodings.contains(&parquet::basic::Encoding::BYTE_STREAM_SPLIT), "{column}: {encodings:?}");
    }
    assert!(leaf_chunk(&files[0], "tags.list.element").0 > 0);
    readers_match_the_source(&db, out.path());
    ok(pgflare(&db, &["archive", "verify", out.path().to_str().expect("p"), "--against-source"]));
}

#[test]
fn seeded_chunks_with_hard_rows_survive_many_partitions() {
    let db = TestDb::new("seeded");
    db.seed(3000, 32);
    let out = temp_dir("seeded");
    // Tiny partitions force many key ranges and several workers.
    let summary = archive(&db, out.path(), &["--jobs", "3", "--partition-mib", "1", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("--json prints JSON");
    let chunks = summary["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "public.chunks")
        .expect("chunks");
    assert!(chunks["partitions"].as_u64().expect("n") > 1, "{summary}");
    let expected = db.query_one("SELECT count(*)::text FROM chunks");
    assert_eq!(chunks["rows"].as_u64().expect("rows").to_string(), expected);

    readers_match_the_source(&db, out.path());
    ok(pgflare(&db, &["archive", "verify", out.path().to_str().expect("p"), "--against-source"]));
    second_digest_implementation_agrees(out.path());
}

#[test]
fn the_same_snapshot_gives_the_same_bytes_whatever_the_workers() {
    let db = TestDb::new("determinism");
    db.seed(600, 16);
    let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
    archive(&db, a.path(), &["--jobs", "1", "--partition-mib", "1"]);
    archive(&db, b.path(), &["--jobs", "4", "--partition-mib", "1"]);
    readers_match_the_source(&db, a.path()); // b must be byte-identical to a
    let (fa, fb) = (parquet_files(a.path()), parquet_files(b.path()));
    assert!(fa.len() > 2, "expected several files, got {fa:?}");
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.strip_prefix(a.path()).ok(), y.strip_prefix(b.path()).ok());
        assert_eq!(
            std::fs::read(x).expect("read"),
            std::fs::read(y).expect("read"),
            "{} differs",
            x.display()
        );
    }
}

#[test]
fn verify_names_the_file_and_row_of_an_altered_archive_and_a_changed_source() {
    let db = TestDb::new("tamper");
    db.exec_file("fixtures/types.sql");
    let out = temp_dir("tamper");
    archive(&db, out.path(), &[]);
    readers_match_the_source(&db, out.path());
    let dir = out.path().to_str().expect("p");
    let file = parquet_files(out.path()).pop().expect("a parquet file");
    let original = std::fs::read(&file).expect("read");

    // Alter one value with an independent writer: the file stays valid Parquet.
    let rewrite = python("alter_parquet.py", &[file.to_str().expect("p"), "t", "0", "hellO"], None);
    assert!(rewrite.status.success(), "{}", text(&rewrite));
    let offline = pgflare(&db, &["archive", "verify", dir]);
    assert_eq!(offline.status.code(), Some(1), "{}", text(&offline));
    let report = text(&offline);
    assert!(
        report.contains("type_zoo/part-00000-000.parquet") && report.contains("hash_mismatch"),
        "{report}"
    );
    assert!(report.contains("content_mismatch"), "{report}");
    let online = pgflare(&db, &["archive", "verify", dir, "--against-source", "--json"]);
    assert_eq!(online.status.code(), Some(1), "{}", text(&online));
    let scratch = temp_dir("tamperjson");
    assert_doc_schema("archive-verify-report", &String::from_utf8_lossy(&online.stdout), scratch.path());
    let json: serde_json::Value = serde_json::from_slice(&online.stdout).expect("json");
    let changed: Vec<&serde_json::Value> = json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter(|p| p["kind"] == "changed_row")
        .collect();
    assert_eq!(changed.len(), 1, "{json}");
    assert_eq!(changed[0]["file"], "type_zoo/part-00000-000.parquet");
    assert_eq!(changed[0]["row"], 0);
    assert_eq!(changed[0]["key"], "id=1");

    // Restore the file; now change the source instead.
    std::fs::write(&file, original).expect("restore");
    ok(pgflare(&db, &["archive", "verify", dir]));
    db.exec("UPDATE type_zoo SET t = 'changed' WHERE id = 3; DELETE FROM type_zoo WHERE id = 4; INSERT INTO type_zoo (id) VALUES (5)");
    let online = pgflare(&db, &["archive", "verify", dir, "--against-source", "--json"]);
    assert_eq!(online.status.code(), Some(1), "{}", text(&online));
    let json: serde_json::Value = serde_json::from_slice(&online.stdout).expect("json");
    let mut kinds: Vec<(String, String)> = json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| (p["kind"].as_str().unwrap_or("").to_string(), p["key"].as_str().unwrap_or("").to_string()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("changed_row".to_string(), "id=3".to_string()),
            ("extra_row".to_string(), "id=4".to_string()),
            ("missing_row".to_string(), "id=5".to_string()),
        ],
        "{json}"
    );
}

#[test]
fn an_output_folder_in_use_is_refused_unless_overwrite() {
    let db = TestDb::new("outdir");
    db.exec_file("fixtures/types.sql");
    let out = temp_dir("outdir");
    std::fs::write(out.path().join("keep.txt"), "mine").expect("write");
    let o = pgflare(&db, &["archive", "--out", out.path().to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("is not empty") && text(&o).contains("--overwrite"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(out.path().join("keep.txt")).expect("kept"), "mine");
}

/// A source that moved on from its archive by 2,100 rows, spread over
/// 40% of the key buckets (some 16,000 rows): the
/// buckets are split into finer parts first and only the differing parts'
/// rows are kept (the note says so); every difference is still named.
#[test]
fn a_source_changed_in_many_buckets_is_compared_keeping_only_the_differing_rows() {
    let db = TestDb::new("archiverefine");
    db.seed(40_000, 4);
    let out = temp_dir("archiverefine");
    archive(&db, out.path(), &["--table", "chunks"]);
    db.exec(
        "UPDATE chunks SET content = content || '~' WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT 2000); \
         DELETE FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY id DESC LIMIT 100)",
    );
    let dir = out.path().to_str().expect("p");
    let online = pgflare(&db, &["archive", "verify", dir, "--against-source", "--json"]);
    assert_eq!(online.status.code(), Some(1), "{}", text(&online));
    let scratch = temp_dir("archiverefinejson");
    assert_doc_schema("archive-verify-report", &String::from_utf8_lossy(&online.stdout), scratch.path());
    let json: serde_json::Value = serde_json::from_slice(&online.stdout).expect("json");
    let listed = json["problems"].as_array().expect("problems");
    let count = |kind: &str| listed.iter().filter(|p| p["kind"] == kind).count() as u64;
    // All counted, the first 100 listed: changed in the source, or deleted
    // from it (so only in the archive).
    assert_eq!(listed.len() as u64 + json["unlisted_problems"].as_u64().expect("n"), 2_100, "{json:#}");
    assert_eq!(count("changed_row") + count("extra_row"), listed.len() as u64, "{json:#}");
    let (note, differ) = split_note(&json["notes"]);
    assert!((2_000..=2_100).contains(&differ), "{differ} parts differ for 2,100 differences: {note}");
}
