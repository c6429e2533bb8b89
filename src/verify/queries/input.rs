//! The query vectors a shape is run with: the service's real query
//! embeddings from `--query-file` (NDJSON: `query`, `id`, `vector`,
//! `filter`), or, without one, vectors sampled from the table with filter
//! values taken from the sampled row itself (so every sampled query has
//! at least one admitted row: its own).

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::queries::{FilterForm, FilterOp, QueryShape};
use crate::config::vector_metadata::FlagColumn;
use crate::error::{Error, Result};

/// One query to run: which shape, its vector and its filter values.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryVec {
    pub shape: usize,
    pub id: String,
    pub vector: Vec<f32>,
    /// Filter values by column (a list for overlap, contains and in).
    pub filter: Map<String, Value>,
}

/// Reads `path`: one JSON object per line; blank lines are skipped. Every
/// error names the line.
pub fn read_query_file(path: &Path, shapes: &[QueryShape]) -> Result<Vec<QueryVec>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        out.push(parse_line(line, shapes).map_err(|m| Error::Config { setting: at, message: m })?);
    }
    if out.is_empty() {
        return Err(Error::Config {
            setting: path.display().to_string(),
            message: "holds no query (one JSON object per line: {\"query\", \"vector\", \"filter\"})".into(),
        });
    }
    Ok(out)
}

fn parse_line(line: &str, shapes: &[QueryShape]) -> std::result::Result<QueryVec, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(o) = v else { return Err("a line must be a JSON object".into()) };
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "query" | "id" | "vector" | "filter")) {
        return Err(format!("unknown key `{k}` (query, id, vector, filter)"));
    }
    let shape = match o.get("query") {
        Some(Value::String(name)) => shapes.iter().position(|s| &s.name == name).ok_or_else(|| {
            format!(
                "`{name}` is not a [[queries]] name ({})",
                shapes.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?,
        Some(_) => return Err("`query` must be the name of a [[queries]] entry".into()),
        None if shapes.len() == 1 => 0,
        None => {
            return Err("name the shape: \"query\": \"...\" (pgflare.toml has several [[queries]])".into())
        }
    };
    let vector: Vec<f32> = match o.get("vector") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|x| x.as_f64().filter(|f| f.is_finite()).map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or("`vector` must hold finite numbers only")?,
        _ => return Err("`vector` must be a non-empty array of numbers".into()),
    };
    let filter = match o.get("filter") {
        None => Map::new(),
        Some(Value::Object(f)) => f.clone(),
        Some(_) => return Err("`filter` must be an object of values by column".into()),
    };
    let s = &shapes[shape];
    check_filter(s, &filter)?;
    let id = match o.get("id") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("`id` must be a string or a number".into()),
    };
    Ok(QueryVec { shape, id, vector, filter })
}

/// Every filter of the shape has a value of the right form, and no value
/// is given for a column the shape does not filter on.
pub fn check_filter(s: &QueryShape, filter: &Map<String, Value>) -> std::result::Result<(), String> {
    for f in &s.filters {
        match filter.get(&f.column) {
            None | Some(Value::Null) => {
                return Err(format!("`filter` needs a value for `{}` (query {})", f.column, s.name))
            }
            Some(Value::Array(_)) if !f.op.takes_list() => {
                return Err(format!(
                    "`{}` is filtered with {}: give one value, not a list",
                    f.column,
                    f.op.as_str()
                ))
            }
            Some(v) if f.op.takes_list() && !v.is_array() => {
                return Err(format!(
                    "`{}` is filtered with {}: give a list of values",
                    f.column,
                    f.op.as_str()
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(k) = filter.keys().find(|k| !s.filters.iter().any(|f| &f.column == *k)) {
        return Err(format!("`{k}` is not a filter column of query {}", s.name));
    }
    Ok(())
}

/// Filter values taken from a sampled row (its columns as JSON, by
/// `to_jsonb`): the row's own value for scalar operators, its first
/// element for overlap / contains / in (for a `flags` filter, its first
/// flagged element: a service asks only for values that have a flag).
/// `None` when the row has no usable value (NULL, an empty array, no
/// flagged element), so it cannot stand for a query.
pub fn sampled_filter(
    s: &QueryShape,
    row: &Map<String, Value>,
    flags: &[FlagColumn],
) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for f in &s.filters {
        let v = row.get(&f.column)?;
        let flagged = |x: &Value| match f.vectorize {
            FilterForm::Flags => flags
                .iter()
                .find(|g| g.column == f.column)
                .is_some_and(|g| x.as_str().is_some_and(|x| g.values.iter().any(|v| v == x))),
            _ => !x.is_null(),
        };
        let value = match (f.op, v) {
            (_, Value::Null) => return None,
            (FilterOp::Overlap | FilterOp::Contains, Value::Array(items)) => {
                Value::Array(vec![items.iter().find(|x| flagged(x))?.clone()])
            }
            (FilterOp::In, v) => Value::Array(vec![v.clone()]),
            (_, v) => v.clone(),
        };
        out.insert(f.column.clone(), value);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::queries::QueryFilter;
    use serde_json::json;

    fn shape() -> QueryShape {
        QueryShape {
            setting: "q".into(),
            name: "tagged".into(),
            schema: "public".into(),
            table: "chunks".into(),
            k: 5,
            top_k: 5,
            context: vec!["content".into()],
            filters: vec![
                QueryFilter {
                    column: "tags".into(),
                    op: FilterOp::Overlap,
                    vectorize: FilterForm::Flags,
                    property: "tags".into(),
                },
                QueryFilter {
                    column: "lang".into(),
                    op: FilterOp::Eq,
                    vectorize: FilterForm::Property,
                    property: "lang".into(),
                },
            ],
        }
    }

    #[test]
    fn query_lines_parse_and_their_errors_say_what_to_give() {
        let s = [shape()];
        let q = parse_line(r#"{"id":"q1","vector":[1,0.5],"filter":{"tags":["api"],"lang":"en"}}"#, &s)
            .expect("ok");
        assert_eq!((q.shape, q.id.as_str(), q.vector.as_slice()), (0, "q1", &[1.0f32, 0.5][..]));
        let cases = [
            (r#"{"vector":[1],"filter":{"tags":"api","lang":"en"}}"#, "give a list of values"),
            (r#"{"vector":[1],"filter":{"tags":["api"]}}"#, "needs a value for `lang`"),
            (r#"{"vector":[1],"filter":{"tags":["a"],"lang":["en"]}}"#, "give one value, not a list"),
            (r#"{"vector":[1],"filter":{"tags":["a"],"lang":"en","x":1}}"#, "`x` is not a filter column"),
            (r#"{"vector":[],"filter":{}}"#, "non-empty array"),
            (r#"{"query":"other","vector":[1]}"#, "`other` is not a [[queries]] name (tagged)"),
            (r#"{"vector":[1],"k":3}"#, "unknown key `k`"),
            ("[1]", "must be a JSON object"),
        ];
        for (line, want) in cases {
            let e = parse_line(line, &s).expect_err(line);
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn a_sampled_row_gives_its_own_values() {
        let s = shape();
        let row = |v: Value| v.as_object().cloned().unwrap_or_default();
        let flags = [FlagColumn {
            column: "tags".into(),
            values: vec!["api".into(), "billing".into()],
            separator: "_".into(),
        }];
        let f = sampled_filter(&s, &row(json!({"tags": ["billing", "api"], "lang": "en"})), &flags)
            .expect("usable");
        assert_eq!(Value::Object(f), json!({"tags": ["billing"], "lang": "en"}));
        assert!(sampled_filter(&s, &row(json!({"tags": [], "lang": "en"})), &flags).is_none());
        assert!(sampled_filter(&s, &row(json!({"tags": ["api"], "lang": null})), &flags).is_none());
        // A flags filter asks for a flagged value: the first one the row holds.
        let f =
            sampled_filter(&s, &row(json!({"tags": ["faq", "api"], "lang": "en"})), &flags).expect("usable");
        assert_eq!(Value::Object(f), json!({"tags": ["api"], "lang": "en"}));
        assert!(sampled_filter(&s, &row(json!({"tags": ["faq"], "lang": "en"})), &flags).is_none());
    }
}
