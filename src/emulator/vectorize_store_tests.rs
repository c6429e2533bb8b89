//! The emulated Vectorize store's bookkeeping of index names.

use super::*;

fn config(name: &str) -> IndexConfig {
    IndexConfig {
        name: name.into(),
        description: String::new(),
        dimensions: 2,
        metric: Metric::Cosine,
        created_on: String::new(),
        modified_on: String::new(),
    }
}

#[test]
fn a_deleted_name_answers_deleted_for_a_while_then_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let mut v = Vectorize::open(dir.path(), Duration::ZERO).expect("open");
    v.deleted_for_ms = 200;
    assert!(matches!(v.lookup("a"), Lookup::Missing));
    v.create(config("a")).expect("create").expect("new");
    assert!(matches!(v.lookup("a"), Lookup::Live(_)));
    assert!(v.delete("a"));
    assert!(matches!(v.lookup("a"), Lookup::Deleted));
    std::thread::sleep(Duration::from_millis(250));
    assert!(matches!(v.lookup("a"), Lookup::Missing));
    // Created again: live, and a later delete starts a new window.
    v.create(config("a")).expect("create").expect("new");
    assert!(matches!(v.lookup("a"), Lookup::Live(_)));
    assert!(v.delete("a"));
    assert!(matches!(v.lookup("a"), Lookup::Deleted));
}
