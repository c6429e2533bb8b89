//! The rows sync sends and verify counts as pending, on the real Postgres,
//! through pgflare's own snapshot export (`Position::of`) and condition
//! (`sync::changes::changed_after`): a transaction of another database
//! running across the snapshot does not hold the horizon back, nor does
//! one of this database without subtransactions (only its own rows come
//! again), while every late commit is caught, also a row written in a
//! subtransaction (whose id the snapshot's in-progress list does not
//! show), and after `VACUUM FREEZE`.

use pgflare::source::{in_progress, Snapshot, Source};
use pgflare::state::changes::{changed_after, changed_since};
use pgflare::state::checkpoint::{snapshot_xmax, snapshot_xmin, Position};
use sqlx::{Connection, PgConnection};

use crate::common::*;

#[test]
fn sync_sends_every_late_commit_and_is_not_held_back_by_other_transactions() {
    let db = TestDb::new("horizon");
    db.exec("CREATE TABLE t (id int PRIMARY KEY)");
    // Held from before every write: Postgres' own snapshot xmin (which is
    // cluster-wide) stays below them all.
    let other = OpenTransaction::begin();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let connect = || rt.block_on(PgConnection::connect(&db.url)).expect("connect");
    let (mut flat, mut sub, mut c, mut b) = (connect(), connect(), connect(), connect());
    let run = |c: &mut PgConnection, sql: &str| {
        rt.block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(c)).expect("sql");
    };
    // Before the checkpoint's snapshot: 1 commits; a transaction of this
    // database writes 5 and stays open; 6 commits; another one writes 2
    // in a released savepoint (a subtransaction) and stays open; 4
    // commits (so the subtransaction's id is below the snapshot's xmax,
    // and absent from its in-progress list). After it: both open
    // transactions commit (late commits), and 3 is written.
    run(&mut c, "INSERT INTO t VALUES (1)");
    run(&mut flat, "BEGIN; INSERT INTO t VALUES (5)");
    run(&mut c, "INSERT INTO t VALUES (6)");
    run(&mut sub, "BEGIN; SAVEPOINT s; INSERT INTO t VALUES (2); RELEASE SAVEPOINT s");
    run(&mut c, "INSERT INTO t VALUES (4)");
    let source = Source::parse(&db.url).expect("source");
    let (info, position, before_16) = rt.block_on(async {
        let mut s = Snapshot::export(&source).await.expect("export");
        let info = s.info.clone();
        // What Postgres before 16 tells (no subtransaction counts).
        let before_16 = in_progress::place_with(s.conn(), &info.txid_snapshot, false).await.expect("place");
        s.release().await.expect("release");
        let p = Position::of(&info).expect("position");
        (info, p, before_16)
    });
    assert_eq!(before_16.elsewhere, info.in_progress_elsewhere);
    assert!(before_16.without_subtransactions.is_empty(), "{before_16:?}");
    assert!(!info.in_progress_elsewhere.is_empty(), "the other database's transaction: {info:?}");
    assert_eq!(info.in_progress_without_subtransactions.len(), 1, "5's transaction: {info:?}");
    run(&mut flat, "COMMIT");
    run(&mut sub, "COMMIT");
    run(&mut c, "INSERT INTO t VALUES (3)");

    let rows = |b: &mut PgConnection, cond: &dyn Fn(u64) -> Option<String>| -> Vec<i32> {
        run(b, "BEGIN ISOLATION LEVEL REPEATABLE READ");
        let now: String = rt
            .block_on(sqlx::query_scalar("SELECT pg_current_snapshot()::text").fetch_one(&mut *b))
            .expect("snapshot");
        let cond = cond(snapshot_xmax(&now).expect("xmax")).expect("a recent horizon");
        let ids: Vec<i32> = rt
            .block_on(
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM t WHERE {cond} ORDER BY id")))
                    .fetch_all(&mut *b),
            )
            .expect("select");
        run(b, "COMMIT");
        ids
    };
    // 2, 3 and 5 are to send; 1 and 6 are not. 4 comes again: it
    // committed after the subtransaction's transaction began, which the
    // snapshot cannot tell apart (upserts are idempotent).
    let after = |xmax| changed_after(&position, xmax);
    assert_eq!(rows(&mut b, &after), vec![2, 3, 4, 5]);
    // The plain horizon (what a reader unaware of the finer one uses)
    // sends 6 too; Postgres' own xmin (what checkpoints held before) 1 too.
    assert_eq!(rows(&mut b, &|xmax| changed_since(position.xmin(), xmax)), vec![2, 3, 4, 5, 6]);
    let pg_xmin = snapshot_xmin(&info.txid_snapshot).expect("xmin");
    assert_eq!(rows(&mut b, &|xmax| changed_since(pg_xmin, xmax)), vec![1, 2, 3, 4, 5, 6]);
    // Freezing keeps the raw xmin readable.
    run(&mut c, "VACUUM (FREEZE) t");
    assert_eq!(rows(&mut b, &after), vec![2, 3, 4, 5]);
    drop(other);
}
