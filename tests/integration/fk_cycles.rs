//! Foreign keys that point back into their own table or around a cycle of
//! tables: a page tree (Supabase's `nextjs-openai-doc-search` schema),
//! comment threads with uuid keys, a chunk-to-previous-chunk chain, two
//! tables that reference each other, and a NOT NULL self-reference whose
//! root is its own parent (a DEFERRABLE constraint). Children's keys sort
//! before their parents' and every table spans several key ranges, so rows
//! arrive before the rows they reference. Each target (`files` applied by
//! an independent reader, `sqlite`, `api` killed and run again) must load
//! them exactly, and `sync` must carry inserts of a parent with its child,
//! re-parented rows and deleted subtrees larger than one delete request.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

const TABLES: [&str; 8] =
    ["nods_page", "nods_page_section", "comments", "chunk_chain", "cycle_a", "cycle_b", "tree", "plain"];

/// The schema and rows. Every table is a few MiB, so `--partition-mib 1`
/// gives it several key ranges.
pub(crate) fn create(db: &TestDb) {
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS vector;
         -- supabase-community/nextjs-openai-doc-search, supabase/migrations/20230406025118_init.sql
         CREATE TABLE nods_page (
           id bigserial PRIMARY KEY,
           parent_page_id bigint REFERENCES nods_page,
           path text NOT NULL UNIQUE,
           checksum text,
           meta jsonb,
           type text,
           source text
         );
         CREATE TABLE nods_page_section (
           id bigserial PRIMARY KEY,
           page_id bigint NOT NULL REFERENCES nods_page ON DELETE CASCADE,
           content text,
           token_count int,
           embedding vector(1536),
           slug text,
           heading text
         );
         CREATE TABLE comments (
           id uuid PRIMARY KEY,
           parent_id uuid REFERENCES comments ON DELETE CASCADE,
           thread int NOT NULL,
           body text NOT NULL
         );
         CREATE TABLE chunk_chain (id bigint PRIMARY KEY, prev_chunk_id bigint REFERENCES chunk_chain, content text);
         CREATE TABLE cycle_a (id int PRIMARY KEY, b_id int, note text);
         CREATE TABLE cycle_b (id int PRIMARY KEY, a_id int REFERENCES cycle_a, note text);
         ALTER TABLE cycle_a ADD FOREIGN KEY (b_id) REFERENCES cycle_b;
         CREATE TABLE tree (
           id int PRIMARY KEY,
           parent_id int NOT NULL REFERENCES tree DEFERRABLE INITIALLY DEFERRED,
           label text
         );
         -- Deleting a parent makes SQLite look for its children: without an
         -- index that is a scan of the table per deleted row.
         CREATE INDEX tree_parent ON tree (parent_id);
         -- A child of a table in a cycle, itself in no cycle.
         CREATE TABLE plain (id int PRIMARY KEY, a_id int NOT NULL REFERENCES cycle_a, note text);

         -- Pages: a parent's id is above its children's (a child sorts first).
         INSERT INTO nods_page (id, parent_page_id, path, checksum, meta, type, source)
         SELECT i, CASE WHEN i + 1 + (i * 7919) % 1500 > 3000 THEN NULL ELSE i + 1 + (i * 7919) % 1500 END,
                '/docs/' || i, md5(i::text), jsonb_build_object('title', 'Page ' || i, 'n', i), 'markdown',
                repeat(md5(i::text), 20)
           FROM generate_series(1, 3000) i;
         SELECT setval('nods_page_id_seq', 3000);
         INSERT INTO nods_page_section (id, page_id, content, token_count, embedding, slug, heading)
         SELECT i, 1 + (i * 31) % 3000, repeat('section ' || i || ' ', 60), i % 500,
                CASE WHEN i % 100 = 0 THEN
                  (SELECT ('[' || string_agg(((i * j) % 97 / 97.0)::text, ',') || ']') FROM generate_series(1, 1536) j)::vector
                END,
                'slug-' || i, 'Heading ' || i
           FROM generate_series(1, 3000) i;
         SELECT setval('nods_page_section_id_seq', 3000);
         -- Threads of 50 comments, each replying to the one before; uuid
         -- order is random, so about half the replies sort before their parent.
         INSERT INTO comments
         SELECT md5('c' || i)::uuid, CASE WHEN i % 50 = 0 THEN NULL ELSE md5('c' || (i - 1))::uuid END,
                i / 50, repeat(md5(i::text), 22)
           FROM generate_series(0, 2999) i;
         -- Each chunk points at the one before it (a parent sorts first).
         INSERT INTO chunk_chain
         SELECT i, CASE WHEN i = 1 THEN NULL ELSE i - 1 END, repeat(md5(i::text), 22)
           FROM generate_series(1, 3000) i;
         INSERT INTO cycle_a SELECT i, NULL, repeat(md5(i::text), 22) FROM generate_series(1, 3000) i;
         INSERT INTO cycle_b
         SELECT i, CASE WHEN i = 3000 THEN NULL ELSE i + 1 END, repeat(md5(i::text), 22)
           FROM generate_series(1, 3000) i;
         UPDATE cycle_a SET b_id = 3001 - id;
         -- Two chains meeting at the root 20000, its own parent: below it a
         -- child sorts first, above it the parent does.
         INSERT INTO tree
         SELECT i, CASE WHEN i < 20000 THEN i + 1 WHEN i = 20000 THEN i ELSE i - 1 END, 'node ' || i
           FROM generate_series(1, 40000) i;
         INSERT INTO plain SELECT i, 1 + (i * 13) % 3000, repeat(md5(i::text), 22) FROM generate_series(1, 3000) i;
         ANALYZE;",
    );
}

/// What a sync must carry: a parent inserted with its child (the child's
/// key sorting first), re-parented rows, and whole subtrees deleted, some
/// larger than one delete statement holds.
fn change(db: &TestDb) {
    db.exec(
        "INSERT INTO nods_page (id, parent_page_id, path) VALUES (100000, NULL, '/new'), (99999, 100000, '/new/child');
         INSERT INTO nods_page_section (page_id, content) VALUES (99999, 'new section');
         UPDATE nods_page SET parent_page_id = 99999 WHERE id IN (5, 6, 7);
         UPDATE nods_page SET parent_page_id = NULL WHERE id IN (8, 9);
         UPDATE nods_page SET parent_page_id = 2 WHERE id = 2999;
         -- The subtree under page 2990, sections cascading.
         WITH RECURSIVE sub AS (
           SELECT id FROM nods_page WHERE id = 2990
           UNION ALL SELECT p.id FROM nods_page p JOIN sub ON p.parent_page_id = sub.id)
         DELETE FROM nods_page WHERE id IN (SELECT id FROM sub);
         INSERT INTO comments VALUES
           ('ffffffff-0000-4000-8000-000000000001', NULL, 999, 'new root'),
           ('00000000-0000-4000-8000-000000000001', 'ffffffff-0000-4000-8000-000000000001', 999, 'reply sorting first');
         UPDATE comments SET parent_id = 'ffffffff-0000-4000-8000-000000000001' WHERE thread = 3 AND parent_id IS NULL;
         DELETE FROM comments WHERE thread BETWEEN 10 AND 29;
         DELETE FROM chunk_chain WHERE id > 2500;
         INSERT INTO cycle_b VALUES (5000, NULL, 'new b');
         INSERT INTO cycle_a VALUES (5000, 5000, 'new a');
         UPDATE cycle_b SET a_id = 5000 WHERE id = 5000;
         UPDATE cycle_a SET b_id = 5000 WHERE id BETWEEN 10 AND 20;
         -- The root moves up: 20000 now has a parent, 40001 is the root.
         INSERT INTO tree VALUES (40001, 40001, 'new root');
         UPDATE tree SET parent_id = 40001 WHERE id = 20000;
         DELETE FROM tree WHERE id > 20000 AND id <= 40000;",
    );
}

/// compare_d1.py (psycopg + sqlite3) on every table, then `pgflare verify`.
fn assert_same(db: &TestDb, sqlite: &Path, dir: &Path) {
    assert_d1_matches(db, sqlite, &TABLES);
    let report = dir.join(format!("verify-{}", COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
    let o = pgflare(
        db,
        &[
            "--json",
            "verify",
            "--sqlite",
            sqlite.to_str().expect("p"),
            "--report-dir",
            report.to_str().expect("p"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The number of key ranges of each table in the load's state file.
fn ranges(state: &Path) -> Vec<(String, usize)> {
    let file = load_state_file(state).expect("a state file");
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(file).expect("read")).expect("json");
    st["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (t["table"].as_str().expect("name").to_string(), t["partitions"].as_array().expect("p").len())
        })
        .collect()
}

fn assert_several_ranges(state: &Path) {
    for (table, n) in ranges(state) {
        assert!(n >= 2, "{table} must span several key ranges, has {n}");
    }
}

/// One complete `sync --once` into the D1 file `d1`; its summary.
fn sync_sqlite(db: &TestDb, d1: &str, dir: &Path) -> serde_json::Value {
    let work = dir.join("work");
    let args = ["--json", "sync", "--target", "sqlite", "--sqlite", d1, "--once", "--partition-mib", "1"];
    let s = ok_json(pgflare(db, &[&args[..], &["--work-dir", work.to_str().expect("p")]].concat()));
    assert_eq!(s["complete"], true, "{s:#}");
    s
}

#[test]
fn self_referencing_and_cyclic_tables_load_into_sqlite_and_sync() {
    let db = TestDb::new("fksqlite");
    create(&db);
    let dir = temp_dir("fksqlite");
    let (state, sqlite) = (dir.path().join("state"), dir.path().join("d1.sqlite"));
    let (st, d1) = (state.to_str().expect("p"), sqlite.to_str().expect("p"));
    let s = ok_json(pgflare(
        &db,
        &["--json", "load", "--target", "sqlite", "--sqlite", d1, "--state-dir", st, "--partition-mib", "1"],
    ));
    assert_eq!(s["complete"], true, "{s:#}");
    assert_several_ranges(&state);
    assert_same(&db, &sqlite, dir.path());

    change(&db);
    let s = sync_sqlite(&db, d1, dir.path());
    assert_eq!(table(&s, "public.tree")["rows_hard_deleted"].as_u64(), Some(20000), "{s:#}");
    assert_eq!(table(&s, "public.nods_page")["links"]["unresolved"].as_u64(), Some(0), "{s:#}");
    assert_doc_schema("sync-summary", &s.to_string(), dir.path());
    assert_same(&db, &sqlite, dir.path());
}

#[test]
fn self_referencing_and_cyclic_tables_load_as_files_in_manifest_order_and_sync() {
    let db = TestDb::new("fkfiles");
    create(&db);
    let dir = temp_dir("fkfiles");
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));
    let (st, o) = (state.to_str().expect("p"), out.to_str().expect("p"));
    let args = ["--json", "load", "--target", "files", "--out", o, "--state-dir", st, "--partition-mib", "1"];
    ok_json(pgflare(&db, &[&args[..], &["--file-size-mib", "1"]].concat()));
    assert_several_ranges(&state);
    assert_schema("d1-files-manifest", &[&out.join("manifest.json")]);
    // An independent reader runs each file as D1 does (one transaction,
    // foreign keys checked at its end), in the manifest's order.
    let sqlite = dir.path().join("applied.sqlite");
    apply_d1_sql(&sqlite, o);
    assert_same(&db, &sqlite, dir.path());

    // A sync run's folder applies after the load's.
    change(&db);
    let s = ok_json(pgflare(
        &db,
        &[
            "--json",
            "sync",
            "--target",
            "files",
            "--out",
            o,
            "--work-dir",
            st,
            "--once",
            "--partition-mib",
            "1",
        ],
    ));
    assert_eq!(s["complete"], true, "{s:#}");
    let run = out.join("sync").join("000001");
    apply_d1_sql(&sqlite, &run);
    // Files see no D1, so only soft deletes travel: compare what must match.
    assert_d1_matches(&db, &sqlite, &["cycle_a", "cycle_b", "plain"]);
    let pages = rusqlite::Connection::open(&sqlite)
        .expect("open")
        .query_row(
            "SELECT group_concat(id || ':' || coalesce(parent_page_id, '-'), ',') FROM \
             (SELECT id, parent_page_id FROM nods_page WHERE id IN (5, 8, 99999, 100000) ORDER BY id)",
            [],
            |r| r.get::<_, String>(0),
        )
        .expect("pages");
    assert_eq!(pages, "5:99999,8:-,99999:100000,100000:-");
}

/// Runs the load, SIGKILLs it as soon as its state file satisfies
/// `until`; false when it ended by itself first.
fn kill_when(
    emu: &Emulator,
    db: &TestDb,
    extra: &[&str],
    state: &Path,
    until: impl Fn(&str) -> bool,
) -> bool {
    let mut child = emu.d1_load(db, state, extra).stdout(std::process::Stdio::null()).spawn().expect("spawn");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        if load_state_file(state).and_then(|f| std::fs::read_to_string(f).ok()).is_some_and(|t| until(&t)) {
            break;
        }
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    !child.wait().expect("wait").success()
}

#[test]
fn self_referencing_and_cyclic_tables_load_over_the_api_killed_and_rerun_then_sync() {
    let db = TestDb::new("fkapi");
    create(&db);
    let emu = Emulator::start(&["--latency-ms", "100"]);
    let dir = temp_dir("fkapi");
    let state = dir.path().join("state");
    let extra = ["--import-mib", "1", "--jobs", "3"];
    // SIGKILL once a few ranges are confirmed, then again during the link
    // step (once a range is linked), then run to the end.
    let killed = kill_when(&emu, &db, &extra, &state, |t| t.matches("\"done\": true").count() >= 3);
    assert!(killed, "the first run must be killed, not end by itself");
    assert_several_ranges(&state);
    let killed = kill_when(&emu, &db, &extra, &state, |t| t.contains("\"linked\": true"));
    assert!(killed, "the second run must be killed in its link step");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(load_state_file(&state).expect("state")).expect("read"))
            .expect("json");
    let ranges: Vec<&serde_json::Value> = st["tables"]
        .as_array()
        .expect("t")
        .iter()
        .flat_map(|t| t["partitions"].as_array().expect("p"))
        .collect();
    assert!(ranges.iter().all(|p| p["done"] == true), "every range loaded before the link step");
    let pages =
        st["tables"].as_array().expect("t").iter().find(|t| t["table"] == "public.tree").expect("tree");
    assert!(
        pages["partitions"].as_array().expect("p").iter().any(|p| p["linked"] != true),
        "killed before the last range was linked"
    );

    let s = ok_json(emu.d1_load(&db, &state, &extra).output().expect("rerun"));
    assert_eq!(s["resumed"], true, "{s:#}");
    assert_eq!(s["complete"], true, "{s:#}");
    assert_same(&db, &emu.d1_file("db1"), dir.path());

    change(&db);
    let work = dir.path().join("work");
    let s = ok_json(
        emu.command(&db)
            .args(["--json", "sync", "--target", "api", "--d1-database-id", "db1", "--once"])
            .args(["--partition-mib", "1", "--work-dir", work.to_str().expect("p")])
            .output()
            .expect("sync"),
    );
    assert_eq!(s["complete"], true, "{s:#}");
    assert_same(&db, &emu.d1_file("db1"), dir.path());
}

#[test]
fn a_link_to_a_row_a_resumed_load_lacks_is_left_unset_named_and_set_by_the_next_sync() {
    let db = TestDb::new("fkresume");
    create(&db);
    let dir = temp_dir("fkresume");
    let (state, sqlite) = (dir.path().join("state"), dir.path().join("d1.sqlite"));
    let (st, d1) = (state.to_str().expect("p"), sqlite.to_str().expect("p"));
    let args =
        ["--json", "load", "--target", "sqlite", "--sqlite", d1, "--state-dir", st, "--partition-mib", "1"];
    ok_json(pgflare(&db, &args));
    // Pretend the last range of pages was never loaded: the rerun reads it
    // at a new snapshot, where page 3000 points at a page that appeared
    // since in a range loaded before (page 0, in the first range).
    let file = load_state_file(&state).expect("state file");
    let mut s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    s["complete"] = serde_json::Value::Bool(false);
    let pages = s["tables"]
        .as_array_mut()
        .expect("tables")
        .iter_mut()
        .find(|t| t["table"] == "public.nods_page")
        .expect("pages");
    let last = pages["partitions"].as_array_mut().expect("ranges").last_mut().expect("last");
    let lower = last["range"]["lower"].as_str().expect("lower bound").to_string();
    let lower: i64 = lower.split("::").next().expect("literal").trim_matches('\'').parse().expect("integer");
    assert!(lower <= 3000);
    last["done"] = serde_json::Value::Bool(false);
    last["linked"] = serde_json::Value::Bool(false);
    std::fs::write(&file, serde_json::to_vec(&s).expect("json")).expect("write");
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    c.execute_batch(&format!("PRAGMA foreign_keys = OFF; DELETE FROM nods_page WHERE id >= {lower};"))
        .expect("forget the range");
    drop(c);
    db.exec("INSERT INTO nods_page (id, path) VALUES (0, '/late'); UPDATE nods_page SET parent_page_id = 0 WHERE id = 3000;");

    let s = ok_json(pgflare(&db, &args));
    assert_eq!(s["complete"], true, "{s:#}");
    let links = &table(&s, "public.nods_page")["links"];
    assert_eq!(links["unresolved"].as_u64(), Some(1), "{s:#}");
    assert!(links["examples"][0].as_str().expect("example").contains("id=3000"), "{s:#}");
    let parent: Option<i64> = rusqlite::Connection::open(&sqlite)
        .expect("open")
        .query_row("SELECT parent_page_id FROM nods_page WHERE id = 3000", [], |r| r.get(0))
        .expect("row");
    assert_eq!(parent, None, "left unset, not failing the load");
    // verify sees both rows as pending sync (changed after the checkpoint
    // the load left, at its first snapshot) ...
    let report = dir.path().join("report");
    let o = pgflare(&db, &["--json", "verify", "--sqlite", d1, "--report-dir", report.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("report");
    let pages = r["tables"].as_array().expect("tables").iter().find(|t| t["table"] == "public.nods_page");
    assert_eq!(pages.expect("pages")["targets"][0]["pending_sync"].as_u64(), Some(2), "{r:#}");
    // ... and the next sync, which sees both rows as changed, sets it.
    let s = sync_sqlite(&db, d1, dir.path());
    let links = &table(&s, "public.nods_page")["links"];
    assert_eq!((links["rows"].as_u64(), links["unresolved"].as_u64()), (Some(2), Some(0)), "{s:#}");
    assert_same(&db, &sqlite, dir.path());
}
