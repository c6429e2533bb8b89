//! Soft deletes along foreign keys: a row whose parent (among the migrated
//! tables) is soft-deleted is treated as deleted too, transitively and
//! along self-references, by `load`, `sync` and `verify` alike. D1
//! enforces foreign keys, so a live child of an archived document could
//! not be written anyway; the application no longer shows it either.
//! Sync removes the children of a parent that becomes soft-deleted (their
//! own rows did not change) and brings them back when it is restored, and
//! counts only the rows it really removed from D1.

use std::path::{Path, PathBuf};

use super::sync::Setup;
use crate::common::*;

/// `init`'s pgflare.toml with `soft_delete = COLUMN` added to each
/// `(table, column)`.
pub(crate) fn config_with_soft_deletes(db: &TestDb, dir: &Path, soft: &[(&str, &str)]) -> PathBuf {
    let config = PathBuf::from(init_config(db, dir));
    let mut text = std::fs::read_to_string(&config).expect("config");
    for (t, c) in soft {
        let at = format!("name = \"{t}\"");
        assert!(text.contains(&at), "init maps {t}: {text}");
        text = text.replacen(&at, &format!("{at}\nsoft_delete = \"{c}\""), 1);
    }
    std::fs::write(&config, text).expect("write config");
    config
}

/// The documents/chunks seed, with `deleted_at` on documents only (chunks
/// have no soft-delete column of their own: the common case).
pub(crate) fn seeded(tag: &str, chunks: usize, dims: usize) -> TestDb {
    let db = TestDb::new(tag);
    db.seed(chunks, dims);
    db.exec("ALTER TABLE documents ADD COLUMN deleted_at timestamptz");
    db
}

/// The `n`-th document (by id) that has chunks with embeddings.
fn document(db: &TestDb, n: usize) -> String {
    db.query_one(&format!(
        "SELECT id::text FROM documents d WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id \
         AND c.embedding IS NOT NULL) ORDER BY id OFFSET {n} LIMIT 1"
    ))
}

#[test]
fn a_soft_deleted_parent_hides_its_live_children_in_load_and_verify() {
    let db = seeded("sdload", 300, 4);
    let archived = document(&db, 0);
    db.exec(&format!("UPDATE documents SET deleted_at = now() WHERE id = '{archived}'"));
    let hidden = db.count(&format!("SELECT count(*) FROM chunks WHERE document_id = '{archived}'"));
    assert!(hidden > 0);
    let dir = temp_dir("sdload");
    let config = config_with_soft_deletes(&db, dir.path(), &[("documents", "deleted_at")]);
    let (c, sqlite) = (config.to_str().expect("p"), dir.path().join("d1.sqlite"));
    let state = dir.path().join("state");
    let mut args = vec!["--json", "load", "--config", c, "--target", "sqlite"];
    args.extend(["--sqlite", sqlite.to_str().expect("p"), "--state-dir", state.to_str().expect("p")]);
    let s = ok_json(pgflare(&db, &args));
    let total = db.count("SELECT count(*) FROM chunks");
    let chunks = table(&s, "public.chunks");
    assert_eq!(chunks["rows"].as_u64(), Some(total - hidden), "{s:#}");
    assert_eq!(chunks["rows_hidden_by_deleted_parent"].as_u64(), Some(hidden), "{s:#}");
    let docs = table(&s, "public.documents");
    assert_eq!(docs["rows_soft_deleted"].as_u64(), Some(1), "{s:#}");
    assert_eq!(docs["rows_hidden_by_deleted_parent"].as_u64(), Some(0), "{s:#}");
    let in_d1 =
        sqlite_count(&sqlite, &format!("SELECT count(*) FROM chunks WHERE document_id = '{archived}'"));
    assert_eq!(in_d1, 0, "no chunk of the archived document in D1");

    // verify expects exactly the rows load wrote.
    let report = dir.path().join("report");
    let mut args = vec!["--json", "verify", "--config", c, "--sqlite", sqlite.to_str().expect("p")];
    args.extend(["--no-vectorize", "--report-dir", report.to_str().expect("p")]);
    let v = ok_json(pgflare(&db, &args));
    assert_eq!(v["verdict"]["status"], "consistent", "{v:#}");
}

#[test]
fn sync_removes_and_restores_the_children_of_a_soft_deleted_parent_and_counts_only_real_removals() {
    let db = seeded("sdsync", 300, 8);
    // Archived before the load: it and its chunks never reach D1.
    let archived = document(&db, 0);
    db.exec(&format!("UPDATE documents SET deleted_at = now() WHERE id = '{archived}'"));
    let emu = Emulator::start(&["--vectorize-delay-ms", "100"]);
    let dir = temp_dir("sdsync");
    let config = config_with_soft_deletes(&db, dir.path(), &[("documents", "deleted_at")]);
    let state = dir.path().join("load-state");
    let o = emu
        .command(&db)
        .args(["--json", "load", "--config", config.to_str().expect("p"), "--target", "api"])
        .args(["--d1-database-id", "db1", "--vectorize-index", "vi", "--create-index"])
        .args(["--partition-mib", "1", "--state-dir", state.to_str().expect("p")])
        .output()
        .expect("load");
    let loaded = ok_json(o);
    let hidden_at_load = db.count(&format!("SELECT count(*) FROM chunks WHERE document_id = '{archived}'"));
    assert_eq!(
        table(&loaded, "public.chunks")["rows_hidden_by_deleted_parent"].as_u64(),
        Some(hidden_at_load),
        "{loaded:#}"
    );
    let s = Setup { db, emu, dir, config };
    let of = |doc: &str| {
        let d1 = s.d1();
        let n: i64 = d1
            .query_row("SELECT count(*) FROM chunks WHERE document_id = ?1", [doc], |r| r.get(0))
            .expect("count");
        n as u64
    };

    // A document is archived (its chunks untouched), and the archived one
    // is touched (an edit of a row D1 never had).
    let doc = document(&s.db, 1);
    let chunks_of_doc = s.db.count(&format!("SELECT count(*) FROM chunks WHERE document_id = '{doc}'"));
    let vectors_of_doc = s
        .db
        .count(&format!("SELECT count(*) FROM chunks WHERE document_id = '{doc}' AND embedding IS NOT NULL"));
    assert_eq!(of(&doc), chunks_of_doc);
    s.db.exec(&format!(
        "UPDATE documents SET deleted_at = now() WHERE id = '{doc}';
         UPDATE documents SET title = title || ' (renamed while archived)' WHERE id = '{archived}';"
    ));
    // Without the hard-delete sweep: the removal must not depend on it.
    let (code, r, out) = s.sync(&["--no-hard-deletes"]);
    assert_eq!(code, Some(0), "{out}");
    let docs = table(&r, "public.documents");
    assert_eq!(docs["rows_soft_deleted"].as_u64(), Some(1), "only the document D1 had: {r:#}");
    let chunks = table(&r, "public.chunks");
    assert_eq!(chunks["rows_hidden_by_deleted_parent"].as_u64(), Some(chunks_of_doc), "{r:#}");
    // Every vector of the document's chunks, and only those: a chunk
    // without one is looked up in the index, not counted.
    assert_eq!(chunks["vectors"]["deleted"].as_u64(), Some(vectors_of_doc), "{r:#}");
    assert_eq!(r["rows_deleted"].as_u64(), Some(1 + chunks_of_doc), "{r:#}");
    assert_eq!(of(&doc), 0, "the archived document's chunks left D1");
    super::sync::assert_consistent(&s);

    // Restored: its chunks come back (their own rows never changed).
    s.db.exec(&format!("UPDATE documents SET deleted_at = NULL WHERE id = '{doc}'"));
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    let chunks = table(&r, "public.chunks");
    assert!(chunks["rows_upserted"].as_u64().expect("n") >= chunks_of_doc, "{r:#}");
    assert!(chunks["vectors"]["sent"].as_u64().expect("n") >= vectors_of_doc, "{r:#}");
    assert_eq!(of(&doc), chunks_of_doc, "the restored document's chunks are back");
    super::sync::assert_consistent(&s);
}

#[test]
fn sync_counts_as_soft_deleted_only_the_rows_it_removed_from_d1() {
    // A chunk archived before the load never reaches D1; an edit of it
    // (e.g. ON DELETE SET NULL touching it) is no soft delete to count,
    // and costs no Vectorize mutation.
    let archive =
        "UPDATE chunks SET deleted_at = now() WHERE id = (SELECT id FROM chunks ORDER BY id LIMIT 1)";
    let s = super::sync::setup_with("sdcount", 200, 8, &[], "", archive);
    let archived = s.db.query_one("SELECT id::text FROM chunks WHERE deleted_at IS NOT NULL");
    let live = s.db.query_one("SELECT id::text FROM chunks WHERE deleted_at IS NULL ORDER BY id LIMIT 1");
    s.db.exec(&format!(
        "UPDATE chunks SET token_count = token_count + 1 WHERE id = '{archived}';
         UPDATE chunks SET deleted_at = now() WHERE id = '{live}';"
    ));
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    let chunks = table(&r, "public.chunks");
    assert_eq!(chunks["rows_soft_deleted"].as_u64(), Some(1), "only the row D1 had: {r:#}");
    assert_eq!(chunks["vectors"]["deleted"].as_u64(), Some(1), "{r:#}");
    assert_eq!(r["rows_deleted"].as_u64(), Some(1), "{r:#}");
    super::sync::assert_consistent(&s);
}

/// folders (a tree, soft-deleted by `deleted_at`) <- notes (no soft-delete
/// column) <- lines (soft-deleted by a boolean `archived`).
const TREE: &str = "
CREATE TABLE folders (id int PRIMARY KEY, parent_id int REFERENCES folders (id), name text NOT NULL,
                      deleted_at timestamptz);
CREATE TABLE notes (id int PRIMARY KEY, folder_id int NOT NULL REFERENCES folders (id), title text NOT NULL);
CREATE TABLE lines (id int PRIMARY KEY, note_id int NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
                    body text NOT NULL, archived boolean NOT NULL DEFAULT false);
-- 1 > 2 > 3 > 4, and 5 > 6
INSERT INTO folders VALUES (1, NULL, 'root', NULL), (2, 1, 'a', NULL), (3, 2, 'b', NULL), (4, 3, 'c', NULL),
                           (5, NULL, 'other', NULL), (6, 5, 'd', NULL);
INSERT INTO notes SELECT n, 1 + (n % 6), 'note ' || n FROM generate_series(1, 30) n;
INSERT INTO lines SELECT l, 1 + (l % 30), 'line ' || l, l % 7 = 0 FROM generate_series(1, 300) l;
";

/// Rows of each table that are live: not soft-deleted and no ancestor
/// (along the foreign keys, the folder tree included) soft-deleted,
/// computed here independently of pgflare.
fn tree_live(db: &TestDb) -> (u64, u64, u64) {
    let live_folders = "WITH RECURSIVE dead(id) AS (SELECT id FROM folders WHERE deleted_at IS NOT NULL \
         UNION SELECT f.id FROM folders f JOIN dead ON f.parent_id = dead.id) \
         SELECT id FROM folders WHERE id NOT IN (SELECT id FROM dead)";
    let folders = db.count(&format!("SELECT count(*) FROM ({live_folders}) f"));
    let notes = db.count(&format!("SELECT count(*) FROM notes WHERE folder_id IN ({live_folders})"));
    let lines = db.count(&format!(
        "SELECT count(*) FROM lines WHERE NOT archived AND note_id IN \
             (SELECT id FROM notes WHERE folder_id IN ({live_folders}))"
    ));
    (folders, notes, lines)
}

#[test]
fn soft_deletes_cascade_down_a_self_referencing_tree_and_through_tables_without_a_soft_delete_column() {
    let db = TestDb::new("sdtree");
    db.exec(TREE);
    // Folder 2 archived: 3 and 4 below it, their notes and lines go too.
    db.exec("UPDATE folders SET deleted_at = now() WHERE id = 2; ANALYZE");
    let dir = temp_dir("sdtree");
    let config =
        config_with_soft_deletes(&db, dir.path(), &[("folders", "deleted_at"), ("lines", "archived")]);
    let (c, sqlite, state) =
        (config.to_str().expect("p"), dir.path().join("d1.sqlite"), dir.path().join("state"));
    let d1 = sqlite.to_str().expect("p");
    let st = state.to_str().expect("p");
    let s = ok_json(pgflare(
        &db,
        &["--json", "load", "--config", c, "--target", "sqlite", "--sqlite", d1, "--state-dir", st],
    ));
    let (folders, notes, lines) = tree_live(&db);
    assert_eq!((folders, notes), (3, 15), "the test's own arithmetic");
    let in_d1 = |t: &str| sqlite_count(&sqlite, &format!("SELECT count(*) FROM {t}")) as u64;
    assert_eq!((in_d1("folders"), in_d1("notes"), in_d1("lines")), (folders, notes, lines), "{s:#}");
    assert_eq!(table(&s, "public.folders")["rows_hidden_by_deleted_parent"].as_u64(), Some(2), "{s:#}");
    assert_eq!(table(&s, "public.notes")["rows_hidden_by_deleted_parent"].as_u64(), Some(15), "{s:#}");
    let verify = |when: &str| {
        let report = dir.path().join(format!("report-{when}"));
        let v = ok_json(pgflare(
            &db,
            &[
                "--json",
                "verify",
                "--config",
                c,
                "--sqlite",
                d1,
                "--no-vectorize",
                "--report-dir",
                report.to_str().expect("p"),
            ],
        ));
        assert_eq!(v["verdict"]["status"], "consistent", "verify {when}: {v:#}");
    };
    verify("after load");

    // Folder 2 restored, folder 5 archived: one subtree comes back, the
    // other leaves (children before parents, so D1's keys never refuse).
    db.exec("UPDATE folders SET deleted_at = NULL WHERE id = 2; UPDATE folders SET deleted_at = now() WHERE id = 5");
    let sync = |extra: &[&str]| {
        let mut args = vec!["--json", "sync", "--config", c, "--target", "sqlite", "--sqlite", d1];
        args.extend(["--work-dir", st, "--once"]);
        args.extend(extra);
        ok_json(pgflare(&db, &args))
    };
    let r = sync(&["--no-hard-deletes"]);
    let (folders, notes, lines) = tree_live(&db);
    assert_eq!((in_d1("folders"), in_d1("notes"), in_d1("lines")), (folders, notes, lines), "{r:#}");
    assert_eq!(table(&r, "public.folders")["rows_soft_deleted"].as_u64(), Some(1), "{r:#}");
    assert_eq!(table(&r, "public.folders")["rows_hidden_by_deleted_parent"].as_u64(), Some(1), "{r:#}");
    verify("after sync");
    // Nothing changed: nothing to remove (rows may be sent again when
    // another database's transaction held the horizon back: idempotent).
    let r = sync(&[]);
    assert_eq!(r["rows_deleted"].as_u64(), Some(0), "{r:#}");
    assert_eq!((in_d1("folders"), in_d1("notes"), in_d1("lines")), (folders, notes, lines), "{r:#}");
}

/// `load --target sqlite` with `soft` deletes configured, which must be
/// refused (exit 2): its output, and the D1 file it was given.
fn refused_load(db: &TestDb, dir: &Path, soft: &[(&str, &str)]) -> (String, PathBuf) {
    let config = config_with_soft_deletes(db, dir, soft);
    let (sqlite, state) = (dir.join("d1.sqlite"), dir.join("state"));
    let mut args = vec!["load", "--config", config.to_str().expect("p"), "--target", "sqlite"];
    args.extend(["--sqlite", sqlite.to_str().expect("p"), "--state-dir", state.to_str().expect("p")]);
    let o = pgflare(db, &args);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    (out, sqlite)
}

#[test]
fn a_foreign_key_refusal_names_the_table_the_key_and_the_rows() {
    // Rows whose parent is missing: the foreign key was added NOT VALID,
    // so Postgres never checked them; D1 (which gets the key) refuses them.
    let db = TestDb::new("sdorphan");
    db.exec(
        "CREATE TABLE parents (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE kids (id int PRIMARY KEY, parent_id int, name text NOT NULL);
         INSERT INTO parents SELECT p, 'p' || p FROM generate_series(1, 5) p;
         INSERT INTO kids SELECT k, 1 + k % 5, 'k' || k FROM generate_series(1, 40) k;
         INSERT INTO kids VALUES (41, 77, 'orphan'), (42, 78, 'orphan');
         ALTER TABLE kids ADD CONSTRAINT kids_parent_fkey FOREIGN KEY (parent_id) REFERENCES parents (id) NOT VALID;",
    );
    let dir = temp_dir("sdorphan");
    let (out, _) = refused_load(&db, dir.path(), &[]);
    for part in
        ["public.kids", "kids_parent_fkey", "(parent_id)", "public.parents", "id=41", "id=42", "2 live rows"]
    {
        assert!(out.contains(part), "the refusal names {part}:\n{out}");
    }
}

#[test]
fn a_cycle_soft_deleted_deeper_than_pgflare_follows_is_refused_before_anything_is_written() {
    // authors.featured_book_id -> books, books.author_id -> authors: the
    // soft delete of author 1 hides book 1, then author 2 (featuring book
    // 1), then book 2 (by author 2): once around the cycle is followed,
    // the rest is checked and refused with the rows named.
    let db = TestDb::new("sdcycle");
    db.exec(
        "CREATE TABLE authors (id int PRIMARY KEY, featured_book_id int, deleted_at timestamptz);
         CREATE TABLE books (id int PRIMARY KEY, author_id int REFERENCES authors (id));
         ALTER TABLE authors ADD FOREIGN KEY (featured_book_id) REFERENCES books (id);
         INSERT INTO authors VALUES (1, NULL, now()), (2, NULL, NULL), (3, NULL, NULL);
         INSERT INTO books VALUES (1, 1), (2, 2), (3, 3);
         UPDATE authors SET featured_book_id = 1 WHERE id = 2;",
    );
    let dir = temp_dir("sdcycle");
    let (out, sqlite) = refused_load(&db, dir.path(), &[("authors", "deleted_at")]);
    assert!(out.contains("public.books") && out.contains("id=2") && out.contains("public.authors"), "{out}");
    assert!(!sqlite.exists(), "nothing was written: {out}");
}

/// A restore into D1 leaves out what `load` leaves out, found in the
/// archive alone (the archive holds every row, soft-deleted ones too):
/// rows marked deleted, a subtree of the self-referencing tree, the notes
/// of hidden folders (no soft-delete column of their own) and the lines
/// below them; the counts are `tree_live`'s, computed independently, and
/// verify against the source agrees.
#[test]
fn a_restore_into_d1_leaves_out_the_rows_load_leaves_out_from_the_archive_alone() {
    let db = TestDb::new("sdrestore");
    db.exec(TREE);
    db.exec("UPDATE folders SET deleted_at = now() WHERE id = 2; ANALYZE");
    let dir = temp_dir("sdrestore");
    let config =
        config_with_soft_deletes(&db, dir.path(), &[("folders", "deleted_at"), ("lines", "archived")]);
    let c = config.to_str().expect("p");
    let (archive, sqlite) = (dir.path().join("archive"), dir.path().join("d1.sqlite"));
    let (arc, d1) = (archive.to_str().expect("p"), sqlite.to_str().expect("p"));
    ok_json(pgflare(&db, &["--json", "archive", "--config", c, "--out", arc]));
    let s = ok_json(pgflare(
        &db,
        &["--json", "restore", arc, "--config", c, "--target", "sqlite", "--sqlite", d1],
    ));
    let (folders, notes, lines) = tree_live(&db);
    let in_d1 = |t: &str| sqlite_count(&sqlite, &format!("SELECT count(*) FROM {t}")) as u64;
    assert_eq!((in_d1("folders"), in_d1("notes"), in_d1("lines")), (folders, notes, lines), "{s:#}");
    let all = |t: &str| db.count(&format!("SELECT count(*) FROM {t}"));
    for (t, live) in [("folders", folders), ("notes", notes), ("lines", lines)] {
        let r = table(&s, &format!("public.{t}"));
        assert_eq!(r["not_live"].as_u64().unwrap_or(0), all(t) - live, "{t}: {s:#}");
        assert_eq!(r["rows"].as_u64(), Some(live), "{t}: {s:#}");
    }
    let v = verify_d1_file(&db, c, d1, &dir.path().join("report"));
    assert_eq!(v["verdict"]["status"], "consistent", "{v:#}");
}
