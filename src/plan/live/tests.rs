//! Unit tests of the live-row conditions: what they are for tables with and
//! without soft deletes, along foreign keys, trees and cycles.

use super::*;
use crate::config::project::TableMapping;
use crate::source::constraints::ForeignKey;
use crate::typemap::ColumnType;

pub(crate) fn table(name: &str, cols: &[(&str, Kind)], fks: &[(&str, &str, &str)]) -> TableInfo {
    let columns = cols
        .iter()
        .map(|(c, k)| ColumnSpec {
            name: c.to_string(),
            pg_type: String::new(),
            ty: ColumnType::scalar(*k),
            nullable: true,
            cast: None,
        })
        .collect();
    TableInfo {
        spec: TableSpec {
            schema: "public".into(),
            name: name.into(),
            columns,
            primary_key: vec!["id".into()],
        },
        row_estimate: None,
        total_bytes: 0,
        constraints: vec![],
        indexes: vec![],
        ddl: String::new(),
        foreign_keys: fks
            .iter()
            .map(|(col, parent, key)| ForeignKey {
                name: format!("{name}_{col}_fkey"),
                columns: vec![col.to_string()],
                ref_schema: "public".into(),
                ref_table: parent.to_string(),
                ref_columns: vec![key.to_string()],
                on_delete: "NO ACTION".into(),
                on_update: "NO ACTION".into(),
                on_delete_columns: vec![],
            })
            .collect(),
        unique_keys: vec![],
        btree_indexes: vec![],
        skipped_indexes: vec![],
        unsupported: vec![],
    }
}

pub(crate) fn project(soft: &[(&str, &str)]) -> Project {
    Project {
        tables: soft
            .iter()
            .map(|(t, c)| TableMapping {
                schema: "public".into(),
                table: t.to_string(),
                soft_delete: Some(c.to_string()),
                ..TableMapping::default()
            })
            .collect(),
        ..Project::default()
    }
}

fn docs_chunks() -> Vec<TableInfo> {
    vec![
        table("docs", &[("id", Kind::Int8), ("gone", Kind::Bool)], &[]),
        table("chunks", &[("id", Kind::Int8), ("doc_id", Kind::Int8)], &[("doc_id", "docs", "id")]),
    ]
}

#[test]
fn without_soft_deletes_every_row_is_live_and_changes_are_not_widened() {
    let infos = docs_chunks();
    let live = LiveRows::new(&Project::default(), &infos.iter().collect::<Vec<_>>());
    for t in &infos {
        assert_eq!(live.live(&t.spec), None);
        assert_eq!(live.hidden_by_parent(&t.spec), None);
        assert_eq!(live.touched(&t.spec, Some("changed")).as_deref(), Some("changed"));
        assert!(!live.cut_short(&t.spec));
    }
    assert_eq!(live.touched(&infos[1].spec, None), None, "no horizon: every row");
}

#[test]
fn a_parent_soft_delete_reaches_the_children_and_a_boolean_column_is_tested_for_true() {
    let infos = docs_chunks();
    let live = LiveRows::new(&project(&[("docs", "gone")]), &infos.iter().collect::<Vec<_>>());
    assert_eq!(live.live(&infos[0].spec).as_deref(), Some("\"gone\" IS NOT TRUE"));
    assert_eq!(live.soft_deleted(&infos[0].spec).as_deref(), Some("\"gone\" IS TRUE"));
    let chunks = &infos[1].spec;
    let exists = "EXISTS (SELECT 1 FROM \"public\".\"docs\" pgflare_r1 WHERE pgflare_r1.\"id\" = \
                  \"public\".\"chunks\".\"doc_id\" AND (pgflare_r1.\"gone\" IS TRUE))";
    assert_eq!(live.live(chunks), Some(format!("NOT {exists}")));
    assert_eq!(live.hidden_by_parent(chunks).as_deref(), Some(exists));
    assert_eq!(live.soft_deleted(chunks), None);
    // A change of the parent (only a table with a soft-delete column
    // can hide) may bring the children back.
    assert_eq!(
        live.touched(chunks, Some("c")).as_deref(),
        Some(
            "(c) OR (EXISTS (SELECT 1 FROM \"public\".\"docs\" pgflare_r1 WHERE pgflare_r1.\"id\" = \
             \"public\".\"chunks\".\"doc_id\" AND (c)))"
        )
    );
}

#[test]
fn only_foreign_keys_to_tables_that_can_hide_rows_cascade() {
    // orgs (no soft delete) <- docs (soft) <- chunks: an org's edit does
    // not re-read its documents; chunks follow docs, not orgs.
    let infos = [
        table("orgs", &[("id", Kind::Int8)], &[]),
        table(
            "docs",
            &[("id", Kind::Int8), ("org", Kind::Int8), ("del", Kind::Timestamptz)],
            &[("org", "orgs", "id")],
        ),
        table("chunks", &[("id", Kind::Int8), ("doc", Kind::Int8)], &[("doc", "docs", "id")]),
    ];
    let live = LiveRows::new(&project(&[("docs", "del")]), &infos.iter().collect::<Vec<_>>());
    assert_eq!(live.live(&infos[0].spec), None);
    assert_eq!(live.live(&infos[1].spec).as_deref(), Some("\"del\" IS NULL"));
    assert_eq!(live.touched(&infos[1].spec, Some("c")).as_deref(), Some("c"));
    let chunks = live.live(&infos[2].spec).expect("chunks can be hidden");
    assert!(chunks.contains("\"docs\"") && !chunks.contains("\"orgs\""), "{chunks}");
    // Every foreign key is checked for parents that are not written.
    assert_eq!(live.orphans(&infos[1].spec).len(), 1);
}

#[test]
fn a_self_reference_walks_up_the_tree_and_a_cycle_of_tables_is_cut_after_one_turn() {
    let tree = [table(
        "folders",
        &[("id", Kind::Int8), ("parent", Kind::Int8), ("del", Kind::Timestamptz)],
        &[("parent", "folders", "id")],
    )];
    let live = LiveRows::new(&project(&[("folders", "del")]), &tree.iter().collect::<Vec<_>>());
    let cond = live.live(&tree[0].spec).expect("a condition");
    assert!(
        cond.contains("WITH RECURSIVE") && cond.starts_with("(\"del\" IS NULL) AND (NOT EXISTS"),
        "{cond}"
    );
    assert!(!live.cut_short(&tree[0].spec));

    let cycle = [
        table("a", &[("id", Kind::Int8), ("b", Kind::Int8), ("del", Kind::Timestamptz)], &[("b", "b", "id")]),
        table("b", &[("id", Kind::Int8), ("a", Kind::Int8)], &[("a", "a", "id")]),
    ];
    let live = LiveRows::new(&project(&[("a", "del")]), &cycle.iter().collect::<Vec<_>>());
    assert!(live.cut_short(&cycle[0].spec) && live.cut_short(&cycle[1].spec));
    assert!(live.live(&cycle[1].spec).is_some());
}
