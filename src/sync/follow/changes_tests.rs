//! Merging per key in commit order, and the shape checks on Relation
//! messages, on hand-made changes.

use super::*;
use crate::batch::ColumnSpec;
use crate::source::wal::pgoutput::RelColumn;
use crate::typemap::{ColumnType, Kind};

fn t(s: &str) -> Value {
    Value::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn expected() -> Expected {
    let col = |name: &str| ColumnSpec {
        name: name.into(),
        pg_type: "text".into(),
        ty: ColumnType { kind: Kind::Text, array: false, dims: None, decimal: None },
        nullable: true,
        cast: None,
    };
    Expected {
        spec: TableSpec {
            schema: "public".into(),
            name: "chunks".into(),
            columns: vec![col("id"), col("body")],
            primary_key: vec!["id".into()],
        },
        // `deleted_at` is not read (not in D1) but is the soft-delete column.
        columns: vec![("id".into(), 25), ("deleted_at".into(), 1184), ("body".into(), 25)],
        soft: Some("deleted_at".into()),
    }
}

fn relation(cols: &[(&str, u32)]) -> Relation {
    Relation {
        oid: 42,
        schema: "public".into(),
        name: "chunks".into(),
        replica_identity: b'd',
        columns: cols
            .iter()
            .map(|(n, ty)| RelColumn { key: *n == "id", name: n.to_string(), type_oid: *ty, typmod: -1 })
            .collect(),
    }
}

fn relations() -> Relations {
    let mut r = Relations::new(vec![expected()]);
    r.relation(&relation(&[("id", 25), ("deleted_at", 1184), ("body", 25)])).expect("same shape");
    r
}

fn key(s: &str) -> Key {
    vec![Bytes::copy_from_slice(s.as_bytes())]
}

#[test]
fn an_update_that_leaves_a_toasted_value_out_keeps_the_earlier_change_of_that_row() {
    let rel = relations();
    let mut p = Pending::default();
    p.take(&rel, &Change::Insert { rel: 42, new: vec![t("1"), Value::Null, t("long body")] })
        .expect("insert");
    p.take(
        &rel,
        &Change::Update { rel: 42, old: None, new: vec![t("1"), t("2026-01-01"), Value::Unchanged] },
    )
    .expect("update");
    assert_eq!(
        p.tables[&0][&key("1")],
        Op::Upsert { values: vec![t("1"), t("long body")], soft: Some(t("2026-01-01")) }
    );
    // Without an earlier change the value stays unsent: read from the table.
    let mut q = Pending::default();
    q.take(&rel, &Change::Update { rel: 42, old: None, new: vec![t("2"), Value::Null, Value::Unchanged] })
        .expect("update");
    assert_eq!(
        q.tables[&0][&key("2")],
        Op::Upsert { values: vec![t("2"), Value::Unchanged], soft: Some(Value::Null) }
    );
}

#[test]
fn a_key_change_deletes_the_old_key_and_the_last_operation_wins_across_transactions() {
    let rel = relations();
    let mut first = Pending::default();
    first
        .take(
            &rel,
            &Change::Update {
                rel: 42,
                old: Some(Old::Key(vec![t("1"), Value::Null, Value::Null])),
                new: vec![t("9"), Value::Null, t("b")],
            },
        )
        .expect("key change");
    assert_eq!(first.tables[&0][&key("1")], Op::Delete);
    let mut second = Pending::default();
    second
        .take(&rel, &Change::Delete { rel: 42, old: Old::Key(vec![t("9"), Value::Null, Value::Null]) })
        .expect("delete");
    second
        .take(&rel, &Change::Insert { rel: 42, new: vec![t("1"), Value::Null, t("again")] })
        .expect("insert");
    first.merge(second);
    assert_eq!(first.tables[&0][&key("9")], Op::Delete);
    assert_eq!(
        first.tables[&0][&key("1")],
        Op::Upsert { values: vec![t("1"), t("again")], soft: Some(Value::Null) }
    );
    assert_eq!(first.changes, 4, "a key change counts its delete and its upsert");
    // A relation that is not followed is passed over.
    first.take(&rel, &Change::Insert { rel: 7, new: vec![t("x")] }).expect("other table");
    assert_eq!(first.changes, 4);
}

#[test]
fn a_changed_shape_stops_with_the_table_and_column_named() {
    let mut r = Relations::new(vec![expected()]);
    let added = r.relation(&relation(&[("id", 25), ("deleted_at", 1184), ("body", 25), ("lang", 25)]));
    let e = added.expect_err("added column").to_string();
    assert!(e.contains("public.chunks") && e.contains("lang") && e.contains("ADD COLUMN"), "{e}");
    let retyped = r.relation(&relation(&[("id", 25), ("deleted_at", 1184), ("body", 1043)]));
    assert!(retyped.expect_err("retyped").to_string().contains("body changed its type"));
    let dropped = r.relation(&relation(&[("id", 25), ("deleted_at", 1184)]));
    assert!(dropped.expect_err("dropped").to_string().contains("body was dropped"));
    // A column that is not read may go away.
    r.relation(&relation(&[("id", 25), ("body", 25)])).expect("unread column dropped");
}
