//! `pgflare restore --target postgres`: an archive back into a new Postgres
//! database. What comes back is proven twice: by `pgflare archive verify
//! --database-url TARGET` (the archive's row digests against the restored
//! rows), and by Postgres itself, whose text form of every row, of every
//! column type, constraint and index must be the same in the source and
//! the target. A restore killed while it copies is finished by running it
//! again, with nothing copied twice.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn archive(db: &TestDb, out: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["archive", "--quiet", "--out", out.to_str().expect("p")];
    args.extend_from_slice(extra);
    ok(pgflare(db, &args));
}

fn restore_args<'a>(out: &'a std::path::Path, target: &'a TestDb, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--json", "restore", out.to_str().expect("p"), "--target", "postgres"];
    args.extend_from_slice(&["--target-url", &target.url]);
    args.extend_from_slice(extra);
    args
}

/// Every row of `table` as Postgres prints it, in key order.
fn rows_text(db: &TestDb, table: &str, key: &str) -> String {
    db.query_one(&format!("SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY {key}), '') FROM {table} t"))
}

/// Columns with their types, constraints and indexes of `table`, as
/// Postgres prints them.
fn structure(db: &TestDb, table: &str) -> String {
    db.query_one(&format!(
        "SELECT concat_ws(E'\\n',
           (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull, ', '
                              ORDER BY attnum)
              FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped),
           (SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname)
              FROM pg_constraint WHERE conrelid = '{table}'::regclass),
           (SELECT string_agg(pg_get_indexdef(indexrelid), ', ' ORDER BY pg_get_indexdef(indexrelid))
              FROM pg_index WHERE indrelid = '{table}'::regclass))"
    ))
}

/// The restored target equals the source, table by table, as Postgres
/// prints rows and structure, and `archive verify` against the target
/// finds every row digest of the archive.
fn assert_restored(source: &TestDb, target: &TestDb, out: &std::path::Path, tables: &[(&str, &str)]) {
    for (table, key) in tables {
        assert_eq!(structure(target, table), structure(source, table), "structure of {table}");
        let (s, t) = (rows_text(source, table, key), rows_text(target, table, key));
        assert!(s == t, "rows of {table} differ:\nsource:\n{s:.2000}\ntarget:\n{t:.2000}");
    }
    let verified = ok(pgflare(target, &["archive", "verify", out.to_str().expect("p"), "--against-source"]));
    assert!(verified.contains(&format!("OK: {} tables", tables.len())), "{verified}");
    assert_eq!(target.query_one("SELECT (to_regnamespace('pgflare_restore') IS NULL)::text"), "true");
}

#[test]
fn every_type_comes_back_into_a_new_postgres_bit_for_bit() {
    let source = TestDb::new("rpgtypes");
    source.exec_file("fixtures/types.sql");
    let dir = temp_dir("rpgtypes");
    let out = dir.path().join("archive");
    archive(&source, &out, &[]);
    let target = TestDb::new("rpgtypes_to");
    let s = ok_json(pgflare(&source, &restore_args(&out, &target, &[])));
    assert_eq!(s["rows"].as_u64(), Some(4), "{s:#}");
    assert_restored(&source, &target, &out, &[("type_zoo", "id")]);
    // The enum keeps its labels in their order, the domain its base type.
    let labels = "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum \
                  WHERE enumtypid = 'mood'::regtype";
    assert_eq!(target.query_one(labels), "sad,ok,happy");
    let domain = "SELECT format_type(typbasetype, typtypmod) FROM pg_type WHERE oid = 'short_text'::regtype";
    assert_eq!(target.query_one(domain), "character varying(20)");
    // Floats and vectors bit for bit: Postgres's own binary forms compared.
    let bits = "SELECT md5(string_agg(float4send(f4)::text || float8send(f8)::text || \
                coalesce(vector_send(v)::text, '') || coalesce(halfvec_send(hv)::text, ''), ',' ORDER BY id)) \
                FROM type_zoo";
    assert_eq!(target.query_one(bits), source.query_one(bits));
}

#[test]
fn seeded_tables_come_back_with_keys_indexes_and_many_files_in_parallel() {
    let source = TestDb::new("rpgseed");
    source.seed(2000, 16);
    // An empty table with a vector index (pgvector here cannot build one
    // over rows: see the README's test notes), to see it left out.
    source.exec(
        "CREATE TABLE notes (id int PRIMARY KEY, emb vector(3) NOT NULL);
         CREATE INDEX notes_emb_idx ON notes USING hnsw (emb vector_cosine_ops);",
    );
    let dir = temp_dir("rpgseed");
    let out = dir.path().join("archive");
    archive(&source, &out, &["--partition-mib", "1", "--jobs", "2"]);
    let target = TestDb::new("rpgseed_to");
    let s = ok_json(pgflare(&source, &restore_args(&out, &target, &["--jobs", "3", "--no-vector-indexes"])));
    let skipped = s["left_out"].as_array().expect("the vector index is listed");
    assert_eq!(skipped.len(), 1, "{s:#}");
    let def = skipped[0]["statement"].as_str().expect("sql");
    assert!(def.contains("USING hnsw") && def.ends_with(';'), "{s:#}");
    let files: u64 = s["tables"].as_array().expect("t").iter().filter_map(|t| t["files"].as_u64()).sum();
    assert!(files > 3, "expected several files: {s:#}");
    // The hnsw index is the only difference; build it and compare all.
    target.exec(def);
    assert_restored(&source, &target, &out, &[("documents", "id"), ("chunks", "id"), ("notes", "id")]);
}

#[test]
fn a_table_restored_alone_leaves_out_its_foreign_key_and_says_so() {
    let source = TestDb::new("rpgalone");
    source.seed(100, 4);
    let dir = temp_dir("rpgalone");
    let out = dir.path().join("archive");
    archive(&source, &out, &[]);
    let target = TestDb::new("rpgalone_to");
    let s = ok_json(pgflare(&source, &restore_args(&out, &target, &["--table", "chunks"])));
    let left = s["left_out"].as_array().expect("the foreign key is listed");
    assert_eq!(left.len(), 1, "{s:#}");
    assert!(left[0]["statement"].as_str().expect("sql").contains("REFERENCES documents"), "{s:#}");
    assert!(left[0]["reason"]
        .as_str()
        .expect("why")
        .contains("\"public\".\"documents\" is not in the target"));
    assert_eq!(rows_text(&target, "chunks", "id"), rows_text(&source, "chunks", "id"));
    let keys = "SELECT string_agg(contype::text, '' ORDER BY contype) FROM pg_constraint \
                WHERE conrelid = 'chunks'::regclass AND contype <> 'n'";
    assert_eq!(target.query_one(keys), "pu", "the primary and unique keys are there, the foreign key not");
}

#[test]
fn a_target_that_has_the_tables_is_refused_unless_into_existing() {
    let source = TestDb::new("rpgfull");
    source.seed(100, 4);
    let dir = temp_dir("rpgfull");
    let out = dir.path().join("archive");
    archive(&source, &out, &[]);
    let target = TestDb::new("rpgfull_to");
    target.exec("CREATE TABLE documents (id uuid)");
    let o = pgflare(&source, &restore_args(&out, &target, &[]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already has public.documents") && err.contains("--into-existing"), "{err}");
    // Nothing was written: no other table, no ledger.
    let made = "SELECT count(*)::text FROM pg_class WHERE relname IN ('chunks') \
                OR relnamespace = to_regnamespace('pgflare_restore')";
    assert_eq!(target.query_one(made), "0");
    assert!(!err.contains(&target.url), "the URL with its password is never shown");

    // Into an existing empty table of the same shape it goes through.
    let target = TestDb::new("rpgfull_to2");
    let ddl = source.query_one(
        "SELECT 'CREATE TABLE documents (' || string_agg(quote_ident(attname) || ' ' || \
         format_type(atttypid, atttypmod), ', ' ORDER BY attnum) || ')' FROM pg_attribute \
         WHERE attrelid = 'documents'::regclass AND attnum > 0 AND NOT attisdropped",
    );
    target.exec(&ddl);
    let s = ok_json(pgflare(&source, &restore_args(&out, &target, &["--into-existing"])));
    assert_eq!(
        s["rows"].as_u64(),
        Some(source.count("SELECT count(*) FROM chunks") + source.count("SELECT count(*) FROM documents"))
    );
    assert_eq!(rows_text(&target, "chunks", "id"), rows_text(&source, "chunks", "id"));
    assert_eq!(rows_text(&target, "documents", "id"), rows_text(&source, "documents", "id"));
}

#[test]
fn a_restore_killed_while_copying_is_finished_by_the_next_run_with_nothing_twice() {
    let source = TestDb::new("rpgkill");
    source.seed(3000, 16);
    let dir = temp_dir("rpgkill");
    let out = dir.path().join("archive");
    archive(&source, &out, &["--partition-mib", "1"]);
    let target = TestDb::new("rpgkill_to");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(restore_args(&out, &target, &["--jobs", "2"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start restore");
    // As soon as the tables exist, another session locks documents (its
    // one file is copied last: files go largest first): the restore then
    // waits inside that COPY (or, if it was quicker, before adding a key),
    // with files of chunks committed or in flight.
    let holder = SessionLock::when(
        &target,
        "SELECT to_regclass('documents') IS NOT NULL",
        "LOCK TABLE documents IN ACCESS EXCLUSIVE MODE",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // Stopped once a file is in and the restore waits for the lock.
    let waiting = "SELECT (count(*) > 0 AND (SELECT count(*) FROM pgflare_restore.files) > 0)::text \
                   FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgflare' AND wait_event_type = 'Lock'";
    while target.query_one(waiting) == "false" {
        assert!(child.try_wait().expect("wait").is_none(), "the restore ended before it could be stopped");
        assert!(Instant::now() < deadline, "the restore never waited for the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    drop(holder);

    // What the killed run left: whole files only, each with its record.
    let copied =
        "SELECT coalesce(sum(rows), 0)::text FROM pgflare_restore.files WHERE table_name = 'public.chunks'";
    let copied = target.query_one(copied);
    assert_eq!(target.query_one("SELECT count(*)::text FROM chunks"), copied);

    let s = ok_json(pgflare(&source, &restore_args(&out, &target, &[])));
    assert!(s["files_already_copied"].as_u64().unwrap_or(0) >= 1, "{s:#}");
    assert_restored(&source, &target, &out, &[("documents", "id"), ("chunks", "id")]);
}

#[test]
fn a_cloudflare_archive_comes_back_into_postgres_with_the_d1_columns_and_the_vectors() {
    use crate::archive_cloudflare::{archive_cf, loaded};
    let source = TestDb::new("rpgcf");
    let emu = Emulator::start(&[]);
    let dir = temp_dir("rpgcf");
    let config = loaded(&source, &emu, dir.path(), 300, 8);
    let out = dir.path().join("cf-archive");
    ok_json(archive_cf(&source, &emu, &config, &out, &[]));
    ok(pgflare(&source, &["archive", "verify", out.to_str().expect("p")]));
    let target = TestDb::new("rpgcf_to");
    ok_json(pgflare(&source, &restore_args(&out, &target, &[])));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("manifest"))
            .expect("json");
    for t in manifest["tables"].as_array().expect("tables") {
        let name = t["name"].as_str().expect("name");
        // The columns D1 held (and the vector rebuilt from Vectorize), as
        // Postgres prints them on both sides.
        let cols: Vec<String> = t["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| format!("\"{}\"", c["name"].as_str().expect("column")))
            .collect();
        assert!(name != "chunks" || cols.contains(&"\"embedding\"".to_string()), "{t:#}");
        let rows = |db: &TestDb| {
            db.query_one(&format!(
                "SELECT string_agg(row({})::text, E'\\n' ORDER BY id) FROM {name}",
                cols.join(", ")
            ))
        };
        assert_eq!(rows(&target), rows(&source), "{name}");
    }
    let verified = ok(pgflare(&target, &["archive", "verify", out.to_str().expect("p"), "--against-source"]));
    // Its side table (_vectorize, vectors set aside) counts as a table.
    assert!(
        verified.contains("OK: 3 tables") && verified.contains("match the manifest and the source"),
        "{verified}"
    );
}
