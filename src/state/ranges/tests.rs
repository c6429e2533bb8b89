//! Tests of the key buckets: labels and ranges per scheme, saved sums, and
//! the reads of differing buckets run against a D1 file with D1's SQL
//! limits for any number of buckets and keys.

use super::*;
use std::collections::BTreeSet;

use arrow::array::AsArray;

use crate::batch::ColumnSpec;

fn key(kind: Kind, pg: &str) -> TableSpec {
    let ty = crate::typemap::ColumnType::scalar(kind);
    TableSpec {
        schema: "public".into(),
        name: "t".into(),
        columns: vec![ColumnSpec { name: "id".into(), pg_type: pg.into(), ty, nullable: false, cast: None }],
        primary_key: vec!["id".into()],
    }
}

#[test]
fn uuid_keys_bucket_by_prefix_and_select_by_range() {
    let s = Scheme::choose(&key(Kind::Uuid, "uuid"), None).expect("scheme");
    assert_eq!(s, Scheme::Prefix { chars: 3 });
    let mut b = FixedSizeBinaryBuilder::new(16);
    b.append_value(uuid::Uuid::parse_str("a3f00000-0000-4000-8000-000000000000").expect("u").as_bytes())
        .expect("a");
    let a = b.finish();
    assert_eq!(s.label(&a, 0).as_deref(), Some("a3f"));
    assert_eq!(s.range("a3f").expect("r"), (json!("a3f"), json!("a3f~")));
}

#[test]
fn integer_keys_get_about_4096_buckets() {
    let s = Scheme::choose(&key(Kind::Int8, "bigint"), Some((1, 20_000))).expect("scheme");
    let Scheme::Shift { shift } = s else { panic!("shift") };
    assert_eq!(shift, 3, "20,000 keys / 4096 -> 8 per bucket");
    let a = Int64Array::from(vec![17i64, -1]);
    assert_eq!(s.label(&a, 0).as_deref(), Some("2"));
    assert_eq!(s.label(&a, 1).as_deref(), Some("-1"), "negative keys floor");
    assert_eq!(s.range("2").expect("r"), (json!(16), json!(24)));
    assert_eq!(s.range("-1").expect("r"), (json!(-8), json!(0)));
    assert!(Scheme::choose(&key(Kind::Text, "text"), None).is_none());
}

#[test]
fn saved_sums_round_trip() {
    let mut sums = Sums::new();
    let mut d = DigestSum::default();
    d.add(&[7u8; 32]);
    sums.insert("a3f".into(), d);
    let saved = Saved::new(&Scheme::Prefix { chars: 3 }, &sums);
    let back: Saved = serde_json::from_str(&serde_json::to_string(&saved).expect("json")).expect("parse");
    assert_eq!(back.sums(), sums);
}

/// A D1 file through the `sqlite` target (so with D1's SQL limits) with
/// table `t` keyed by one column of type `ty`, holding `ids`.
fn d1_with(dir: &std::path::Path, ty: &str, ids: &[rusqlite::types::Value]) -> D1Access {
    let c = crate::sink::d1::sqlite::D1SqliteConfig::open(&dir.join("d1.sqlite"), Default::default())
        .expect("open");
    c.execute("table", &format!("CREATE TABLE t (id {ty} NOT NULL, PRIMARY KEY (id));")).expect("table");
    c.with_conn(|conn| {
        let tx = conn.transaction().expect("tx");
        for id in ids {
            tx.execute("INSERT INTO t VALUES (?1)", [id]).expect("insert");
        }
        tx.commit().map_err(crate::error::Error::sqlite("commit"))
    })
    .expect("rows");
    D1Access::Sqlite(c)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
}

#[test]
fn keys_of_buckets_are_read_through_the_primary_key_index() {
    let c = rusqlite::Connection::open_in_memory().expect("open");
    crate::cloudflare::limits::apply_d1_sql_limits(&c).expect("limits");
    c.execute_batch(
        "CREATE TABLE u (id TEXT NOT NULL, PRIMARY KEY (id)); CREATE TABLE i (id INTEGER NOT NULL, PRIMARY KEY (id));",
    )
    .expect("tables");
    for (table, uses) in [
        ("u", "USING COVERING INDEX sqlite_autoindex_u_1 (id>? AND id<?)"),
        ("i", "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
    ] {
        let sql = format!("EXPLAIN QUERY PLAN {}", keys_in_ranges_sql(table, "id"));
        let plan: Vec<String> = c
            .prepare(&sql)
            .expect("prepare")
            .query_map(["[[\"a\",\"a~\"]]"], |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert!(plan.iter().any(|p| p == &format!("SEARCH t {uses}")), "{table}: {plan:?}");
    }
}

#[test]
fn read_groups_hold_about_keys_per_read_keys() {
    let buckets: Vec<(String, u64)> = (0..10).map(|i| (format!("{i:03x}"), 4_000)).collect();
    let sizes: Vec<usize> = read_groups(&buckets).iter().map(|g| g.len()).collect();
    assert_eq!(sizes, vec![2, 2, 2, 2, 2], "4,000 + 4,000 <= 10,000 < 3 x 4,000");
    let huge = vec![("a".to_string(), 50_000), ("b".to_string(), 1)];
    assert_eq!(read_groups(&huge).len(), 2, "a bucket bigger than a read is read alone");
    let empty: Vec<(String, u64)> = (0..5000).map(|i| (i.to_string(), 0)).collect();
    let sizes: Vec<usize> = read_groups(&empty).iter().map(|g| g.len()).collect();
    assert_eq!(sizes, vec![BUCKETS_PER_READ, 5000 - BUCKETS_PER_READ]);
}

#[test]
fn saved_sums_of_many_buckets_fit_in_one_d1_value() {
    // Scheme::choose makes ~4096 buckets; twice that with the longest
    // labels still fits D1's 2,000,000 bytes per value.
    let dir = tempfile::tempdir().expect("tempdir");
    let d1 = d1_with(dir.path(), "TEXT", &[]);
    block_on(d1.execute("state", crate::state::store::STATE_DDL)).expect("state table");
    let mut sums = Sums::new();
    for i in 0..8192i64 {
        let mut d = DigestSum::default();
        d.add(&[(i % 251) as u8; 32]);
        d.rows = u64::MAX - i as u64;
        sums.insert((i64::MIN + i).to_string(), d);
    }
    let saved = Saved::new(&Scheme::Shift { shift: 0 }, &sums);
    block_on(save(&d1, "public.t", &saved)).expect("save");
    assert_eq!(block_on(load(&d1, "public.t")).expect("load"), Some(saved));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    // Any number of uuid-prefix buckets (up to all 4096) is read in
    // statements D1 accepts, and exactly their keys come back.
    #[test]
    fn reading_any_number_of_uuid_buckets_stays_within_d1_limits(
        ids in proptest::collection::btree_set(proptest::prelude::any::<u128>(), 0..3000),
        picked in proptest::collection::btree_map(0u16..4096, 0u64..40, 0..4096),
    ) {
        let ids: Vec<String> = ids.iter().map(|n| uuid::Uuid::from_u128(*n).hyphenated().to_string()).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let rows: Vec<rusqlite::types::Value> = ids.iter().map(|s| s.clone().into()).collect();
        let d1 = d1_with(dir.path(), "TEXT", &rows);
        let buckets: Vec<(String, u64)> = picked.iter().map(|(b, n)| (format!("{b:03x}"), *n)).collect();
        let batch = block_on(d1_keys(&d1, "t", &key(Kind::Uuid, "uuid"), &Scheme::Prefix { chars: 3 }, &buckets))
            .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
        let col = batch.column(0).as_fixed_size_binary();
        let got: BTreeSet<String> = (0..batch.num_rows())
            .map(|r| uuid::Uuid::from_slice(col.value(r)).expect("uuid").hyphenated().to_string())
            .collect();
        let want: BTreeSet<String> =
            ids.iter().filter(|i| picked.contains_key(&u16::from_str_radix(&i[..3], 16).expect("hex"))).cloned().collect();
        proptest::prop_assert_eq!(got, want);
    }

    // The same for integer keys over the whole i64 range, any bucket width.
    #[test]
    fn reading_any_number_of_integer_buckets_stays_within_d1_limits(
        ids in proptest::collection::btree_set(proptest::prelude::any::<i64>(), 0..3000),
        extra in proptest::collection::vec(proptest::prelude::any::<i64>(), 0..2000),
        shift in 0u32..63,
        every in 1usize..4,
    ) {
        let mut ids = ids;
        ids.extend([i64::MIN, i64::MAX, -1, 0]);
        let dir = tempfile::tempdir().expect("tempdir");
        let rows: Vec<rusqlite::types::Value> = ids.iter().map(|i| (*i).into()).collect();
        let d1 = d1_with(dir.path(), "INTEGER", &rows);
        // Buckets of some keys, and of values that may hold none.
        let labels: BTreeSet<i64> =
            ids.iter().step_by(every).chain(extra.iter()).map(|i| i >> shift).collect();
        let buckets: Vec<(String, u64)> = labels.iter().map(|l| (l.to_string(), 3)).collect();
        let batch = block_on(d1_keys(&d1, "t", &key(Kind::Int8, "bigint"), &Scheme::Shift { shift }, &buckets))
            .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
        let col = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let got: BTreeSet<i64> = col.values().iter().copied().collect();
        let want: BTreeSet<i64> = ids.iter().copied().filter(|i| labels.contains(&(i >> shift))).collect();
        proptest::prop_assert_eq!(got, want);
    }
}
