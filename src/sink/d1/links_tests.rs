//! Tests of the foreign-key plan: which keys are links, their
//! placeholders, and the waves once the cycles are cut.

use super::*;
use crate::batch::{ColumnSpec, TableSpec};
use crate::config::mapping::{d1_table, default_mapping};
use crate::typemap::{ColumnType, Kind};

fn fk(name: &str, cols: &[&str], parent: &str, refs: &[&str]) -> ForeignKey {
    ForeignKey {
        name: name.into(),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        ref_schema: "public".into(),
        ref_table: parent.into(),
        ref_columns: refs.iter().map(|c| c.to_string()).collect(),
        on_delete: "NO ACTION".into(),
        on_delete_columns: Vec::new(),
        on_update: "NO ACTION".into(),
    }
}

/// A table of integer columns; `not_null` lists the NOT NULL ones besides the key.
fn table(
    name: &str,
    cols: &[&str],
    key: &[&str],
    not_null: &[&str],
    fks: Vec<ForeignKey>,
) -> (TableInfo, D1Table) {
    let info = TableInfo {
        spec: TableSpec {
            schema: "public".into(),
            name: name.into(),
            columns: cols
                .iter()
                .map(|c| ColumnSpec {
                    name: c.to_string(),
                    pg_type: "int8".into(),
                    ty: ColumnType::scalar(Kind::Int8),
                    nullable: !key.contains(c) && !not_null.contains(c),
                    cast: None,
                })
                .collect(),
            primary_key: key.iter().map(|c| c.to_string()).collect(),
        },
        row_estimate: None,
        total_bytes: 0,
        constraints: vec![],
        indexes: vec![],
        ddl: String::new(),
        foreign_keys: fks,
        unique_keys: vec![],
        btree_indexes: vec![],
        skipped_indexes: vec![],
        unsupported: vec![],
    };
    let t = d1_table(&default_mapping(&info), &info).expect("d1 table");
    (info, t)
}

#[test]
fn a_self_reference_is_a_link_and_orders_nothing() {
    let pages = table("pages", &["id", "parent"], &["id"], &[], vec![fk("p", &["parent"], "pages", &["id"])]);
    let sections =
        table("sections", &["id", "page"], &["id"], &["page"], vec![fk("s", &["page"], "pages", &["id"])]);
    let plan = FkPlan::new(&[sections, pages]);
    assert_eq!(plan.waves, vec![vec![1], vec![0]], "pages first, then sections");
    assert_eq!(plan.links(0), vec![], "sections reference pages in order");
    let l = plan.links(1);
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].set.clone(), l[0].placeholder), (vec![0], Placeholder::Null));
    assert_eq!(plan.referrers(1), l);
    assert_eq!(plan.referrers(0), vec![]);
}

#[test]
fn a_two_table_cycle_links_both_ways_and_its_child_waits_for_it() {
    let a = table("a", &["id", "b_id"], &["id"], &["b_id"], vec![fk("ab", &["b_id"], "b", &["id"])]);
    let b = table("b", &["id", "a_id"], &["id"], &[], vec![fk("ba", &["a_id"], "a", &["id"])]);
    let c = table("c", &["id", "a_id"], &["id"], &["a_id"], vec![fk("ca", &["a_id"], "a", &["id"])]);
    let plan = FkPlan::new(&[c, a, b]);
    assert_eq!(plan.waves, vec![vec![1, 2], vec![0]]);
    let (la, lb) = (plan.links(1), plan.links(2));
    assert_eq!((la.len(), lb.len()), (1, 1));
    // NOT NULL across tables: no own row to point at, so NULL (the D1
    // column then allows NULL).
    assert_eq!(la[0].placeholder, Placeholder::Null);
    assert_eq!(plan.referrers(1), lb);
    assert!(plan.any_links());
}

#[test]
fn a_not_null_self_reference_points_at_its_own_row() {
    let t =
        table("tree", &["id", "parent"], &["id"], &["parent"], vec![fk("t", &["parent"], "tree", &["id"])]);
    let l = FkPlan::new(&[t]).links(0);
    assert_eq!(l[0].placeholder, Placeholder::Own);
}

#[test]
fn composite_keys_write_only_columns_outside_the_key() {
    // (tenant, parent) -> (tenant, id) with key (tenant, id): the tenant is
    // written with the row, the parent later; NOT NULL, so the row's own id.
    let t = table(
        "nodes",
        &["tenant", "id", "parent"],
        &["tenant", "id"],
        &["parent"],
        vec![fk("n", &["tenant", "parent"], "nodes", &["tenant", "id"])],
    );
    let l = FkPlan::new(&[t]).links(0);
    assert_eq!((l[0].set.clone(), l[0].placeholder), (vec![1], Placeholder::Own));
    // Key columns only, inside a cycle: nothing can wait, D1 cannot keep it.
    let x = table("x", &["id"], &["id"], &[], vec![fk("xy", &["id"], "y", &["id"])]);
    let y = table("y", &["id"], &["id"], &[], vec![fk("yx", &["id"], "x", &["id"])]);
    let plan = FkPlan::new(&[x, y]);
    assert!(matches!(&plan.tables[0][0].role, Role::Skipped(r) if r.contains("primary-key columns")));
    assert!(!plan.any_links());
    // A key that references its own columns holds by itself.
    let s = table("s", &["id"], &["id"], &[], vec![fk("ss", &["id"], "s", &["id"])]);
    assert_eq!(FkPlan::new(&[s]).tables[0][0].role, Role::SelfSatisfied);
}

#[test]
fn components_and_waves_of_a_larger_graph() {
    // 0 -> 1 -> 2 -> 0 (a cycle), 3 -> 2, 4 -> 3, 5 alone with a self-loop.
    let comp = components(6, &[(0, 1), (1, 2), (2, 0), (3, 2), (4, 3), (5, 5)]);
    assert!(comp[0] == comp[1] && comp[1] == comp[2]);
    assert!(comp[3] != comp[0] && comp[4] != comp[3] && comp[5] != comp[0]);
    assert_eq!(waves(6, &[(3, 2), (4, 3), (5, 5)]), vec![vec![0, 1, 2, 5], vec![3], vec![4]]);
}

#[test]
fn the_migration_allows_null_only_where_a_link_writes_it_later() {
    let a = table(
        "a",
        &["id", "b_id", "note"],
        &["id"],
        &["b_id", "note"],
        vec![fk("ab", &["b_id"], "b", &["id"])],
    );
    let b = table("b", &["id", "a_id"], &["id"], &[], vec![fk("ba", &["a_id"], "a", &["id"])]);
    let t =
        table("tree", &["id", "parent"], &["id"], &["parent"], vec![fk("t", &["parent"], "tree", &["id"])]);
    let sql = crate::sink::d1::migration::migration_sql(&[a, b, t]).expect("migration");
    // b_id waits for the link step (NULL until then); note keeps NOT NULL;
    // tree.parent points at its own row until then, so it keeps NOT NULL.
    assert!(sql.contains("  \"b_id\" INTEGER,\n"), "{sql}");
    assert!(sql.contains("  \"note\" INTEGER NOT NULL,\n"), "{sql}");
    assert!(sql.contains("  \"parent\" INTEGER NOT NULL,\n"), "{sql}");
    assert!(sql.contains("-- b_id is NOT NULL in the source but allows NULL here"), "{sql}");
    assert!(sql.contains("FOREIGN KEY (\"b_id\") REFERENCES \"b\" (\"id\")"), "{sql}");
    assert!(sql.contains("FOREIGN KEY (\"parent\") REFERENCES \"tree\" (\"id\")"), "{sql}");
}

/// Found while fixing cycles: the migration indexed no foreign-key column,
/// so SQLite scanned the whole child table for every parent row deleted
/// (40,000 chain rows: 52 s). With the index the delete reads no row by
/// full scan (SQLite's own FULLSCAN_STEP counter of the DELETE statement,
/// whose program holds the foreign-key checks).
#[test]
fn the_migration_indexes_foreign_key_columns_so_deletes_do_not_scan_children() {
    let docs = table("docs", &["id"], &["id"], &[], vec![]);
    let chunks =
        table("chunks", &["id", "doc"], &["id"], &["doc"], vec![fk("chunks_doc", &["doc"], "docs", &["id"])]);
    // A key already led by the column needs no second index.
    let mut led =
        table("led", &["doc", "n"], &["doc", "n"], &[], vec![fk("led_doc", &["doc"], "docs", &["id"])]);
    led.0.spec.name = "led".into();
    let sql = crate::sink::d1::migration::migration_sql(&[docs, chunks, led]).expect("migration");
    assert!(
        sql.contains("CREATE INDEX IF NOT EXISTS \"chunks_doc_fkey_idx\" ON \"chunks\" (\"doc\");"),
        "{sql}"
    );
    assert!(!sql.contains("led_doc_fkey_idx"), "the primary key starts with doc: {sql}");
    let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
    conn.execute_batch(&format!("PRAGMA foreign_keys = ON;\n{sql}")).expect("apply the migration");
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO docs SELECT i FROM n;
         INSERT INTO chunks SELECT id, 1 FROM docs;",
    )
    .expect("rows");
    // Every parent but the first has no child: each delete looks for some.
    let mut st = conn.prepare("DELETE FROM docs WHERE id > 1").expect("prepare");
    st.raw_execute().expect("delete");
    let scanned = st.get_status(rusqlite::StatementStatus::FullscanStep);
    assert!(
        scanned < 10_000,
        "the parent delete scanned {scanned} rows (1,999 parents x 2,000 children without the index)"
    );
}
