//! The Cloudflare side of a query shape, as the service would run it:
//! the Vectorize request(s) its layout calls for, merged by score, then
//! the D1 rows of the answer (post-filters applied to them). Pure parts
//! here ([`plan`], [`merge`], [`d1_admits`]); the requests are sent by
//! the caller through the one API client, so they count in its budget.
//!
//! Layouts (filters are ANDed, Vectorize has no `$or`; cloudflare-docs
//! `vectorize/reference/metadata-filtering.mdx`):
//! - `property`: `{prop: {"$op": value}}` (overlap and contains on an
//!   array property become `$in`, which Vectorize cannot apply to arrays);
//! - `flags`: overlap asks one query per value (`{"tags_api": true}`) and
//!   merges them; contains ANDs the flags in one query;
//! - `namespace`: the query's `namespace`;
//! - `post`: nothing in Vectorize; D1's rows of the answer are filtered.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::config::mapping::VectorMapping;
use crate::config::queries::{FilterForm, FilterOp, QueryFilter, QueryShape};
use crate::verify::parity::Metric;

/// What to ask Vectorize for one query.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub namespace: Option<String>,
    /// One request per filter object (`None`: no filter).
    pub filters: Vec<Option<Value>>,
    /// Filters applied to the answer's D1 rows.
    pub post: Vec<QueryFilter>,
    /// Flag values the layout cannot ask for (no flag property).
    pub unflagged: Vec<String>,
}

/// The requests a query's filter values call for.
pub fn plan(shape: &QueryShape, mapping: &VectorMapping, filter: &Map<String, Value>) -> Plan {
    let mut base = Map::new();
    let mut fanout: Vec<Vec<(String, Value)>> = Vec::new();
    let mut out = Plan { namespace: None, filters: Vec::new(), post: Vec::new(), unflagged: Vec::new() };
    for f in &shape.filters {
        let value = filter.get(&f.column).cloned().unwrap_or(Value::Null);
        let values: Vec<Value> = match &value {
            Value::Array(items) => items.clone(),
            v => vec![v.clone()],
        };
        match f.vectorize {
            FilterForm::Namespace => {
                out.namespace = Some(match &value {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
            }
            FilterForm::Post => out.post.push(f.clone()),
            FilterForm::Property => {
                let (op, v) = match f.op {
                    FilterOp::Eq => ("$eq", value),
                    FilterOp::Ne => ("$ne", value),
                    FilterOp::Lt => ("$lt", value),
                    FilterOp::Lte => ("$lte", value),
                    FilterOp::Gt => ("$gt", value),
                    FilterOp::Gte => ("$gte", value),
                    FilterOp::In | FilterOp::Overlap | FilterOp::Contains => ("$in", Value::Array(values)),
                };
                let slot = base.entry(f.property.clone()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = slot {
                    m.insert(op.into(), v);
                }
            }
            FilterForm::Flags => {
                let flags = mapping.flags.iter().find(|g| g.column == f.column);
                let mut props = Vec::new();
                for v in &values {
                    let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    match flags.filter(|g| g.values.contains(&text)) {
                        Some(g) => props.push((g.property(&text), Value::Bool(true))),
                        None => out.unflagged.push(text),
                    }
                }
                match f.op {
                    FilterOp::Contains => base.extend(props),
                    _ => fanout.push(props),
                }
            }
        }
    }
    let mut maps = vec![base];
    for choices in fanout {
        maps = maps
            .iter()
            .flat_map(|m| {
                choices.iter().map(move |(k, v)| {
                    let mut m = m.clone();
                    m.insert(k.clone(), v.clone());
                    m
                })
            })
            .collect();
    }
    out.filters = maps.into_iter().map(|m| (!m.is_empty()).then_some(Value::Object(m))).collect();
    out
}

/// Every request's matches as one answer, best first (ties by id), each id once.
pub fn merge(metric: Metric, answers: Vec<Vec<(String, f64)>>) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = answers.into_iter().flatten().collect();
    let better = |a: f64, b: f64| match metric {
        Metric::Euclidean => a.total_cmp(&b),
        _ => b.total_cmp(&a),
    };
    all.sort_by(|a, b| better(a.1, b.1).then_with(|| a.0.cmp(&b.0)));
    let mut seen = std::collections::HashSet::new();
    all.retain(|(id, _)| seen.insert(id.clone()));
    all
}

/// A D1 cell as a post-filter reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// Whether a D1 row's value of the filtered column passes the filter
/// (`array`: the column is an array, which D1 holds as JSON text).
pub fn d1_admits(f: &QueryFilter, cell: &Cell, array: bool, value: &Value) -> bool {
    let wanted: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    if array {
        let Cell::Text(t) = cell else { return false };
        let Ok(Value::Array(held)) = serde_json::from_str::<Value>(t) else { return false };
        let has = |w: &Value| held.iter().any(|h| h == w);
        return match f.op {
            FilterOp::Contains => wanted.iter().all(|w| has(w)),
            _ => wanted.iter().any(|w| has(w)),
        };
    }
    let ord = |w: &Value| compare(cell, w);
    match f.op {
        FilterOp::Eq => ord(wanted[0]) == Some(Ordering::Equal),
        FilterOp::Ne => ord(wanted[0]).is_some_and(|o| o != Ordering::Equal),
        FilterOp::In | FilterOp::Overlap | FilterOp::Contains => {
            wanted.iter().any(|w| ord(w) == Some(Ordering::Equal))
        }
        FilterOp::Lt => ord(wanted[0]) == Some(Ordering::Less),
        FilterOp::Lte => ord(wanted[0]).is_some_and(|o| o != Ordering::Greater),
        FilterOp::Gt => ord(wanted[0]) == Some(Ordering::Greater),
        FilterOp::Gte => ord(wanted[0]).is_some_and(|o| o != Ordering::Less),
    }
}

/// A D1 cell against a JSON value: numbers as numbers (booleans are D1's
/// 0 and 1), text as text; NULL and other pairs do not compare.
fn compare(cell: &Cell, v: &Value) -> Option<Ordering> {
    match (cell, v) {
        (Cell::Int(i), Value::Bool(b)) => Some(i.cmp(&i64::from(*b))),
        (Cell::Int(i), Value::Number(n)) => (*i as f64).partial_cmp(&n.as_f64()?),
        (Cell::Real(r), Value::Number(n)) => r.partial_cmp(&n.as_f64()?),
        (Cell::Text(t), Value::String(s)) => Some(t.as_str().cmp(s.as_str())),
        _ => None,
    }
}

/// Describes a filter as both sides run it.
pub fn describe(f: &QueryFilter) -> String {
    let side = match (f.vectorize, f.op) {
        (FilterForm::Flags, FilterOp::Overlap) => "flags (one query per value, merged)".to_string(),
        (FilterForm::Flags, _) => "flags (ANDed in one query)".to_string(),
        (FilterForm::Property, _) => format!("metadata property `{}`", f.property),
        (FilterForm::Namespace, _) => "namespace".to_string(),
        (FilterForm::Post, _) => "post-filter on D1 rows over topK".to_string(),
    };
    format!("{} {} -> {side}", f.column, f.op.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::project::OnInvalid;
    use crate::config::vector_metadata::FlagColumn;
    use serde_json::json;

    fn f(column: &str, op: FilterOp, vectorize: FilterForm) -> QueryFilter {
        QueryFilter { column: column.into(), op, vectorize, property: column.into() }
    }

    fn shape(filters: Vec<QueryFilter>) -> QueryShape {
        QueryShape {
            setting: "q".into(),
            name: "q".into(),
            schema: "public".into(),
            table: "chunks".into(),
            k: 3,
            top_k: 3,
            context: vec![],
            filters,
        }
    }

    fn mapping() -> VectorMapping {
        VectorMapping {
            vector: "embedding".into(),
            id: "id".into(),
            namespace: Some("org".into()),
            metadata: vec!["lang".into()],
            json: Default::default(),
            flags: vec![FlagColumn {
                column: "tags".into(),
                values: vec!["a".into(), "b".into()],
                separator: "_".into(),
            }],
            dims: None,
            on_invalid: OnInvalid::Fail,
        }
    }

    #[test]
    fn each_layout_becomes_its_requests() {
        let s = shape(vec![
            f("tags", FilterOp::Overlap, FilterForm::Flags),
            f("lang", FilterOp::Eq, FilterForm::Property),
            f("org", FilterOp::Eq, FilterForm::Namespace),
        ]);
        let filter = json!({"tags": ["a", "b", "zzz"], "lang": "en", "org": 7});
        let p = plan(&s, &mapping(), filter.as_object().expect("object"));
        assert_eq!(p.namespace.as_deref(), Some("7"));
        assert_eq!(p.unflagged, ["zzz"]);
        assert_eq!(
            p.filters,
            [
                Some(json!({"lang": {"$eq": "en"}, "tags_a": true})),
                Some(json!({"lang": {"$eq": "en"}, "tags_b": true}))
            ]
        );
        let s = shape(vec![
            f("tags", FilterOp::Contains, FilterForm::Flags),
            f("tags", FilterOp::Overlap, FilterForm::Post),
        ]);
        let p = plan(&s, &mapping(), json!({"tags": ["a", "b"]}).as_object().expect("object"));
        assert_eq!(p.filters, [Some(json!({"tags_a": true, "tags_b": true}))]);
        assert_eq!(p.post.len(), 1);
        let naive = shape(vec![f("tags", FilterOp::Overlap, FilterForm::Property)]);
        let p = plan(&naive, &mapping(), json!({"tags": ["a"]}).as_object().expect("object"));
        assert_eq!(p.filters, [Some(json!({"tags": {"$in": ["a"]}}))]);
        let none = plan(&shape(vec![]), &mapping(), &Map::new());
        assert_eq!(none.filters, [None]);
    }

    #[test]
    fn merged_answers_keep_the_best_first_once() {
        let a = vec![("x".to_string(), 0.9), ("y".to_string(), 0.5)];
        let b = vec![("z".to_string(), 0.7), ("x".to_string(), 0.9)];
        let ids: Vec<String> =
            merge(Metric::Cosine, vec![a.clone(), b.clone()]).into_iter().map(|m| m.0).collect();
        assert_eq!(ids, ["x", "z", "y"]);
        let ids: Vec<String> = merge(Metric::Euclidean, vec![a, b]).into_iter().map(|m| m.0).collect();
        assert_eq!(ids, ["y", "z", "x"]);
    }

    #[test]
    fn post_filters_read_d1_values() {
        let tags = f("tags", FilterOp::Overlap, FilterForm::Post);
        let held = Cell::Text(r#"["a","b"]"#.into());
        assert!(d1_admits(&tags, &held, true, &json!(["b", "c"])));
        assert!(!d1_admits(&tags, &held, true, &json!(["c"])));
        let all = f("tags", FilterOp::Contains, FilterForm::Post);
        assert!(d1_admits(&all, &held, true, &json!(["a", "b"])));
        assert!(!d1_admits(&all, &held, true, &json!(["a", "c"])));
        let lt = f("n", FilterOp::Lt, FilterForm::Post);
        assert!(d1_admits(&lt, &Cell::Int(3), false, &json!(4)));
        assert!(!d1_admits(&lt, &Cell::Null, false, &json!(4)));
        let eq = f("ok", FilterOp::Eq, FilterForm::Post);
        assert!(d1_admits(&eq, &Cell::Int(1), false, &json!(true)));
        assert!(d1_admits(&eq, &Cell::Text("en".into()), false, &json!("en")));
    }
}
