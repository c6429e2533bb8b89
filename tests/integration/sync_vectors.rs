//! `pgflare sync` and Vectorize beyond plain changes, against the emulator:
//! transactions held open in another database of the cluster and in this
//! one (a stuck session) make sync re-send nothing the last snapshot saw,
//! hide no difference from verify, and the stuck session's late commit is
//! sent; a changed Vectorize mapping (metadata columns, namespace,
//! metadata indexes, dimensions, metric) or a run with vectors off refuses
//! the checkpoint with the fix named, while a checkpoint written before
//! pgflare recorded the mapping stays valid; an index of another metric is
//! refused naming the settings (not "the load"); a row whose vector becomes
//! invalid loses its stale vector (`skip`) or stops the run (`fail`).

use std::path::PathBuf;

use super::sync::setup_with;
use crate::common::*;

/// A small `items` table mapped to Vectorize (3 dimensions), loaded into
/// the emulator's D1 and index `vi`.
pub(crate) struct Items {
    pub(crate) db: TestDb,
    pub(crate) emu: Emulator,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
}

const ITEMS_SQL: &str = r#"CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE items (id text PRIMARY KEY, embedding vector, meta jsonb, doc text, tenant text, n int);
    INSERT INTO items VALUES
      ('ok1', '[1,0,0]', '{"source": "a.pdf"}', 'a', 't1', 1),
      ('ok2', '[0,1,0]', '{"source": "b.pdf"}', 'b', 't1', 2),
      ('ok3', '[0,0,1]', '{"source": "c.pdf"}', 'c', 't2', 3),
      ('ok4', '[1,1,0]', NULL, 'd', 't2', 4);"#;

/// The configuration: `vectorize` lines, then the table's own lines.
pub(crate) fn items_config(vectorize: &str, table: &str) -> String {
    format!(
        "[vectorize]\ndimensions = 3\n{vectorize}\n\n[[tables]]\nname = \"items\"\nvector = \"embedding\"\n{table}\n"
    )
}

impl Items {
    pub(crate) fn new(tag: &str, vectorize: &str, table: &str) -> Items {
        Items::with_sql(tag, "", vectorize, table)
    }

    /// [`Items::new`], running `extra_sql` on the source before the load.
    pub(crate) fn with_sql(tag: &str, extra_sql: &str, vectorize: &str, table: &str) -> Items {
        let db = TestDb::new(tag);
        db.exec(ITEMS_SQL);
        if !extra_sql.is_empty() {
            db.exec(extra_sql);
        }
        let emu = Emulator::start(&[]);
        let dir = temp_dir(tag);
        let config = dir.path().join("pgflare.toml");
        std::fs::write(&config, items_config(vectorize, table)).expect("config");
        let s = Items { db, emu, dir, config };
        ok(s.load(&[]));
        s
    }

    /// `load --target api` into D1 `db1` and index `vi` (the state in `state`).
    pub(crate) fn load(&self, extra: &[&str]) -> std::process::Output {
        let state = self.dir.path().join("state");
        self.emu
            .command(&self.db)
            .args(["--json", "load", "--config", self.config.to_str().expect("p"), "--target", "api"])
            .args(["--d1-database-id", "db1", "--vectorize-index", "vi", "--create-index"])
            .args(["--state-dir", state.to_str().expect("p")])
            .args(extra)
            .output()
            .expect("load")
    }

    pub(crate) fn sync(&self, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        self.sync_into("vi", extra)
    }

    pub(crate) fn sync_into(&self, index: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        self.sync_naming(Some(index), extra)
    }

    /// One `sync --once`, naming `index` (or no index at all).
    pub(crate) fn sync_naming(
        &self,
        index: Option<&str>,
        extra: &[&str],
    ) -> (Option<i32>, serde_json::Value, String) {
        let work = tempfile::tempdir_in(self.dir.path()).expect("work dir");
        let named: Vec<&str> = index.map(|i| vec!["--vectorize-index", i]).unwrap_or_default();
        let o = self
            .emu
            .command(&self.db)
            .args(["--json", "sync", "--config", self.config.to_str().expect("p"), "--target", "api"])
            .args(["--d1-database-id", "db1", "--once"])
            .args(named)
            .args(["--work-dir", work.path().to_str().expect("p")])
            .args(extra)
            .output()
            .expect("sync");
        outcome(o)
    }

    pub(crate) fn sync_ok(&self) -> serde_json::Value {
        let (code, r, out) = self.sync(&[]);
        assert_eq!(code, Some(0), "{out}");
        r
    }

    fn verify(&self, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let o = self
            .emu
            .command(&self.db)
            .args(["--json", "verify", "--config", self.config.to_str().expect("p"), "--sqlite"])
            .arg(self.emu.d1_file("db1"))
            .args(["--vectorize-index", "vi", "--queries", "0", "--report-dir"])
            .arg(self.dir.path().join("report"))
            .args(extra)
            .output()
            .expect("verify");
        outcome(o)
    }

    /// The ids among `ids` the index holds.
    pub(crate) fn stored(&self, ids: &[&str]) -> Vec<String> {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let got = block_on(self.emu.vectorize("vi").get_by_ids(&ids)).expect("get_by_ids");
        let mut out: Vec<String> = got.into_iter().map(|v| v.id).collect();
        out.sort();
        out
    }

    pub(crate) fn d1(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.emu.d1_file("db1")).expect("open D1 file")
    }

    pub(crate) fn checkpoint(&self) -> serde_json::Value {
        let t: String = self
            .d1()
            .query_row("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'", [], |r| r.get(0))
            .expect("checkpoint");
        serde_json::from_str(&t).expect("checkpoint json")
    }

    pub(crate) fn set_checkpoint(&self, cp: &serde_json::Value) {
        self.d1()
            .execute("UPDATE pgflare_sync_state SET value = ?1 WHERE name = 'checkpoint'", [cp.to_string()])
            .expect("write the checkpoint");
    }
}

fn vectorize_target(r: &serde_json::Value, name: &str) -> serde_json::Value {
    let t = r["tables"].as_array().expect("tables").iter().find(|t| t["table"] == name).expect("table");
    t["targets"].as_array().expect("targets").iter().find(|g| g["kind"] == "vectorize").expect("vz").clone()
}

#[test]
fn transactions_held_open_neither_make_sync_resend_rows_nor_hide_differences() {
    // Held from before the seed until the end: every snapshot of the
    // cluster has an xmin at or below it, as with a stuck session (or
    // another test) anywhere on the server.
    let other = OpenTransaction::begin();
    let s = setup_with("synchorizon", 300, 4, &[], "", "");
    let ids: Vec<String> = s
        .db
        .query_one("SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 2) s")
        .split(',')
        .map(str::to_string)
        .collect();
    let (id, late) = (&ids[0], &ids[1]);
    // A stuck session of this very database: it wrote a row (no savepoint)
    // and stays open across two runs.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let mut stuck =
        rt.block_on(<sqlx::PgConnection as sqlx::Connection>::connect(&s.db.url)).expect("connect");
    rt.block_on(
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "BEGIN; UPDATE chunks SET content = 'late' WHERE id = '{late}'"
        )))
        .execute(&mut stuck),
    )
    .expect("the stuck session");
    s.db.exec(&format!("UPDATE chunks SET content = 'edited' WHERE id = '{id}'"));
    // Only the edited row: the load's snapshot saw every other one.
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["rows_upserted"].as_u64(), Some(1), "{r:#}");
    // And the next run sends nothing, though the oldest transaction of
    // the cluster (and of this database) is still the same.
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["rows_upserted"].as_u64(), Some(0), "{r:#}");
    assert_eq!(table(&r, "public.chunks")["vectors"]["sent"].as_u64(), Some(0), "{r:#}");
    // The stuck session commits: the next run sends its row.
    rt.block_on(sqlx::raw_sql("COMMIT").execute(&mut stuck)).expect("commit");
    let (code, r, out) = s.sync(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["rows_upserted"].as_u64(), Some(1), "{r:#}");
    let content: String =
        s.d1().query_row("SELECT content FROM chunks WHERE id = ?1", [late], |r| r.get(0)).expect("row");
    assert_eq!(content, "late");

    // Differences planted behind pgflare's back are differences, not rows
    // pending sync: one vector deleted, one D1 value changed.
    let victim = s.db.query_one(&format!(
        "SELECT id::text FROM chunks WHERE embedding IS NOT NULL AND id <> '{id}' ORDER BY id LIMIT 1"
    ));
    block_on(async {
        let v = s.emu.vectorize("vi");
        let t = v.delete_by_ids("planted", std::slice::from_ref(&victim)).await.expect("delete");
        let quiet = |_: &str| {};
        v.wait_applied(t.expect("a write"), std::time::Duration::from_secs(30), &quiet)
            .await
            .expect("applied");
    });
    s.d1().execute("UPDATE chunks SET content = 'planted' WHERE id = ?1", [&id]).expect("plant in D1");
    let (code, r, out) = s.verify();
    assert_eq!(code, Some(1), "{out}");
    let t =
        r["tables"].as_array().expect("tables").iter().find(|t| t["table"] == "public.chunks").expect("t");
    let targets = t["targets"].as_array().expect("targets");
    let pending: Vec<u64> = targets.iter().map(|t| t["pending_sync"].as_u64().unwrap_or(0)).collect();
    assert_eq!(pending, vec![0, 0], "{r:#}");
    let counts: Vec<&serde_json::Value> = targets.iter().map(|t| &t["counts"]).collect();
    assert_eq!(counts, vec![&serde_json::json!({"changed": 1}), &serde_json::json!({"missing": 1})], "{r:#}");
    drop(other);
}

#[test]
fn a_changed_vectorize_mapping_refuses_the_checkpoint_and_an_unchanged_one_keeps_it() {
    let base = "vector_metadata = [\"doc\"]";
    let s = Items::new("syncmapping", "", base);
    s.sync_ok();
    // Each of these changes what vectors look like (or which are
    // filterable): changes since the checkpoint would leave the old ones.
    let meta = |t: &str| format!("vector_metadata = [\"doc\"]\n{t}");
    let variants: [(&str, String, &str); 7] = [
        ("", "vector_metadata = [\"doc\", \"n\"]".into(), "Vectorize mapping"),
        ("", "vector_metadata = []".into(), "Vectorize mapping"),
        ("", meta("vector_namespace = \"tenant\""), "Vectorize mapping"),
        ("", meta("vector_metadata_indexes = [\"doc\"]"), "Vectorize mapping"),
        ("", meta("vector_metadata_paths = { source = \"meta.source\" }"), "JSON metadata"),
        ("metric = \"euclidean\"", base.into(), "Vectorize mapping"),
        ("dimensions = 4", base.into(), "Vectorize mapping"),
    ];
    for (vectorize, t, names) in variants {
        let text = items_config(vectorize, &t);
        // `dimensions` replaces the base's.
        let text =
            if vectorize.starts_with("dimensions") { text.replacen("dimensions = 3\n", "", 1) } else { text };
        std::fs::write(&s.config, text).expect("config");
        let (code, _, out) = s.sync(&[]);
        assert_eq!(code, Some(2), "{vectorize} {t}: {out}");
        assert!(out.contains(names) && out.contains("pgflare load --restart"), "{vectorize} {t}: {out}");
    }

    std::fs::write(&s.config, items_config("", base)).expect("config");
    s.sync_ok();
    let cp = s.checkpoint();
    let recorded = cp["vectorize"].as_str().expect("the Vectorize mapping is recorded").to_string();

    // A checkpoint written before pgflare recorded the Vectorize mapping
    // stays valid when nothing changed, and gets it recorded.
    let mut old = cp.clone();
    old.as_object_mut().expect("object").remove("vectorize");
    s.set_checkpoint(&old);
    s.sync_ok();
    assert_eq!(s.checkpoint()["vectorize"].as_str(), Some(recorded.as_str()));

    // The same mapping written differently is the same mapping.
    std::fs::write(
        &s.config,
        items_config("on_invalid = \"skip\"", "vector_metadata = [\"doc\"]\nvector_id = \"id\""),
    )
    .expect("config");
    s.sync_ok();

    // An index of another metric than pgflare.toml's: the refusal is
    // about this sync, not a load, and says what to set. (A checkpoint that
    // records its index refuses another one first: this one predates it.)
    block_on(async {
        let want = pgflare::cloudflare::vectorize::IndexConfig { dimensions: 3, metric: "euclidean".into() };
        s.emu.vectorize("vi2").ensure(&want, true).await.expect("create vi2")
    });
    let mut old = s.checkpoint();
    old.as_object_mut().expect("object").remove("vectorize_index");
    s.set_checkpoint(&old);
    let (code, _, out) = s.sync_into("vi2", &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("exists with 3 dimensions and metric euclidean"), "{out}");
    assert!(!out.contains("the load needs") && out.contains("[vectorize] metric"), "{out}");

    // A run with vectors off moves the checkpoint without Vectorize: a
    // later run with vectors on would miss what it carried.
    s.db.exec("UPDATE items SET doc = 'a2' WHERE id = 'ok1'");
    let (code, _, out) = s.sync(&["--vectorize", "off"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, out) = s.sync(&[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--vectorize off") && out.contains("pgflare load --restart"), "{out}");
}

#[test]
fn sync_deletes_the_vector_of_a_row_that_became_invalid_and_sends_it_again_once_valid() {
    let s = Items::new("syncstale", "on_invalid = \"skip\"", "vector_metadata = [\"meta\"]");
    // Sync sends ok1 once (its digest is recorded).
    s.db.exec(r#"UPDATE items SET meta = '{"source": "a2.pdf"}' WHERE id = 'ok1'"#);
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["sent"].as_u64(), Some(1), "{r:#}");

    // ok1's metadata grows past 10 KiB, ok2 gets a fourth dimension: both
    // are skipped, named with the reason, and their old vectors go.
    s.db.exec(&format!(
        r#"UPDATE items SET meta = '{{"source": "{}"}}' WHERE id = 'ok1';
           UPDATE items SET embedding = '[1,2,3,4]' WHERE id = 'ok2';"#,
        "x".repeat(11_000)
    ));
    let r = s.sync_ok();
    let v = &table(&r, "public.items")["vectors"];
    assert_eq!((v["skipped"].as_u64(), v["deleted"].as_u64()), (Some(2), Some(2)), "{r:#}");
    let skipped = table(&r, "public.items")["skipped_vectors"].as_array().expect("named").clone();
    let reasons: Vec<String> = skipped.iter().map(|x| format!("{} {}", x["key"], x["reason"])).collect();
    assert_eq!(reasons.len(), 2, "{r:#}");
    assert!(reasons.iter().any(|x| x.contains("ok1") && x.contains("10240")), "{reasons:?}");
    assert!(reasons.iter().any(|x| x.contains("ok2") && x.contains("4 dimensions")), "{reasons:?}");
    assert_doc_schema("sync-summary", &r.to_string(), s.dir.path());
    assert_eq!(s.stored(&["ok1", "ok2", "ok3"]), vec!["ok3".to_string()]);
    let digests: i64 = s
        .d1()
        .query_row(
            "SELECT count(*) FROM pgflare_vector_digests WHERE id IN ('ok1', 'ok2') AND digest <> 'none'",
            [],
            |r| r.get(0),
        )
        .expect("digests");
    assert_eq!(digests, 0, "their digests are replaced by the record of no vector");
    let (code, rep, out) = s.verify(&["--accept-skipped"]);
    assert_eq!(code, Some(0), "{out}");
    let t = vectorize_target(&rep, "public.items");
    assert_eq!(t["counts"], serde_json::json!({"skipped": 2}), "{t:#}");
    let notes = t["notes"].to_string();
    assert!(!notes.contains("still holds"), "no stale vector left: {notes}");

    // ok1 becomes what sync sent before: sent again, not taken as unchanged.
    s.db.exec(r#"UPDATE items SET meta = '{"source": "a2.pdf"}' WHERE id = 'ok1'"#);
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["sent"].as_u64(), Some(1), "{r:#}");
    assert_eq!(s.stored(&["ok1", "ok2"]), vec!["ok1".to_string()]);
    let (code, rep, out) = s.verify(&["--accept-skipped"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(vectorize_target(&rep, "public.items")["counts"], serde_json::json!({"skipped": 1}));

    // Under `fail` the run stops with the error, naming the row and the
    // limit, and the vector stays as it was.
    std::fs::write(&s.config, items_config("on_invalid = \"fail\"", "vector_metadata = [\"meta\"]"))
        .expect("config");
    s.db.exec(&format!(
        r#"UPDATE items SET meta = '{{"source": "{}"}}' WHERE id = 'ok3'"#,
        "y".repeat(11_000)
    ));
    let (code, _, out) = s.sync(&[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("id=ok3") && out.contains("10240"), "{out}");
    assert_eq!(s.stored(&["ok3"]), vec!["ok3".to_string()]);
}
