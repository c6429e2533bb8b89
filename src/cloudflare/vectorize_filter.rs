//! Vectorize's metadata filter, as Cloudflare documents it: which
//! properties filter (those with a metadata index of the value's type,
//! written after the index existed), strings compared on their first 64
//! bytes, operators `$eq $ne $in $nin $lt $lte $gt $gte`, conditions
//! ANDed, no array containment. Sources: cloudflare-docs
//! `src/content/docs/vectorize/reference/metadata-filtering.mdx` and
//! `vectorize/platform/limits.mdx`. One model for two users: the emulator
//! filters with it, and `verify` explains with it why a vector was left
//! out of a filtered answer.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Bytes of a string value that a metadata index keeps (and compares).
/// Source: cloudflare-docs `src/content/docs/vectorize/reference/metadata-filtering.mdx` ("the
/// first 64B of the string data truncated on UTF-8 character boundaries"), `platform/limits.mdx`.
pub const INDEXED_STRING_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexType {
    String,
    Number,
    Boolean,
}

impl IndexType {
    pub fn parse(s: &str) -> Option<IndexType> {
        match s {
            "string" => Some(IndexType::String),
            "number" => Some(IndexType::Number),
            "boolean" => Some(IndexType::Boolean),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IndexType::String => "string",
            IndexType::Number => "number",
            IndexType::Boolean => "boolean",
        }
    }
}

/// A metadata index as the filter needs it: its type, and the mutation
/// sequence number that created it (vectors written before are not in it).
#[derive(Debug, Clone, Copy)]
pub struct Indexed {
    pub index_type: IndexType,
    pub created_seq: i64,
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value at a (possibly dotted) property of some metadata.
pub fn lookup<'a>(metadata: &'a Map<String, Value>, property: &str) -> Option<&'a Value> {
    match property.split_once('.') {
        Some((outer, inner)) => metadata.get(outer)?.as_object()?.get(inner),
        None => metadata.get(property),
    }
}

/// A value as an index of this type holds it (None: not in the index).
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
}

impl Key {
    fn of(v: &Value, t: IndexType) -> Option<Key> {
        match (v, t) {
            (Value::String(s), IndexType::String) => {
                Some(Key::Str(s.as_bytes()[..s.len().min(INDEXED_STRING_BYTES)].to_vec()))
            }
            (Value::Number(n), IndexType::Number) => n.as_f64().map(Key::Num),
            (Value::Bool(b), IndexType::Boolean) => Some(Key::Bool(*b)),
            _ => None,
        }
    }

    fn cmp(&self, other: &Key) -> Option<Ordering> {
        match (self, other) {
            (Key::Str(a), Key::Str(b)) => Some(a.cmp(b)),
            (Key::Num(a), Key::Num(b)) => a.partial_cmp(b),
            (Key::Bool(a), Key::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum Op {
    IsNull(bool),
    Eq(Key),
    Ne(Key),
    Range(&'static str, Key),
    In(Vec<Key>),
    Nin(Vec<Key>),
}

#[derive(Debug)]
struct Cond {
    property: String,
    index: Indexed,
    op: Op,
}

/// A parsed metadata filter: conditions ANDed.
#[derive(Debug, Default)]
pub struct Filter {
    conds: Vec<Cond>,
}

impl Filter {
    /// Parses a filter against the index's metadata indexes (property ->
    /// index). `{"p": v}` means `{"p": {"$eq": v}}`.
    pub fn parse(filter: &Value, indexes: &BTreeMap<String, Indexed>) -> Result<Filter, String> {
        let Value::Object(fields) = filter else {
            return Err("the filter must be a JSON object".into());
        };
        // Source: cloudflare-docs `src/content/docs/vectorize/reference/metadata-filtering.mdx`
        // (a filter is a non-empty object).
        if fields.is_empty() {
            return Err(
                "the filter must be a non-empty JSON object (leave it out to match every vector)".into()
            );
        }
        let mut conds = Vec::new();
        for (property, spec) in fields {
            let Some(index) = indexes.get(property).copied() else {
                return Err(format!(
                    "metadata filter on {property:?}: the property has no metadata index (Vectorize \
                     filters only on indexed properties; create one with metadata_index/create \
                     before upserting)"
                ));
            };
            let ops: Vec<(&str, &Value)> = match spec {
                Value::Object(m) if m.is_empty() => {
                    return Err(format!("metadata filter on {property:?}: empty operator object"))
                }
                Value::Object(m) => m.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                v => vec![("$eq", v)],
            };
            for (name, value) in ops {
                let op = parse_op(property, index.index_type, name, value)?;
                conds.push(Cond { property: property.clone(), index, op });
            }
        }
        Ok(Filter { conds })
    }

    /// Whether a vector (its metadata, and the sequence number of the
    /// mutation that wrote it) passes every condition.
    pub fn matches(&self, metadata: Option<&Map<String, Value>>, written_seq: i64) -> bool {
        self.conds.iter().all(|c| {
            let key = (written_seq > c.index.created_seq)
                .then_some(metadata)
                .flatten()
                .and_then(|m| lookup(m, &c.property))
                .and_then(|v| Key::of(v, c.index.index_type));
            match (&c.op, key) {
                (Op::IsNull(want_null), k) => k.is_none() == *want_null,
                (_, None) => false,
                (Op::Eq(v), Some(k)) => k == *v,
                (Op::Ne(v), Some(k)) => k != *v,
                (Op::In(vs), Some(k)) => vs.contains(&k),
                (Op::Nin(vs), Some(k)) => !vs.contains(&k),
                (Op::Range(op, v), Some(k)) => k.cmp(v).is_some_and(|o| match *op {
                    "$lt" => o == Ordering::Less,
                    "$lte" => o != Ordering::Greater,
                    "$gt" => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }),
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }
}

fn parse_op(property: &str, t: IndexType, op: &str, value: &Value) -> Result<Op, String> {
    let typed = |v: &Value| {
        Key::of(v, t).ok_or_else(|| {
            format!(
                "metadata filter on {property:?}: {op} needs a {} (the property's metadata index \
                 has type {}), got {}",
                t.as_str(),
                t.as_str(),
                json_type(v)
            )
        })
    };
    let list = |v: &Value| match v {
        Value::Array(items) => items.iter().map(typed).collect::<Result<Vec<_>, _>>(),
        _ => Err(format!("metadata filter on {property:?}: {op} needs an array")),
    };
    Ok(match (op, value) {
        ("$eq", Value::Null) => Op::IsNull(true),
        ("$ne", Value::Null) => Op::IsNull(false),
        ("$eq", v) => Op::Eq(typed(v)?),
        ("$ne", v) => Op::Ne(typed(v)?),
        ("$in", v) => Op::In(list(v)?),
        ("$nin", v) => Op::Nin(list(v)?),
        ("$lt" | "$lte" | "$gt" | "$gte", _) if t == IndexType::Boolean => {
            return Err(format!("metadata filter on {property:?}: {op} does not apply to booleans"))
        }
        ("$lt", v) => Op::Range("$lt", typed(v)?),
        ("$lte", v) => Op::Range("$lte", typed(v)?),
        ("$gt", v) => Op::Range("$gt", typed(v)?),
        ("$gte", v) => Op::Range("$gte", typed(v)?),
        (other, _) => {
            return Err(format!(
                "metadata filter on {property:?}: unknown operator {other:?} (use $eq, $ne, $in, $nin, \
                 $lt, $lte, $gt, $gte)"
            ))
        }
    })
}

/// `returnMetadata: "indexed"`: the indexed properties a vector has, strings
/// cut to the indexed 64 bytes (at a character boundary).
pub fn indexed_metadata(
    metadata: Option<&Map<String, Value>>,
    written_seq: i64,
    indexes: &BTreeMap<String, Indexed>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(metadata) = metadata else { return out };
    for (property, index) in indexes {
        let Some(v) = lookup(metadata, property) else { continue };
        if written_seq <= index.created_seq || Key::of(v, index.index_type).is_none() {
            continue;
        }
        let v = match v {
            Value::String(s) => {
                let mut end = s.len().min(INDEXED_STRING_BYTES);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                Value::String(s[..end].to_string())
            }
            v => v.clone(),
        };
        match property.split_once('.') {
            Some((outer, inner)) => {
                let slot = out.entry(outer.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = slot {
                    m.insert(inner.to_string(), v);
                }
            }
            None => {
                out.insert(property.clone(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn indexes() -> BTreeMap<String, Indexed> {
        let mut m = BTreeMap::new();
        m.insert("year".into(), Indexed { index_type: IndexType::Number, created_seq: 1 });
        m.insert("kind".into(), Indexed { index_type: IndexType::String, created_seq: 1 });
        m.insert("o.flag".into(), Indexed { index_type: IndexType::Boolean, created_seq: 5 });
        m
    }

    fn passes(filter: Value, metadata: Value, seq: i64) -> bool {
        let f = Filter::parse(&filter, &indexes()).expect("valid filter");
        f.matches(metadata.as_object(), seq)
    }

    #[test]
    fn filters_evaluate_like_vectorize() {
        let m = json!({ "year": 2020, "kind": "doc", "o": { "flag": true }, "free": "x" });
        assert!(passes(json!({ "year": 2020, "kind": "doc" }), m.clone(), 9));
        assert!(!passes(json!({ "year": 2021 }), m.clone(), 9));
        assert!(passes(json!({ "year": { "$gte": 2020, "$lt": 2021 } }), m.clone(), 9));
        assert!(!passes(json!({ "year": { "$gt": 2020 } }), m.clone(), 9));
        assert!(passes(json!({ "kind": { "$in": ["a", "doc"] } }), m.clone(), 9));
        assert!(!passes(json!({ "kind": { "$nin": ["a", "doc"] } }), m.clone(), 9));
        assert!(passes(json!({ "kind": { "$ne": "a" } }), m.clone(), 9));
        assert!(passes(json!({ "o.flag": true }), m.clone(), 9));
        assert!(!passes(json!({ "o.flag": true }), m.clone(), 5), "written before the index existed");
        assert!(!passes(json!({ "kind": { "$ne": "a" } }), json!({}), 9), "absent matches no $ne");
        assert!(passes(json!({ "kind": { "$eq": null } }), json!({ "kind": 3 }), 9), "wrong type is absent");
        assert!(passes(json!({ "kind": { "$ne": null } }), m.clone(), 9));
        let long = "é".repeat(40);
        let cut: String = long.chars().take(32).collect::<String>() + "zzz";
        assert!(passes(json!({ "kind": cut }), json!({ "kind": long }), 9), "strings compare on 64 bytes");
    }

    #[test]
    fn filters_are_refused_with_the_reason() {
        let cases = [
            (json!({ "free": "x" }), "\"free\": the property has no metadata index"),
            (json!({ "year": "2020" }), "$eq needs a number"),
            (json!({ "year": { "$in": [1, "2"] } }), "$in needs a number"),
            (json!({ "year": { "$regex": 1 } }), "unknown operator \"$regex\""),
            (json!({ "o.flag": { "$lt": true } }), "does not apply to booleans"),
            (json!({ "kind": { "$in": "a" } }), "$in needs an array"),
            (json!([1]), "must be a JSON object"),
            (json!({}), "must be a non-empty JSON object"),
        ];
        for (f, expected) in cases {
            let err = Filter::parse(&f, &indexes()).expect_err("refused");
            assert!(err.contains(expected), "{f}: {err}");
        }
    }

    #[test]
    fn indexed_metadata_keeps_indexed_properties_only() {
        let long = "x".repeat(70);
        let m = json!({ "year": 2020, "kind": long, "o": { "flag": false, "other": 1 }, "free": 1 });
        let got = indexed_metadata(m.as_object(), 9, &indexes());
        assert_eq!(
            Value::Object(got),
            json!({ "year": 2020, "kind": "x".repeat(64), "o": { "flag": false } })
        );
        let early = indexed_metadata(m.as_object(), 3, &indexes());
        assert_eq!(Value::Object(early), json!({ "year": 2020, "kind": "x".repeat(64) }));
    }

    #[test]
    fn arrays_are_stored_but_never_filter() {
        let mut ix = indexes();
        ix.insert("tags".into(), Indexed { index_type: IndexType::String, created_seq: 1 });
        let m = json!({ "tags": ["api", "faq"] });
        let f = Filter::parse(&json!({ "tags": { "$in": ["api"] } }), &ix).expect("valid");
        assert!(!f.matches(m.as_object(), 9), "no array containment in Vectorize");
        let f = Filter::parse(&json!({ "tags": "api" }), &ix).expect("valid");
        assert!(!f.matches(m.as_object(), 9));
    }
}
