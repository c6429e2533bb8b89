//! Tests of the link SQL, run on SQLite with foreign keys on and D1's
//! limits set: rows written with placeholders in several transactions,
//! then linked in any order; missing parents left out and named; subtrees
//! deleted in batches in any order.

use proptest::prelude::*;
use rusqlite::limits::Limit;
use rusqlite::Connection;

use super::*;

/// SQLite as D1 runs it: foreign keys on, D1's statement limits.
fn d1() -> Connection {
    let c = Connection::open_in_memory().expect("sqlite");
    c.execute_batch("PRAGMA foreign_keys = ON;").expect("fk");
    c.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000).expect("limit");
    c.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, 100).expect("limit");
    c.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 100).expect("limit");
    c.set_limit(Limit::SQLITE_LIMIT_COMPOUND_SELECT, 5).expect("limit");
    c.set_limit(Limit::SQLITE_LIMIT_VDBE_OP, 25_000).expect("limit");
    c
}

fn tree_link(placeholder: Placeholder) -> Link {
    Link {
        name: "tree_parent_fkey".into(),
        table: "tree".into(),
        columns: vec!["parent".into()],
        ref_table: "tree".into(),
        ref_columns: vec!["id".into()],
        set: vec![0],
        placeholder,
    }
}

fn statements(sql: &LinkSql, tuples: &[String], max: usize) -> Vec<LinkStatement> {
    let mut out = Vec::new();
    let mut p = LinkPacker::new(sql, max);
    for t in tuples {
        p.push(t, &mut |s| {
            out.push(s);
            Ok(())
        })
        .expect("push");
    }
    p.flush(&mut |s| {
        out.push(s);
        Ok(())
    })
    .expect("flush");
    out
}

/// Runs `sql` in a transaction of its own (as a D1 request); returns the changes.
fn request(c: &Connection, sql: &str) -> rusqlite::Result<usize> {
    c.execute_batch("BEGIN; PRAGMA defer_foreign_keys = on;")?;
    let n = c.execute(sql, []);
    match n {
        Ok(n) => c.execute_batch("COMMIT").map(|_| n),
        Err(e) => {
            c.execute_batch("ROLLBACK")?;
            Err(e)
        }
    }
}

#[test]
fn statement_shape() {
    let sql = LinkSql::new(&tree_link(Placeholder::Null), &["id".to_string()]);
    let s = statements(&sql, &["(1, 2)".into(), ("(2, NULL)").into()], 100_000);
    assert_eq!(
        s[0].sql,
        "UPDATE \"tree\" SET \"parent\" = pgflare_v.column2 FROM (VALUES (1, 2),(2, NULL)) AS pgflare_v \
         WHERE \"tree\".\"id\" = pgflare_v.column1 AND (pgflare_v.column2 IS NULL OR EXISTS \
         (SELECT 1 FROM \"tree\" AS pgflare_p WHERE pgflare_p.\"id\" = pgflare_v.column2));\n"
    );
    assert_eq!((s[0].rows, s[0].values()), (2, "(1, 2),(2, NULL)"));
    assert_eq!(
        unlink_sql(&tree_link(Placeholder::Own), "\"id\" IN (1, 2)"),
        "UPDATE \"tree\" SET \"parent\" = \"id\" WHERE \"parent\" IN (SELECT \"id\" FROM \"tree\" WHERE \"id\" IN (1, 2));\n"
    );
}

#[test]
fn a_missing_parent_is_left_out_and_named() {
    let c = d1();
    c.execute_batch(
        "CREATE TABLE tree (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES tree (id));
         INSERT INTO tree VALUES (1, NULL), (2, NULL), (3, NULL);",
    )
    .expect("setup");
    let sql = LinkSql::new(&tree_link(Placeholder::Null), &["id".to_string()]);
    let s = statements(&sql, &["(1, 2)".into(), "(2, 99)".into(), "(3, NULL)".into()], 100_000);
    assert_eq!(request(&c, &s[0].sql).expect("no failure"), 2, "the row with a missing parent is left");
    let missing: Vec<i64> = c
        .prepare(&sql.check(&s[0]))
        .expect("check")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(missing, vec![2]);
    let parents: Vec<Option<i64>> = c
        .prepare("SELECT parent FROM tree ORDER BY id")
        .expect("p")
        .query_map([], |r| r.get(0))
        .expect("q")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(parents, vec![Some(2), None, None]);
}

#[test]
fn composite_keys_link_and_unlink_within_their_tenant() {
    // (tenant, parent) -> (tenant, id), NOT NULL: rows point at themselves first.
    let c = d1();
    c.execute_batch(
        "CREATE TABLE nodes (tenant TEXT NOT NULL, id INTEGER NOT NULL, parent INTEGER NOT NULL,
           PRIMARY KEY (tenant, id), FOREIGN KEY (tenant, parent) REFERENCES nodes (tenant, id));
         INSERT INTO nodes VALUES ('a', 1, 1), ('a', 2, 2), ('b', 1, 1), ('b', 2, 2);",
    )
    .expect("setup");
    let link = Link {
        name: "nodes_parent_fkey".into(),
        table: "nodes".into(),
        columns: vec!["tenant".into(), "parent".into()],
        ref_table: "nodes".into(),
        ref_columns: vec!["tenant".into(), "id".into()],
        set: vec![1],
        placeholder: Placeholder::Own,
    };
    let sql = LinkSql::new(&link, &["tenant".to_string(), "id".to_string()]);
    // ('b', 1) points at id 3, which tenant b does not have.
    let tuples = ["('a', 1, 2)".to_string(), "('b', 1, 3)".into(), "('b', 2, 1)".into()];
    let s = statements(&sql, &tuples, 100_000);
    assert_eq!(request(&c, &s[0].sql).expect("link"), 2);
    let missing: Vec<String> = c
        .prepare(&sql.check(&s[0]))
        .expect("check")
        .query_map([], |r| Ok(format!("{}/{}", r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(missing, vec!["b/1"]);
    // Deleting a/2 first gives a/1 its own key back, in the same request.
    let cond = "(\"tenant\", \"id\") IN (VALUES ('a', 2))";
    c.execute_batch(&format!("BEGIN; {}DELETE FROM nodes WHERE {cond}; COMMIT;", unlink_sql(&link, cond)))
        .expect("delete");
    let a1: i64 =
        c.query_row("SELECT parent FROM nodes WHERE tenant = 'a' AND id = 1", [], |r| r.get(0)).expect("a1");
    assert_eq!(a1, 1);
}

#[test]
fn full_statements_stay_within_d1s_program_size() {
    // 20,000 small tuples: 100,000 bytes would hold 6,000 of them, a
    // program of ~30,000 instructions, which D1 refuses.
    let c = d1();
    c.execute_batch("CREATE TABLE tree (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES tree (id));")
        .expect("table");
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO tree SELECT i, NULL FROM n;",
    )
    .expect("rows");
    let sql = LinkSql::new(&tree_link(Placeholder::Null), &["id".to_string()]);
    let tuples: Vec<String> = (1..=20_000).map(|i| format!("({i}, {})", (i % 20_000) + 1)).collect();
    let all = statements(&sql, &tuples, 100_000);
    assert!(all.len() >= 8, "bounded by values, not bytes: {} statements", all.len());
    let mut set = 0;
    for s in &all {
        set += request(&c, &s.sql).expect("D1 runs it");
        c.prepare(&sql.check(s)).expect("and its check");
    }
    assert_eq!(set, 20_000);
}

proptest! {
    // Any tree, loaded in any key order over several requests with its
    // links as placeholders, ends exact after the link statements, and any
    // subtree is deleted in batches of any size, in any order.
    #[test]
    fn any_tree_links_and_deletes_over_many_requests(
        parents in proptest::collection::vec(proptest::option::of(0usize..400), 1..400),
        own in any::<bool>(),
        max in 300usize..3000,
        batch in 1usize..50,
        seed in any::<u64>(),
    ) {
        let n = parents.len();
        // A parent must exist; with `own` the column is NOT NULL and a root is its own parent.
        let parent_of = |i: usize| match parents[i] { Some(p) if p < n && p != i => Some(p), _ => if own { Some(i) } else { None } };
        // Break cycles: keep only parents with a larger id... except when
        // reversed, so children sort both before and after their parents.
        let parent_of = |i: usize| parent_of(i).filter(|&p| (p > i) == i.is_multiple_of(2) || p == i).or(if own { Some(i) } else { None });
        let c = d1();
        let not_null = if own { " NOT NULL" } else { "" };
        c.execute_batch(&format!("CREATE TABLE tree (id INTEGER PRIMARY KEY, parent INTEGER{not_null} REFERENCES tree (id), note TEXT);")).expect("table");
        let link = tree_link(if own { Placeholder::Own } else { Placeholder::Null });
        let placeholder = |i: usize| if own { i.to_string() } else { "NULL".into() };
        // Rows in a shuffled order, one request per `batch` rows.
        let mut order: Vec<usize> = (0..n).collect();
        let mut x = seed | 1;
        for i in (1..n).rev() { x ^= x << 13; x ^= x >> 7; x ^= x << 17; order.swap(i, (x % (i as u64 + 1)) as usize); }
        for chunk in order.chunks(batch) {
            let rows: Vec<String> = chunk.iter().map(|&i| format!("({i}, {}, 'r{i}')", placeholder(i))).collect();
            let insert = format!("INSERT INTO tree VALUES {}", rows.join(","));
            let done = request(&c, &insert);
            prop_assert!(done.is_ok(), "{:?}", done);
        }
        let sql = LinkSql::new(&link, &["id".to_string()]);
        let tuples: Vec<String> = order.iter().map(|&i| format!("({i}, {})", parent_of(i).map(|p| p.to_string()).unwrap_or("NULL".into()))).collect();
        let mut set = 0;
        for s in statements(&sql, &tuples, max) {
            prop_assert!(s.sql.len() <= max, "{} > {max}", s.sql.len());
            prop_assert!(sql.check(&s).len() <= max);
            set += request(&c, &s.sql).expect("link statement");
        }
        prop_assert_eq!(set, n);
        for i in 0..n {
            let p: Option<i64> = c.query_row("SELECT parent FROM tree WHERE id = ?1", [i as i64], |r| r.get(0)).expect("row");
            prop_assert_eq!(p, parent_of(i).map(|p| p as i64));
        }
        // Delete the rows of every other subtree root and all below, in
        // batches, in a shuffled order: children and parents in different requests.
        let mut doomed: Vec<usize> = (0..n).filter(|&i| {
            let mut j = i;
            for _ in 0..n { match parent_of(j) { Some(p) if p != j => j = p, _ => break } }
            j % 2 == 0
        }).collect();
        doomed.sort_by_key(|&i| (i * 7919) % (n + 13));
        for chunk in doomed.chunks(batch) {
            let cond = format!("\"id\" IN ({})", chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
            let sql = format!("{}DELETE FROM tree WHERE {cond};", unlink_sql(&link, &cond));
            c.execute_batch("BEGIN; PRAGMA defer_foreign_keys = on;").expect("begin");
            let r = c.execute_batch(&sql);
            prop_assert!(r.is_ok(), "{:?}", r);
            c.execute_batch("COMMIT").expect("commit");
        }
        let left: i64 = c.query_row("SELECT count(*) FROM tree", [], |r| r.get(0)).expect("count");
        prop_assert_eq!(left as usize, n - doomed.len());
    }
}
