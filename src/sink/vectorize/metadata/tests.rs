//! The metadata writer on the shapes RAG libraries store (LangChain's
//! `SupabaseVectorStore`, LlamaIndex's vecs tables, a multi-tenant ACL),
//! with and without a mapping; and properties of spreading any JSON:
//! keys valid, nothing nested, deterministic, every leaf either written
//! or counted as left out, the whole under 10 KiB.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::super::flatten::{fit_budget, Entry, Omission, Spread};
use super::{MetadataWriter, Refusal};
use crate::batch::{ColumnSpec, TableSpec};
use crate::config::json_path::JsonPath;
use crate::config::vector_metadata::{JsonMetadata, PathProperty};
use crate::typemap::{ColumnType, Kind, MetadataForm};

fn spec() -> TableSpec {
    let col = |name: &str, kind: Kind| ColumnSpec {
        name: name.into(),
        pg_type: format!("{kind:?}").to_lowercase(),
        ty: ColumnType::scalar(kind),
        nullable: true,
        cast: None,
    };
    TableSpec {
        schema: "public".into(),
        name: "documents".into(),
        columns: vec![col("id", Kind::Text), col("metadata", Kind::Jsonb)],
        primary_key: vec!["id".into()],
    }
}

/// The metadata of one row whose `metadata` column holds `doc`.
fn write(whole: &[&str], json: &JsonMetadata, doc: &Value) -> (Result<Value, Refusal>, Vec<Omission>) {
    let spec = spec();
    let batch = RecordBatch::try_new(
        spec.arrow_schema(),
        vec![
            Arc::new(StringArray::from(vec!["row-1"])) as ArrayRef,
            Arc::new(StringArray::from(vec![doc.to_string()])),
        ],
    )
    .expect("batch");
    let find = |c: &str| Ok(spec.columns.iter().position(|x| x.name == c).expect("column"));
    let whole: Vec<String> = whole.iter().map(|s| s.to_string()).collect();
    let w = MetadataWriter::new(&spec, &whole, json, &[], &find).expect("writer");
    let (mut out, mut omitted) = (String::new(), Vec::new());
    let r = w.write(&batch, 0, &mut out, &mut omitted);
    (r.map(|()| serde_json::from_str(&out).expect("the metadata is JSON")), omitted)
}

fn path(name: &str, p: &str, ty: Option<MetadataForm>) -> PathProperty {
    PathProperty { name: name.into(), path: JsonPath::parse(p).expect("path"), ty }
}

fn langchain() -> Value {
    json!({"source": "docs/a.pdf",
           "pdf": {"version": "1.10.100", "info": {"Title": "Annual report", "Producer": "x"}, "totalPages": 12},
           "loc": {"pageNumber": 3, "lines": {"from": 1, "to": 40}}})
}

fn llamaindex(node_content_bytes: usize) -> Value {
    let node = json!({"id_": "n1", "text": "t".repeat(node_content_bytes), "metadata": {}}).to_string();
    json!({"_node_content": node, "_node_type": "TextNode", "document_id": "d-1", "doc_id": "d-1",
           "ref_doc_id": "d-1", "file_name": "a.pdf", "page_label": "3"})
}

#[test]
fn a_whole_langchain_column_is_refused_naming_the_path() {
    let (r, _) = write(&["metadata"], &JsonMetadata::default(), &langchain());
    let e = r.expect_err("nested three levels");
    assert_eq!((e.column.as_str(), e.path.as_deref()), ("metadata", Some("metadata.loc")));
    assert!(e.reason.contains("nests one level only"), "{}", e.reason);
}

#[test]
fn langchain_paths_become_typed_top_level_properties() {
    let json = JsonMetadata {
        paths: vec![
            path("page", "metadata.loc.pageNumber", Some(MetadataForm::Number)),
            path("source", "metadata.source", Some(MetadataForm::String)),
            path("title", "metadata.pdf.info.Title", None),
        ],
        ..JsonMetadata::default()
    };
    let (r, omitted) = write(&[], &json, &langchain());
    assert_eq!(r.expect("fits"), json!({"page": 3, "source": "docs/a.pdf", "title": "Annual report"}));
    assert!(omitted.is_empty(), "{omitted:?}");
    // A value of another type than declared is left out and counted.
    let (r, omitted) = write(&[], &json, &json!({"source": 7, "loc": {"pageNumber": "3"}}));
    assert_eq!(r.expect("fits"), json!({}));
    assert_eq!(omitted.len(), 2, "{omitted:?}");
    assert_eq!(omitted[0].path, "metadata.loc.pageNumber");
    assert_eq!(omitted[0].reason, "is a JSON string; `page` is declared number");
    // An object at a path is spread under the property's name.
    let loc = JsonMetadata { paths: vec![path("loc", "metadata.loc", None)], ..JsonMetadata::default() };
    let (r, _) = write(&[], &loc, &langchain());
    assert_eq!(r.expect("fits"), json!({"loc_pageNumber": 3, "loc_lines_from": 1, "loc_lines_to": 40}));
}

#[test]
fn a_flattened_langchain_column_leaves_out_what_the_config_omits_and_counts_it() {
    let json = JsonMetadata {
        flatten: vec!["metadata".into()],
        omit: vec![JsonPath::parse("metadata.pdf.info").expect("p")],
        ..JsonMetadata::default()
    };
    let (r, omitted) = write(&[], &json, &langchain());
    assert_eq!(
        r.expect("fits"),
        json!({"source": "docs/a.pdf", "pdf_version": "1.10.100", "pdf_totalPages": 12,
               "loc_pageNumber": 3, "loc_lines_from": 1, "loc_lines_to": 40})
    );
    assert_eq!(
        omitted,
        [Omission { path: "metadata.pdf.info".into(), reason: "left out by vector_metadata_omit".into() }]
    );
    // Another separator.
    let dashed = JsonMetadata { separator: "__".into(), ..json };
    let (r, _) = write(&[], &dashed, &langchain());
    assert_eq!(r.expect("fits")["loc__lines__from"], 1);
}

#[test]
fn llamaindex_node_content_is_omitted_or_left_out_for_size() {
    let keys = json!({"_node_type": "TextNode", "document_id": "d-1", "doc_id": "d-1", "ref_doc_id": "d-1",
                      "file_name": "a.pdf", "page_label": "3"});
    let omit = JsonMetadata {
        flatten: vec!["metadata".into()],
        omit: vec![JsonPath::parse("metadata._node_content").expect("p")],
        ..JsonMetadata::default()
    };
    let (r, omitted) = write(&[], &omit, &llamaindex(4000));
    assert_eq!(r.expect("fits"), keys);
    assert_eq!(omitted.len(), 1);
    // Without the omit: a small node content fits, a big one is left out
    // for the 10 KiB budget (the largest spread value first), counted.
    let spread = JsonMetadata { flatten: vec!["metadata".into()], ..JsonMetadata::default() };
    let (r, omitted) = write(&[], &spread, &llamaindex(2000));
    assert!(r.expect("fits")["_node_content"].is_string());
    assert!(omitted.is_empty());
    let (r, omitted) = write(&[], &spread, &llamaindex(12_000));
    assert_eq!(r.expect("fits"), keys);
    assert_eq!(omitted[0].path, "metadata._node_content");
    assert!(omitted[0].reason.contains("10 KiB metadata budget"), "{}", omitted[0].reason);
    // The same content through an explicit path refuses the vector, naming the path.
    let explicit = JsonMetadata {
        paths: vec![path("node", "metadata._node_content", Some(MetadataForm::String))],
        ..JsonMetadata::default()
    };
    let e = write(&[], &explicit, &llamaindex(12_000)).0.expect_err("too big");
    assert_eq!((e.column.as_str(), e.path.as_deref()), ("metadata", Some("metadata._node_content")));
    assert!(e.reason.contains("Vectorize allows 10240 per vector"), "{}", e.reason);
    // A whole column over the limit names its heaviest member.
    let e = write(&["metadata"], &JsonMetadata::default(), &llamaindex(12_000)).0.expect_err("too big");
    assert_eq!(e.path.as_deref(), Some("metadata._node_content"));
}

#[test]
fn multi_tenant_arrays_of_strings_stay_and_other_arrays_nulls_and_bad_keys_are_counted() {
    let spread = JsonMetadata { flatten: vec!["metadata".into()], ..JsonMetadata::default() };
    let doc = json!({"tenant_id": "t-9", "tags": ["a", "b"], "acl": {"groups": ["g1", "g2"], "ids": [1, 2]},
                     "deleted": null, "a.b": 1, "$x": true, "": 5});
    let (r, omitted) = write(&[], &spread, &doc);
    assert_eq!(r.expect("fits"), json!({"tenant_id": "t-9", "tags": ["a", "b"], "acl_groups": ["g1", "g2"]}));
    let why: Vec<(String, String)> = omitted.into_iter().map(|o| (o.path, o.reason)).collect();
    let find = |p: &str| why.iter().find(|(x, _)| x == p).map(|(_, r)| r.clone()).unwrap_or_default();
    assert!(find("metadata.acl.ids").contains("array holding a number"), "{why:?}");
    assert!(find("metadata.deleted").contains("null"), "{why:?}");
    assert!(find("metadata.\"a.b\"").contains("may not contain `.`"), "{why:?}");
    assert!(find("metadata.$x").contains("may not start with `$`"), "{why:?}");
    assert!(find("metadata.\"\"").contains("may not be empty"), "{why:?}");
    assert_eq!(why.len(), 5, "{why:?}");
    // Two JSON paths that join to the same key: the first (by key order) wins.
    let (r, omitted) = write(&[], &spread, &json!({"a": {"b": 1}, "a_b": 2}));
    assert_eq!(r.expect("fits"), json!({"a_b": 1}));
    assert_eq!(omitted[0].path, "metadata.a_b");
    // Not an object: nothing to spread, counted.
    let (r, omitted) = write(&[], &spread, &json!(["x"]));
    assert_eq!((r.expect("empty"), omitted.len()), (json!({}), 1));
}

/// Any JSON: objects nesting up to 4 levels, with keys Vectorize refuses.
fn any_json() -> impl Strategy<Value = Value> {
    let key =
        prop_oneof!["[a-z]{1,6}", Just(String::new()), "[a-z]{0,3}[.$\"][a-z]{0,3}", Just("_".to_string())];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "\\PC{0,40}".prop_map(Value::String),
        proptest::collection::vec("[a-z]{0,5}", 0..4).prop_map(|v| json!(v)),
        proptest::collection::vec(any::<u8>(), 1..3).prop_map(|v| json!(v)),
        (0usize..3000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        proptest::collection::btree_map(key.clone(), inner, 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaves).sum(),
        _ => 1,
    }
}

proptest! {
    // Spreading any object: every key is a valid top-level metadata key,
    // no value is an object (nothing nested), every leaf is written or
    // counted as left out, and the result is the same every time.
    #[test]
    fn spreading_gives_valid_flat_keys_and_accounts_for_every_leaf(doc in any_json(), sep in prop_oneof![Just("_"), Just("__"), Just("-")]) {
        let spread = Spread { separator: sep, omit: &[], mapped: &[] };
        let (mut out, mut omitted) = (Vec::new(), Vec::new());
        spread.add("", &JsonPath::column("m"), &doc, &mut out, &mut omitted);
        for e in &out {
            let key: String = serde_json::from_str(&e.key).expect("quoted key");
            prop_assert!(crate::cloudflare::limits::check_metadata_key(&key).is_ok(), "{key:?}");
            let v: Value = serde_json::from_str(&e.text).expect("JSON value");
            prop_assert!(!v.is_object() && !v.is_null(), "{v}");
            if let Value::Array(items) = &v {
                prop_assert!(items.iter().all(Value::is_string));
            }
        }
        let expected = if doc.is_object() { leaves(&doc) } else { 1 };
        prop_assert_eq!(out.len() + omitted.len(), expected);
        let (mut again, mut omitted_again) = (Vec::new(), Vec::new());
        spread.add("", &JsonPath::column("m"), &doc, &mut again, &mut omitted_again);
        prop_assert_eq!(&out, &again);
        prop_assert_eq!(&omitted, &omitted_again);
    }

    // The budget: what stays fits 10 KiB, what goes is counted, largest first.
    #[test]
    fn the_budget_keeps_metadata_under_10_kib(doc in any_json()) {
        let spread = Spread { separator: "_", omit: &[], mapped: &[] };
        let (mut out, mut omitted) = (Vec::new(), Vec::new());
        spread.add("", &JsonPath::column("m"), &doc, &mut out, &mut omitted);
        let before = out.len();
        let dropped_before = omitted.len();
        let kept_max = out.iter().map(Entry::size).max();
        prop_assert!(fit_budget(&[], &mut out, 10_240, &mut omitted).is_ok());
        let text = format!("{{{}}}", out.iter().map(|e| format!("{}:{}", e.key, e.text)).collect::<Vec<_>>().join(","));
        prop_assert!(text.len() <= 10_240, "{}", text.len());
        prop_assert_eq!(out.len() + (omitted.len() - dropped_before), before);
        if omitted.len() > dropped_before {
            // Whatever was dropped was at least as large as what stayed.
            let stayed = out.iter().map(Entry::size).max().unwrap_or(0);
            prop_assert!(kept_max.unwrap_or(0) >= stayed);
        }
        // The writer's own output is the same object.
        let mut doc_obj = serde_json::Map::new();
        for e in &out {
            doc_obj.insert(serde_json::from_str(&e.key).expect("key"), serde_json::from_str(&e.text).expect("v"));
        }
        prop_assert_eq!(serde_json::from_str::<Value>(&text).expect("object"), Value::Object(doc_obj));
    }

    // The whole writer, spreading a column: valid JSON under 10 KiB, flat, deterministic.
    #[test]
    fn the_writer_spreads_any_json_column_into_flat_metadata(doc in any_json()) {
        let json = JsonMetadata { flatten: vec!["metadata".into()], ..JsonMetadata::default() };
        let (r, omitted) = write(&[], &json, &doc);
        let m = r.expect("spreading never refuses");
        let text = m.to_string();
        prop_assert!(text.len() <= 10_240);
        prop_assert!(m.as_object().expect("object").values().all(|v| !v.is_object()));
        let (again, omitted_again) = write(&[], &json, &doc);
        prop_assert_eq!(again.expect("same"), m);
        prop_assert_eq!(omitted, omitted_again);
    }
}

/// `vector_metadata_flags`: a `true` property for each flagged value the
/// row's array holds, nothing for the others (nor for a NULL array).
#[test]
fn flags_mark_the_listed_values_a_row_holds() {
    use crate::config::vector_metadata::FlagColumn;
    use arrow::array::{ListBuilder, StringBuilder};
    let mut spec = spec();
    spec.columns[1] = ColumnSpec {
        name: "tags".into(),
        pg_type: "text[]".into(),
        ty: ColumnType { array: true, ..ColumnType::scalar(Kind::Text) },
        nullable: true,
        cast: None,
    };
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.values().append_value("billing");
    tags.values().append_value("not-flagged");
    tags.append(true);
    tags.append(false);
    let batch = RecordBatch::try_new(
        spec.arrow_schema(),
        vec![Arc::new(StringArray::from(vec!["r1", "r2"])) as ArrayRef, Arc::new(tags.finish())],
    )
    .expect("batch");
    let flags = [FlagColumn {
        column: "tags".into(),
        values: vec!["api".into(), "billing".into()],
        separator: "_".into(),
    }];
    let find = |c: &str| Ok(spec.columns.iter().position(|x| x.name == c).expect("column"));
    let w = MetadataWriter::new(&spec, &[], &JsonMetadata::default(), &flags, &find).expect("writer");
    let mut rows = Vec::new();
    for row in 0..2 {
        let (mut out, mut omitted) = (String::new(), Vec::new());
        w.write(&batch, row, &mut out, &mut omitted).expect("written");
        rows.push(serde_json::from_str::<Value>(&out).expect("json"));
    }
    assert_eq!(rows, [json!({"tags_billing": true}), json!({})]);
    assert!(!w.is_empty(), "flags alone are metadata");
}
