//! `pgflare reconcile --into postgres`: Cloudflare took writes, and
//! Postgres gets them back. Each test loads a real Postgres into the
//! emulator (or a local D1 file), lets Cloudflare take writes (through
//! `pgflare sync` from changes made and then undone in Postgres, so D1 and
//! Vectorize hold exactly what a service writing pgflare's forms would
//! leave, and by hand: D1 rows edited, a vector re-embedded), and proves
//! the way back: the dry run's plan, the write, `pgflare verify` clean
//! afterwards, a second run with nothing to do, a kill -9 in the middle
//! that leaves Postgres as it was, trees of self-referencing rows, serial
//! sequences and triggers.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::archive_cloudflare::{archive_cf, loaded};
use crate::common::*;

const INDEX: &str = "cf-index";

fn reconcile(db: &TestDb, emu: &Emulator, config: &str, extra: &[&str]) -> std::process::Output {
    emu.command(db)
        .args(["--json", "reconcile", "--into", "postgres", "--config", config])
        .args(["--d1-database-id", DB, "--vectorize-index", INDEX])
        .args(extra)
        .output()
        .expect("reconcile")
}

/// Cloudflare takes the writes `changes` makes: they are made in Postgres,
/// synced to D1 and Vectorize, and Postgres is put back as it was.
fn cloudflare_takes(db: &TestDb, emu: &Emulator, config: &str, dir: &Path, changes: &str) {
    db.exec(
        "CREATE TABLE documents_before AS SELECT * FROM documents;
         CREATE TABLE chunks_before AS SELECT * FROM chunks",
    );
    db.exec(changes);
    let work = dir.join("sync-work");
    let s = ok_json(
        emu.command(db)
            .args(["--json", "sync", "--target", "api", "--d1-database-id", DB, "--vectorize-index", INDEX])
            .args(["--config", config, "--once", "--work-dir", work.to_str().expect("p")])
            .output()
            .expect("sync"),
    );
    assert_eq!(s["complete"], true, "{s:#}");
    db.exec(
        "DELETE FROM chunks; DELETE FROM documents;
         INSERT INTO documents SELECT * FROM documents_before;
         INSERT INTO chunks SELECT * FROM chunks_before;
         DROP TABLE documents_before, chunks_before",
    );
}

fn ids(db: &TestDb, sql: &str) -> Vec<String> {
    db.query_one(&format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM ({sql}) x"))
        .split(',')
        .map(str::to_string)
        .collect()
}

fn table<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["tables"].as_array().expect("tables").iter().find(|t| t["table"] == name).expect(name)
}

const NEW_DOC: &str = "00000000-0000-4000-8000-00000000d0c1";
const NEW_CHUNK: &str = "00000000-0000-4000-8000-0000000c4a11";

#[test]
fn what_cloudflare_changed_comes_back_into_postgres_and_verify_is_clean() {
    let db = TestDb::new("recon");
    let emu = Emulator::start(&[]);
    let dir = temp_dir("recon");
    let config = loaded(&db, &emu, dir.path(), 80, 4);
    let c = ids(&db, "SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 5");
    let (edited, remeta, gone, reembedded, raw_edit) = (&c[0], &c[1], &c[2], &c[3], &c[4]);
    let docs = ids(&db, "SELECT id FROM documents ORDER BY id");
    // A document none of the chosen chunks belongs to goes, with its chunks.
    let chosen = format!("'{}'", c.join("','"));
    let doc_gone = db.query_one(&format!(
        "SELECT min(d.id::text) FROM documents d WHERE NOT EXISTS \
         (SELECT 1 FROM chunks x WHERE x.document_id = d.id AND x.id IN ({chosen}))"
    ));
    let gone_with_doc = db.count(&format!("SELECT count(*) FROM chunks WHERE document_id = '{doc_gone}'"));
    cloudflare_takes(
        &db,
        &emu,
        &config,
        dir.path(),
        &format!(
            "INSERT INTO documents (id, source_url, title, language, tags, metadata, created_at, updated_at)
               SELECT '{NEW_DOC}', source_url || '#cloudflare', 'written on Cloudflare', language, tags,
                      metadata, created_at, updated_at FROM documents WHERE id = '{d0}';
             INSERT INTO chunks (id, document_id, chunk_index, content, token_count, tags, metadata,
                                 embedding, created_at, updated_at)
               SELECT '{NEW_CHUNK}', '{NEW_DOC}', 0, 'a chunk born on Cloudflare', 5, tags, metadata,
                      embedding, created_at, updated_at FROM chunks WHERE id = '{edited}';
             UPDATE chunks SET content = 'edited on cloudflare' WHERE id = '{edited}';
             UPDATE chunks SET metadata = coalesce(metadata, '{{}}') || '{{\"reviewed\": true}}'
              WHERE id = '{remeta}';
             DELETE FROM chunks WHERE id = '{gone}';
             DELETE FROM documents WHERE id = '{doc_gone}';",
            d0 = docs[0]
        ),
    );
    // By hand, as a Worker would: a D1 row edited, a vector re-embedded.
    block_on(emu.ok(&format!("UPDATE chunks SET content = 'edited by a worker' WHERE id = '{raw_edit}'")));
    let new_values = [0.25f32, -0.5, 1.5, f32::from_bits(1)];
    block_on(async {
        let v = emu.vectorize(INDEX);
        let stored = v.get_by_ids(std::slice::from_ref(reembedded)).await.expect("get").remove(0);
        let line = serde_json::json!({"id": reembedded, "values": new_values, "metadata": stored.metadata});
        let t = v.upsert("reembed", bytes::Bytes::from(format!("{line}\n"))).await.expect("upsert");
        v.wait_applied(t, Duration::from_secs(30), &|_| {}).await.expect("applied");
    });
    let before = db.query_one("SELECT md5(string_agg(c::text, '' ORDER BY id)) FROM chunks c");

    // The dry run: the plan, and nothing written.
    let keep = dir.path().join("cf-archive");
    let o = reconcile(&db, &emu, &config, &["--dry-run", "--keep", keep.to_str().expect("p")]);
    assert!(!text(&o).contains(&emu.token), "no secret in the output");
    let s = ok_json(o);
    assert_doc_schema("reconcile-summary", &s.to_string(), dir.path());
    let plan = &s["reconcile"];
    assert_eq!(plan["written"], false, "{s:#}");
    let d = table(plan, "public.documents");
    assert_eq!(
        (d["inserts"].as_u64(), d["updates"].as_u64(), d["deletes"].as_u64()),
        (Some(1), Some(0), Some(1))
    );
    assert_eq!(d["first_keys"]["insert"][0], format!("id={NEW_DOC}"));
    assert_eq!(d["first_keys"]["delete"][0], format!("id={doc_gone}"));
    let ch = table(plan, "public.chunks");
    assert_eq!(ch["inserts"], 1, "{ch:#}");
    assert_eq!(ch["updates"], 4, "content twice, metadata, embedding: {ch:#}");
    assert_eq!(ch["deletes"].as_u64(), Some(1 + gone_with_doc), "{ch:#}");
    let cols = &ch["columns_updated"];
    assert_eq!(
        (cols["content"].as_u64(), cols["metadata"].as_u64(), cols["embedding"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{ch:#}"
    );
    assert_eq!(
        db.query_one("SELECT md5(string_agg(c::text, '' ORDER BY id)) FROM chunks c"),
        before,
        "a dry run writes nothing"
    );
    assert!(keep.join("manifest.json").is_file(), "--keep keeps the archive of Cloudflare read");

    // The write, from the kept archive: compared again, nothing remains.
    let s = ok_json(reconcile(&db, &emu, &config, &["--from-archive", keep.to_str().expect("p")]));
    assert_eq!(
        (s["reconcile"]["written"].as_bool(), s["remaining"].as_u64()),
        (Some(true), Some(0)),
        "{s:#}"
    );
    assert_doc_schema("reconcile-summary", &s.to_string(), dir.path());
    let one = |sql: &str| db.query_one(sql);
    assert_eq!(one(&format!("SELECT content FROM chunks WHERE id = '{edited}'")), "edited on cloudflare");
    assert_eq!(one(&format!("SELECT content FROM chunks WHERE id = '{raw_edit}'")), "edited by a worker");
    assert_eq!(one(&format!("SELECT (metadata->>'reviewed') FROM chunks WHERE id = '{remeta}'")), "true");
    assert_eq!(one(&format!("SELECT count(*)::text FROM chunks WHERE id = '{gone}'")), "0");
    assert_eq!(one(&format!("SELECT count(*)::text FROM chunks WHERE document_id = '{doc_gone}'")), "0");
    assert_eq!(one(&format!("SELECT title FROM documents WHERE id = '{NEW_DOC}'")), "written on Cloudflare");
    assert_eq!(
        one(&format!("SELECT content FROM chunks WHERE id = '{NEW_CHUNK}'")),
        "a chunk born on Cloudflare"
    );
    // The vector bit for bit (pgvector prints the shortest exact float).
    let printed: Vec<f32> = one(&format!("SELECT embedding::text FROM chunks WHERE id = '{reembedded}'"))
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|x| x.parse().expect("float"))
        .collect();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&printed), bits(&new_values));

    // verify, the independent judge: D1 and Vectorize equal Postgres.
    let report = dir.path().join("report");
    let o = emu
        .command(&db)
        .args(["--json", "verify", "--config", &config, "--d1-database-id", DB, "--vectorize-index", INDEX])
        .args(["--report-dir", report.to_str().expect("p")])
        .output()
        .expect("verify");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Again: nothing to write.
    let s = ok_json(reconcile(&db, &emu, &config, &[]));
    assert_eq!(s["reconcile"]["written"], false, "{s:#}");
    assert_eq!(s["remaining"], 0, "{s:#}");
}

#[test]
fn a_reconcile_killed_while_writing_leaves_postgres_as_it_was_and_a_rerun_finishes() {
    let db = TestDb::new("reconkill");
    let emu = Emulator::start(&[]);
    let dir = temp_dir("reconkill");
    let config = loaded(&db, &emu, dir.path(), 40, 4);
    let c = ids(&db, "SELECT id FROM chunks ORDER BY id LIMIT 2");
    let (edited, gone) = (&c[0], &c[1]);
    let d0 = db.query_one("SELECT min(id::text) FROM documents");
    cloudflare_takes(
        &db,
        &emu,
        &config,
        dir.path(),
        &format!(
            "INSERT INTO documents (id, source_url, title, language, tags, metadata, created_at, updated_at)
               SELECT '{NEW_DOC}', source_url || '#cloudflare', title, language, tags, metadata,
                      created_at, updated_at FROM documents WHERE id = '{d0}';
             UPDATE chunks SET content = 'edited on cloudflare' WHERE id = '{edited}';
             DELETE FROM chunks WHERE id = '{gone}';"
        ),
    );
    let cf = dir.path().join("cf");
    ok_json(archive_cf(&db, &emu, &config, &cf, &[]));
    let before = db.query_one("SELECT md5(string_agg(c::text, '' ORDER BY id)) FROM chunks c");

    // Another session holds the row the update must write: the reconcile
    // waits inside its transaction (documents already inserted), is killed.
    let holder = SessionLock::new(&db, &format!("SELECT 1 FROM chunks WHERE id = '{edited}' FOR UPDATE"));
    let mut child = emu
        .command(&db)
        .args(["--json", "reconcile", "--into", "postgres", "--config", &config, "--from-archive"])
        .arg(&cf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start reconcile");
    let waiting = "SELECT (count(*) > 0)::text FROM pg_stat_activity \
                   WHERE datname = current_database() AND application_name = 'pgflare' AND wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(120);
    while db.query_one(waiting) == "false" {
        assert!(child.try_wait().expect("wait").is_none(), "the reconcile ended before it could be stopped");
        assert!(Instant::now() < deadline, "the reconcile never waited for the row");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    drop(holder);
    // The orphaned backend ends once it finds its client gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    // This database's sessions only: other tests' pgflare runs share the server.
    let sessions = "SELECT count(*)::text FROM pg_stat_activity \
                    WHERE datname = current_database() AND application_name = 'pgflare'";
    while db.query_one(sessions) != "0" {
        assert!(Instant::now() < deadline, "the killed run's session never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(db.query_one(&format!("SELECT count(*)::text FROM documents WHERE id = '{NEW_DOC}'")), "0");
    assert_eq!(
        db.query_one("SELECT md5(string_agg(c::text, '' ORDER BY id)) FROM chunks c"),
        before,
        "nothing of the killed run is left"
    );

    let s = ok_json(
        emu.command(&db)
            .args(["--json", "reconcile", "--into", "postgres", "--config", &config, "--from-archive"])
            .arg(&cf)
            .output()
            .expect("rerun"),
    );
    assert_eq!(
        (s["reconcile"]["written"].as_bool(), s["remaining"].as_u64()),
        (Some(true), Some(0)),
        "{s:#}"
    );
    assert_eq!(db.query_one(&format!("SELECT count(*)::text FROM documents WHERE id = '{NEW_DOC}'")), "1");
    assert_eq!(
        db.query_one(&format!("SELECT content FROM chunks WHERE id = '{edited}'")),
        "edited on cloudflare"
    );
    assert_eq!(db.query_one(&format!("SELECT count(*)::text FROM chunks WHERE id = '{gone}'")), "0");
}

/// A tree of self-referencing rows with a serial key and an updated_at
/// trigger, in a local D1 file edited as a Worker would.
#[test]
fn trees_sequences_and_triggers_come_back_right() {
    let db = TestDb::new("recontree");
    db.exec(
        "CREATE TABLE nodes (
             id         bigserial PRIMARY KEY,
             parent_id  bigint REFERENCES nodes (id),
             name       text NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z'
         );
         INSERT INTO nodes (parent_id, name) SELECT NULL, 'root ' || g FROM generate_series(1, 10) g;
         INSERT INTO nodes (parent_id, name) SELECT 1 + (g % 10), 'child ' || g FROM generate_series(1, 40) g;
         INSERT INTO nodes (parent_id, name) SELECT 11 + (g % 40), 'leaf ' || g FROM generate_series(1, 50) g;
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
         CREATE TRIGGER nodes_stamp BEFORE UPDATE ON nodes FOR EACH ROW EXECUTE FUNCTION stamp();",
    );
    let dir = temp_dir("recontree");
    let sqlite = dir.path().join("d1.sqlite");
    let d1 = sqlite.to_str().expect("p");
    let state = dir.path().join("state");
    ok_json(pgflare(
        &db,
        &[
            "--json",
            "load",
            "--target",
            "sqlite",
            "--sqlite",
            d1,
            "--table",
            "nodes",
            "--state-dir",
            state.to_str().expect("p"),
        ],
    ));
    // On Cloudflare: a new subtree (children first, as a Worker might
    // write them), the subtree of node 2 deleted (leaves, children, node),
    // and a node renamed.
    let conn = rusqlite::Connection::open(&sqlite).expect("open");
    conn.execute_batch(
        "BEGIN; PRAGMA defer_foreign_keys = ON;
         INSERT INTO nodes (id, parent_id, name, updated_at)
           SELECT 1003, 1002, 'new leaf', updated_at FROM nodes WHERE id = 1;
         INSERT INTO nodes (id, parent_id, name, updated_at)
           SELECT 1002, 1001, 'new child', updated_at FROM nodes WHERE id = 1;
         INSERT INTO nodes (id, parent_id, name, updated_at)
           SELECT 1001, NULL, 'new root', updated_at FROM nodes WHERE id = 1;
         DELETE FROM nodes WHERE parent_id IN (SELECT id FROM nodes WHERE parent_id = 2);
         DELETE FROM nodes WHERE parent_id = 2;
         DELETE FROM nodes WHERE id = 2;
         UPDATE nodes SET name = 'renamed on cloudflare' WHERE id = 3;
         COMMIT;",
    )
    .expect("edit D1");
    drop(conn);
    let gone = 1
        + db.count("SELECT count(*) FROM nodes WHERE parent_id = 2")
        + db.count(
            "SELECT count(*) FROM nodes WHERE parent_id IN (SELECT id FROM nodes WHERE parent_id = 2)",
        );
    let base =
        ["--json", "reconcile", "--into", "postgres", "--table", "nodes", "--sqlite", d1, "--no-vectorize"];
    let run = |extra: &[&str]| pgflare(&db, &[&base[..], extra].concat());
    // A --keep folder that holds something is refused before anything is read.
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).expect("mkdir");
    std::fs::write(full.join("x"), "x").expect("write");
    let o = run(&["--dry-run", "--keep", full.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not empty") && text(&o).contains("--from-archive"), "{}", text(&o));
    let s = ok_json(run(&["--dry-run"]));
    let t = table(&s["reconcile"], "public.nodes");
    assert_eq!(
        (t["inserts"].as_u64(), t["updates"].as_u64(), t["deletes"].as_u64()),
        (Some(3), Some(1), Some(gone)),
        "{s:#}"
    );
    assert!(s["reconcile"]["notes"].to_string().contains("nodes_stamp"), "the trigger is named: {s:#}");
    // For people: the counts, the first keys, the trigger, nothing written.
    let human = ok(pgflare(&db, &[&base[1..], &["--dry-run"]].concat()));
    for line in [
        "public.nodes",
        "3 inserts",
        "1 updates (name 1)",
        "first inserts: id=1001; id=1002; id=1003",
        "first deletes: id=2; id=11; id=21;",
        "nodes_stamp",
        &format!("dry run: {} rows would be written", 4 + gone),
    ] {
        assert!(human.contains(line), "{line}: {human}");
    }

    // With the trigger on, the renamed row gets a new updated_at: the
    // comparison after the write says so.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(s["remaining"], 1, "{s:#}");
    assert_doc_schema("reconcile-summary", &s.to_string(), dir.path());
    assert_eq!(table(&s["check"], "public.nodes")["columns_updated"]["updated_at"], 1, "{s:#}");
    // Without triggers, Postgres holds exactly D1's rows.
    let s = ok_json(run(&["--disable-triggers"]));
    assert_eq!(s["remaining"], 0, "{s:#}");
    assert_eq!(
        db.query_one("SELECT name || ' ' || updated_at::text FROM nodes WHERE id = 3"),
        "renamed on cloudflare 2024-01-01 00:00:00+00"
    );
    assert_eq!(db.query_one("SELECT string_agg(id || '<' || coalesce(parent_id::text, '-'), ' ' ORDER BY id) FROM nodes WHERE id > 1000"), "1001<- 1002<1001 1003<1002");
    assert_eq!(db.query_one("SELECT count(*)::text FROM nodes WHERE id = 2 OR parent_id = 2"), "0");
    // The sequence moved past the rows Cloudflare added.
    assert_eq!(
        db.query_one("INSERT INTO nodes (name) VALUES ('after the rollback') RETURNING id::text"),
        "1004"
    );
}

/// With soft deletes in pgflare.toml, the way back is the service's own:
/// a document Cloudflare deleted is marked deleted in Postgres (its chunks
/// stay, hidden by it, as the service left them), a document Postgres had
/// marked deleted and Cloudflare holds again is live again, and a chunk
/// (no soft-delete column) Cloudflare deleted is deleted.
#[test]
fn soft_deletes_come_back_as_soft_deletes() {
    use crate::soft_delete::{config_with_soft_deletes, seeded};
    let db = seeded("reconsoft", 120, 4);
    let docs =
        ids(&db, "SELECT document_id AS id FROM chunks GROUP BY document_id ORDER BY document_id LIMIT 2");
    let (undeleted, deleted) = (&docs[0], &docs[1]);
    let lone = db.query_one(&format!(
        "SELECT min(id::text) FROM chunks WHERE document_id NOT IN ('{undeleted}', '{deleted}')"
    ));
    db.exec(&format!("UPDATE documents SET deleted_at = '2024-05-01T00:00:00Z' WHERE id = '{undeleted}'"));
    let dir = temp_dir("reconsoft");
    let config = config_with_soft_deletes(&db, dir.path(), &[("documents", "deleted_at")]);
    let c = config.to_str().expect("p");
    let sqlite = dir.path().join("d1.sqlite");
    let d1 = sqlite.to_str().expect("p");
    let state = dir.path().join("state");
    let load = ["--json", "load", "--config", c, "--target", "sqlite", "--sqlite", d1, "--state-dir"];
    ok_json(pgflare(&db, &[&load[..], &[state.to_str().expect("p")]].concat()));
    // Cloudflare takes the writes (made in Postgres, synced, undone).
    db.exec(
        "CREATE TABLE documents_before AS SELECT * FROM documents;
         CREATE TABLE chunks_before AS SELECT * FROM chunks",
    );
    db.exec(&format!(
        "UPDATE documents SET deleted_at = NULL WHERE id = '{undeleted}';
         DELETE FROM chunks WHERE document_id = '{deleted}' OR id = '{lone}';
         DELETE FROM documents WHERE id = '{deleted}';"
    ));
    ok_json(pgflare(&db, &["--json", "sync", "--config", c, "--target", "sqlite", "--sqlite", d1, "--once"]));
    db.exec(
        "DELETE FROM chunks; DELETE FROM documents;
         INSERT INTO documents SELECT * FROM documents_before;
         INSERT INTO chunks SELECT * FROM chunks_before;
         DROP TABLE documents_before, chunks_before",
    );
    let chunks_of = |doc: &str| db.count(&format!("SELECT count(*) FROM chunks WHERE document_id = '{doc}'"));
    let (hidden, total) = (chunks_of(deleted), db.count("SELECT count(*) FROM chunks"));

    let run = |extra: &[&str]| {
        let base =
            ["--json", "reconcile", "--into", "postgres", "--config", c, "--sqlite", d1, "--no-vectorize"];
        pgflare(&db, &[&base[..], extra].concat())
    };
    let s = ok_json(run(&["--dry-run"]));
    let d = table(&s["reconcile"], "public.documents");
    assert_eq!((d["inserts"].as_u64(), d["deletes"].as_u64()), (Some(1), Some(1)), "{s:#}");
    let ch = table(&s["reconcile"], "public.chunks");
    assert_eq!(ch["inserts"].as_u64(), Some(chunks_of(undeleted)), "the chunks it hid come back: {s:#}");
    assert_eq!(ch["deletes"].as_u64(), Some(hidden + 1), "{s:#}");
    let s = ok_json(run(&[]));
    assert_eq!(s["remaining"], 0, "{s:#}");
    let one = |sql: &str| db.query_one(sql);
    assert_eq!(
        one(&format!("SELECT (deleted_at IS NULL)::text FROM documents WHERE id = '{undeleted}'")),
        "true"
    );
    assert_eq!(
        one(&format!("SELECT (deleted_at IS NOT NULL)::text FROM documents WHERE id = '{deleted}'")),
        "true"
    );
    assert_eq!(chunks_of(deleted), hidden, "hidden by their document, not deleted");
    assert_eq!(one(&format!("SELECT count(*)::text FROM chunks WHERE id = '{lone}'")), "0");
    assert_eq!(db.count("SELECT count(*) FROM chunks"), total - 1);
    // verify agrees.
    let v = verify_d1_file(&db, c, d1, &dir.path().join("report"));
    assert_eq!(v["verdict"]["status"], "consistent", "{v:#}");
}

/// A row Cloudflare added cannot go into Postgres when a NOT NULL column
/// without a default is not on Cloudflare (pgflare.toml left it out of D1):
/// refused before anything is written, naming table, column and key, with
/// the fix; with a default, the row goes in and the column takes it.
#[test]
fn a_not_null_column_cloudflare_does_not_hold_refuses_the_inserts_before_writing() {
    let db = TestDb::new("reconnn");
    db.exec(
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL, owner text NOT NULL);
         INSERT INTO notes SELECT g, 'note ' || g, 'me' FROM generate_series(1, 20) g;",
    );
    let dir = temp_dir("reconnn");
    let config = dir.path().join("pgflare.toml");
    std::fs::write(&config, "[[tables]]\nname = \"notes\"\nd1_columns = [\"id\", \"body\"]\n")
        .expect("write");
    let (c, sqlite) = (config.to_str().expect("p"), dir.path().join("d1.sqlite"));
    let d1 = sqlite.to_str().expect("p");
    let state = dir.path().join("state");
    let load = ["--json", "load", "--config", c, "--target", "sqlite", "--sqlite", d1, "--state-dir"];
    ok_json(pgflare(&db, &[&load[..], &[state.to_str().expect("p")]].concat()));
    let conn = rusqlite::Connection::open(&sqlite).expect("open");
    conn.execute_batch("INSERT INTO notes (id, body) VALUES (21, 'written on Cloudflare'); UPDATE notes SET body = 'edited' WHERE id = 1;").expect("edit D1");
    drop(conn);
    let run = || {
        let args =
            ["--json", "reconcile", "--into", "postgres", "--config", c, "--sqlite", d1, "--no-vectorize"];
        pgflare(&db, &args)
    };
    let o = run();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for part in ["public.notes", "owner", "id=21", "NOT NULL without a default", "SET DEFAULT"] {
        assert!(text(&o).contains(part), "{part}: {}", text(&o));
    }
    assert_eq!(db.query_one("SELECT body FROM notes WHERE id = 1"), "note 1", "nothing was written");
    db.exec("ALTER TABLE notes ALTER COLUMN owner SET DEFAULT 'cloudflare'");
    let s = ok_json(run());
    assert_eq!(s["remaining"], 0, "{s:#}");
    assert_eq!(
        db.query_one("SELECT body || ' ' || owner FROM notes WHERE id = 21"),
        "written on Cloudflare cloudflare"
    );
    assert_eq!(
        db.query_one("SELECT body || ' ' || owner FROM notes WHERE id = 1"),
        "edited me",
        "a column Cloudflare does not hold keeps its value"
    );
}
