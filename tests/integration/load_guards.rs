//! `pgflare load` refusing what would leave Vectorize other than the
//! source, before it writes: a resumed load whose metadata indexes or
//! metric changed (vectors of the ranges already loaded would not be
//! filterable, or would sit in an index of another metric), and a load of
//! more namespaces than one index allows.

use super::sync_vectors::{items_config, Items};
use crate::common::*;

/// Marks the finished load in `state` as killed before its first range
/// was confirmed, as a SIGKILL leaves it.
fn unfinish(state: &std::path::Path) {
    let f = load_state_file(state).expect("the load's state file");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f).expect("read")).expect("json");
    v["complete"] = serde_json::json!(false);
    v["tables"][0]["partitions"][0]["done"] = serde_json::json!(false);
    std::fs::write(&f, v.to_string()).expect("write");
}

#[test]
fn a_load_resumed_with_other_metadata_indexes_or_metric_is_refused() {
    let base = "vector_metadata = [\"doc\"]";
    let s = Items::new("loadidxfp", "", base);
    unfinish(&s.dir.path().join("state"));
    let variants = [
        ("", format!("{base}\nvector_metadata_indexes = [\"doc\"]")),
        ("metric = \"euclidean\"", base.to_string()),
    ];
    for (vectorize, t) in variants {
        std::fs::write(&s.config, items_config(vectorize, &t)).expect("config");
        let o = s.load(&[]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{vectorize} {t}: {out}");
        assert!(out.contains("unfinished load") && out.contains("--restart"), "{vectorize} {t}: {out}");
        assert!(out.contains("metadata indexes"), "{out}");
    }
    // Nothing was created on the index meanwhile.
    let indexes = block_on(s.emu.vectorize("vi").metadata_indexes()).expect("list");
    assert_eq!(indexes, Vec::<(String, String)>::new());
    // The settings it was started with resume it.
    std::fs::write(&s.config, items_config("", base)).expect("config");
    let r: serde_json::Value = ok_json(s.load(&[]));
    assert_eq!((r["resumed"].as_bool(), r["complete"].as_bool()), (Some(true), Some(true)), "{r:#}");
}

#[test]
fn a_load_of_more_namespaces_than_an_index_holds_is_refused_before_any_write() {
    let db = TestDb::new("loadns");
    // One namespace more than Vectorize allows per index (Workers Paid);
    // rows without a vector (and their namespace) do not count.
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE items (id text PRIMARY KEY, embedding vector(3), tenant text);
         INSERT INTO items SELECT 'i' || g, '[1,0,0]', 't' || g FROM generate_series(1, 50001) g;
         INSERT INTO items SELECT 'n' || g, NULL, 'u' || g FROM generate_series(1, 10) g;",
    );
    let emu = Emulator::start(&[]);
    let dir = temp_dir("loadns");
    let config = dir.path().join("pgflare.toml");
    std::fs::write(&config, items_config("", "vector_namespace = \"tenant\"")).expect("config");
    let (c, state) = (config.to_str().expect("p"), dir.path().join("state"));
    let api = ["--target", "api", "--d1-database-id", "db1", "--vectorize-index", "vi", "--create-index"];
    let out_dir = dir.path().join("out");
    let files = ["--target", "files", "--out", out_dir.to_str().expect("p")];
    let load = |target: &[&str]| {
        emu.command(&db)
            .args(["load", "--config", c, "--state-dir", state.to_str().expect("p")])
            .args(target)
            .output()
            .expect("load")
    };
    for target in [&api[..], &files[..]] {
        let o = load(target);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        for part in ["public.items", "tenant", "50001", "50000 namespaces", "vector_namespace"] {
            assert!(out.contains(part), "{part}: {out}");
        }
    }
    // Nothing was written: no D1 table, no index, no files, no state.
    let d1 = rusqlite::Connection::open(emu.d1_file("db1")).expect("D1");
    let tables: i64 =
        d1.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'items'", [], |r| r.get(0)).expect("n");
    assert_eq!(tables, 0);
    assert_eq!(block_on(emu.vectorize("vi").config()).expect("config"), None);
    assert!(!out_dir.join("items").exists() && load_state_file(&state).is_none());
    // At the limit, it loads.
    db.exec("DELETE FROM items WHERE id = 'i1'");
    ok(load(&api));
}
