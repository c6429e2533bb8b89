//! `pgflare sync` and the Vectorize index it follows, against the emulator:
//! the checkpoint records the index the load filled, so a sync into
//! another one (of the same settings), or into one deleted (and maybe
//! created again) since, is refused, and so is a sync that would leave
//! Vectorize out only because no index was named (an explicit
//! `--vectorize off` still runs); vector deletes are sent and counted only
//! for ids that can hold a vector; a fresh load forgets the digests of
//! vectors earlier syncs sent, which no longer say what the index holds.

use super::sync_vectors::{items_config, Items};
use crate::common::*;

fn create_index(s: &Items, name: &str) {
    block_on(async {
        let want = pgflare::cloudflare::vectorize::IndexConfig { dimensions: 3, metric: "cosine".into() };
        s.emu.vectorize(name).ensure(&want, true).await.expect("create the index")
    });
}

fn stored_in(s: &Items, index: &str, ids: &[&str]) -> Vec<String> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let got = block_on(s.emu.vectorize(index).get_by_ids(&ids)).expect("get_by_ids");
    let mut out: Vec<String> = got.into_iter().map(|v| v.id).collect();
    out.sort();
    out
}

/// The last mutation index `vi` applied: unchanged when nothing was written.
fn last_mutation(s: &Items) -> Option<String> {
    block_on(s.emu.vectorize("vi").info()).expect("info").processed_up_to_mutation
}

#[test]
fn sync_into_another_index_than_the_checkpoints_is_refused() {
    let s = Items::new("syncidx", "", "vector_metadata = [\"doc\"]");
    // vi2 has the same dimensions and metric: only the checkpoint can
    // tell that it holds none of the loaded vectors.
    create_index(&s, "vi2");
    s.db.exec("UPDATE items SET doc = 'a2' WHERE id = 'ok1'");
    let (code, _, out) = s.sync_into("vi2", &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("`vi`") && out.contains("`vi2`"), "names both indexes: {out}");
    assert!(out.contains("pgflare load --restart") && out.contains("--vectorize-index vi"), "{out}");
    assert_eq!(stored_in(&s, "vi2", &["ok1", "ok2", "ok3", "ok4"]), Vec::<String>::new());
    let cp = s.checkpoint();
    assert_eq!(cp["vectorize_index"]["name"], "vi", "the load recorded its index: {cp:#}");
    assert_eq!(cp["vectorize_index"]["account_id"], s.emu.account.as_str(), "{cp:#}");

    // The loaded index goes on.
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["sent"].as_u64(), Some(1), "{r:#}");

    // A checkpoint written before pgflare recorded the index stays valid
    // and gets it recorded.
    let mut old = s.checkpoint();
    old.as_object_mut().expect("object").remove("vectorize_index");
    s.set_checkpoint(&old);
    s.sync_ok();
    assert_eq!(s.checkpoint()["vectorize_index"]["name"], "vi");
}

#[test]
fn sync_into_an_index_deleted_since_the_checkpoint_is_refused_even_when_created_again() {
    let s = Items::new("syncrecreate", "", "vector_metadata = [\"doc\"]");
    let created = s.checkpoint()["vectorize_index"]["created_on"].clone();
    assert!(created.as_str().is_some_and(|c| !c.is_empty()), "the load records when vi was created");
    s.db.exec("UPDATE items SET doc = 'a2' WHERE id = 'ok1'");
    s.sync_ok();
    assert_eq!(s.checkpoint()["vectorize_index"]["created_on"], created);
    // Deleted: refused, whatever `create_index` says.
    s.emu.delete_index("vi");
    std::fs::write(&s.config, items_config("create_index = true", "vector_metadata = [\"doc\"]"))
        .expect("config");
    let (code, _, out) = s.sync(&[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no longer exists") && out.contains("pgflare load --restart"), "{out}");
    assert_eq!(block_on(s.emu.vectorize("vi").config()).expect("config"), None, "not created by sync");
    // Created again with the same settings: refused too.
    std::thread::sleep(std::time::Duration::from_millis(5));
    create_index(&s, "vi");
    let (code, _, out) = s.sync(&[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("deleted and created again") && out.contains("pgflare load --restart"), "{out}");
    // The fix: a fresh load fills it and records it.
    ok(s.load(&["--restart"]));
    assert_ne!(s.checkpoint()["vectorize_index"]["created_on"], created);
    s.sync_ok();
}

#[test]
fn sync_without_an_index_named_refuses_a_checkpoint_that_records_one() {
    let s = Items::new("syncnoidx", "", "vector_metadata = [\"doc\"]");
    s.db.exec("UPDATE items SET doc = 'a2' WHERE id = 'ok1'");
    let recorded = s.checkpoint()["vectorize"].clone();
    // `--vectorize auto` (the default) with no index named.
    let (code, _, out) = s.sync_naming(None, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("`vi`"), "names the recorded index: {out}");
    assert!(out.contains("--vectorize-index") && out.contains("--vectorize off"), "{out}");
    assert_eq!(s.checkpoint()["vectorize"], recorded, "the checkpoint is left as it was");
    // With the index named, the run goes on with vectors.
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["sent"].as_u64(), Some(1), "{r:#}");

    // Leaving Vectorize behind on purpose is still possible.
    s.db.exec("UPDATE items SET doc = 'a3' WHERE id = 'ok1'");
    let (code, _, out) = s.sync_naming(None, &["--vectorize", "off"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(s.checkpoint()["vectorize"], "off");
}

#[test]
fn sync_sends_and_counts_only_vector_deletes_that_can_remove_something() {
    // `nv` never had a vector: loaded with a NULL embedding.
    let nv = "INSERT INTO items VALUES ('nv', NULL, NULL, 'e', 't1', 5), ('nv2', NULL, NULL, 'f', 't1', 6)";
    let s = Items::with_sql("syncnulls", nv, "", "vector_metadata = [\"doc\"]");
    let before = last_mutation(&s);
    // Its row changes, still without an embedding: nothing to delete.
    s.db.exec("UPDATE items SET doc = 'e2' WHERE id = 'nv'");
    let r = s.sync_ok();
    let v = &table(&r, "public.items")["vectors"];
    assert_eq!((v["sent"].as_u64(), v["deleted"].as_u64()), (Some(0), Some(0)), "{r:#}");
    assert_eq!(r["vectors_deleted"].as_u64(), Some(0), "{r:#}");
    assert_eq!(last_mutation(&s), before, "no delete was sent");

    // A loaded vector whose embedding becomes NULL is deleted and counted.
    s.db.exec("UPDATE items SET embedding = NULL WHERE id = 'ok1'");
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["deleted"].as_u64(), Some(1), "{r:#}");
    assert_eq!(s.stored(&["ok1", "ok2"]), vec!["ok2".to_string()]);
    // ... once: its next change has nothing left to delete, and sends nothing.
    let before = last_mutation(&s);
    s.db.exec("UPDATE items SET doc = 'a2' WHERE id = 'ok1'; UPDATE items SET doc = 'e3' WHERE id = 'nv'");
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["deleted"].as_u64(), Some(0), "{r:#}");
    assert_eq!(last_mutation(&s), before, "no delete was sent");

    // Rows without a vector deleted from the source: their rows go from
    // D1, no vector is counted (nv2 was never asked about before).
    s.db.exec("DELETE FROM items WHERE id IN ('nv', 'nv2')");
    let r = s.sync_ok();
    let t = table(&r, "public.items");
    assert_eq!(t["rows_hard_deleted"].as_u64(), Some(2), "{r:#}");
    assert_eq!(t["vectors"]["deleted"].as_u64(), Some(0), "{r:#}");
    // A row with a vector deleted from the source: counted.
    s.db.exec("DELETE FROM items WHERE id = 'ok2'");
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["deleted"].as_u64(), Some(1), "{r:#}");
    assert_eq!(s.stored(&["ok2", "ok3"]), vec!["ok3".to_string()]);

    // The embedding comes back: sent, although the row had none recorded.
    s.db.exec("UPDATE items SET embedding = '[1,0,1]' WHERE id = 'ok1'");
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["sent"].as_u64(), Some(1), "{r:#}");
    assert_eq!(s.stored(&["ok1"]), vec!["ok1".to_string()]);
}

#[test]
fn a_fresh_load_forgets_the_digests_of_vectors_sync_sent() {
    let s = Items::new("syncreload", "", "vector_metadata = [\"doc\"]");
    // Sync sends ok1 with doc B (its digest is recorded).
    s.db.exec("UPDATE items SET doc = 'B' WHERE id = 'ok1'");
    s.sync_ok();
    // A fresh load writes ok1 with doc C.
    s.db.exec("UPDATE items SET doc = 'C' WHERE id = 'ok1'");
    std::fs::write(&s.config, items_config("", "vector_metadata = [\"doc\"]")).expect("config");
    ok(s.load(&["--restart"]));
    // Back to B: the index holds C, so the vector must be sent.
    s.db.exec("UPDATE items SET doc = 'B' WHERE id = 'ok1'");
    let r = s.sync_ok();
    assert_eq!(table(&r, "public.items")["vectors"]["sent"].as_u64(), Some(1), "{r:#}");
    let got = block_on(s.emu.vectorize("vi").get_by_ids(&["ok1".to_string()])).expect("get_by_ids");
    let doc = got.first().and_then(|v| v.metadata.as_ref()).map(|m| m["doc"].clone());
    assert_eq!(doc, Some(serde_json::json!("B")), "{got:?}");
}
