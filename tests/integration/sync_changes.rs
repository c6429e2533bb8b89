//! The condition sync sends rows by and verify counts pending rows by
//! (`sync::changes::unseen_by`), run on the real Postgres: it selects
//! exactly the rows whose transaction the checkpoint's snapshot did not
//! see (committed after it, or in progress at it), also while a
//! transaction of another database holds the cluster's xmin back, after
//! `VACUUM FREEZE`, and in a later epoch of 64-bit transaction ids.

use pgflare::sync::changes::{full_xid, unseen_by};
use pgflare::sync::checkpoint::TxidSnapshot;
use sqlx::{Connection, PgConnection};

use crate::common::*;

/// `text` (a snapshot) with every id moved `epochs` epochs (2^32) later.
fn later(s: &TxidSnapshot, epochs: u64) -> TxidSnapshot {
    let d = epochs << 32;
    TxidSnapshot { xmin: s.xmin + d, xmax: s.xmax + d, xip: s.xip.iter().map(|x| x + d).collect() }
}

#[test]
fn rows_count_as_changed_exactly_when_the_checkpoint_snapshot_did_not_see_their_transaction() {
    let db = TestDb::new("unseen");
    db.exec("CREATE TABLE t (id int PRIMARY KEY)");
    // Held from before every write: the snapshots' xmin stays below them all.
    let other = OpenTransaction::begin();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let connect = || rt.block_on(PgConnection::connect(&db.url)).expect("connect");
    let (mut a, mut b) = (connect(), connect());
    let run = |c: &mut PgConnection, sql: &str| {
        rt.block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(c)).expect("sql");
    };
    let snapshot = |c: &mut PgConnection| -> TxidSnapshot {
        let t: String = rt
            .block_on(sqlx::query_scalar("SELECT pg_current_snapshot()::text").fetch_one(c))
            .expect("snapshot");
        TxidSnapshot::parse(&t).expect("a snapshot text")
    };
    // 1 commits before the checkpoint's snapshot, 2 is in progress at it
    // and commits after, 3 begins after it.
    run(&mut a, "INSERT INTO t VALUES (1)");
    run(&mut a, "BEGIN; INSERT INTO t VALUES (2)");
    let seen = snapshot(&mut b);
    assert!(!seen.xip.is_empty(), "the other database's transaction is in progress: {seen:?}");
    run(&mut a, "COMMIT");
    run(&mut a, "INSERT INTO t VALUES (3)");

    let unseen = |b: &mut PgConnection, seen: &TxidSnapshot, epochs: u64| -> Vec<i32> {
        run(b, "BEGIN ISOLATION LEVEL REPEATABLE READ");
        let now = later(&snapshot(b), epochs);
        let cond = unseen_by(seen, now.xmax).expect("a recent snapshot");
        let ids: Vec<i32> = rt
            .block_on(
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM t WHERE {cond} ORDER BY id")))
                    .fetch_all(&mut *b),
            )
            .expect("select");
        run(b, "COMMIT");
        ids
    };
    assert_eq!(unseen(&mut b, &seen, 0), vec![2, 3]);
    // The same ids two epochs later (the 32-bit xmin gets its epoch from
    // the current snapshot).
    assert_eq!(unseen(&mut b, &later(&seen, 2), 2), vec![2, 3]);
    // Freezing keeps the raw xmin readable.
    run(&mut a, "VACUUM (FREEZE) t");
    assert_eq!(unseen(&mut b, &seen, 0), vec![2, 3]);
    // A snapshot that saw them all: nothing.
    let all = snapshot(&mut b);
    assert_eq!(unseen(&mut b, &all, 0), Vec::<i32>::new());
    drop(other);
}

#[test]
fn a_32_bit_xmin_becomes_the_latest_64_bit_id_with_its_low_bits() {
    let db = TestDb::new("fullxid");
    let e = 1u64 << 32;
    // (32-bit id, current xmax): across the epoch boundary both ways.
    let cases: Vec<(u64, u64)> = vec![
        (3, 10),
        (9, 10),
        (4_294_967_290, e + 5),
        (3, e + 5),
        (4, e + 5),
        (4_294_967_295, 7 * e),
        (0, 7 * e + 1),
        (123_456, 5 * e + 123_457),
        (123_458, 5 * e + 123_457),
        (4_294_967_290, 5),
    ];
    for (x, current) in cases {
        let expr = full_xid("x", current);
        let got: i64 = db
            .query_one(&format!("SELECT ({expr})::text FROM (SELECT {x}::bigint AS x) s"))
            .parse()
            .expect("n");
        let got = got as u64;
        if current > x {
            assert!(got <= current && current - got < e && got & 0xFFFF_FFFF == x, "{x} at {current}: {got}");
        } else {
            assert_eq!(got, 0, "no id with those bits at or below {current}: the floor");
        }
    }
}
