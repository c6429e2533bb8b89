//! The vector as pgflare compares it: what `load` sends for a row (id,
//! float32 values, metadata, namespace) or what Vectorize's `get_by_ids`
//! returns, and its canonical digest (`pgflare-vector-v1`). verify digests
//! both sides with it; sync compares the vector a changed row would send
//! with the one it sent before.

use serde_json::Value;

use super::RowDigest;
use crate::cloudflare::vectorize::StoredVector;

/// One vector as compared: what `load` sends, or what `get_by_ids` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Vector {
    pub id: String,
    pub values: Vec<f32>,
    pub namespace: Option<String>,
    /// `Value::Null` when there is none.
    pub metadata: Value,
}

impl Vector {
    pub fn from_stored(s: &StoredVector) -> Vector {
        Vector {
            id: s.id.clone(),
            values: s.values.clone(),
            namespace: s.namespace.clone().filter(|n| !n.is_empty()),
            metadata: s.metadata.clone().unwrap_or(Value::Null),
        }
    }
}

/// `pgflare-vector-v1`: blake3 over the id (u64 LE length + bytes), the
/// namespace (`0x00`, or `0x01` + u64 LE length + bytes), the values (u64
/// LE count + each float32's bits LE) and the metadata as canonical JSON
/// (object keys sorted, numbers as the shortest float64 form, no spaces;
/// u64 LE length + bytes; an empty object and no metadata are the same).
pub fn vector_digest(v: &Vector) -> RowDigest {
    let mut h = blake3::Hasher::new();
    let mut put = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    put(v.id.as_bytes());
    match &v.namespace {
        None => {
            h.update(&[0]);
        }
        Some(ns) => {
            h.update(&[1]);
            h.update(&(ns.len() as u64).to_le_bytes());
            h.update(ns.as_bytes());
        }
    }
    h.update(&(v.values.len() as u64).to_le_bytes());
    for f in &v.values {
        h.update(&f.to_bits().to_le_bytes());
    }
    let meta = canonical(&v.metadata);
    h.update(&(meta.len() as u64).to_le_bytes());
    h.update(meta.as_bytes());
    *h.finalize().as_bytes()
}

/// Canonical JSON: sorted keys, numbers as float64, `{}` for none.
pub fn canonical(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&format!("{:?}", n.as_f64().unwrap_or(f64::NAN))),
            Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[*k], out);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    match v {
        Value::Null => out.push_str("{}"),
        other => write(other, &mut out),
    }
    out
}
