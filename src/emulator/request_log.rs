//! `emulate --request-log FILE`: one JSON line per API request that reached
//! a route, saying what a client sent without any of its values, so that
//! two clients doing the same job can be compared (pgflare against
//! wrangler, the D1 import flow above all; tests/integration/contract.rs).
//!
//! A line holds the method, the route's path template (the router's own,
//! e.g. `/client/v4/accounts/{account}/d1/database/{db}/import`: no account
//! or database id), the names of the query parameters, the content type
//! without its multipart boundary, the body's *shape* and the answer's
//! status, the body's size in bytes and the milliseconds from the request's
//! arrival to its answer (the upload included: a throttled transfer shows
//! how long it took, tests/integration/realistic_api.rs). A shape keeps object keys and JSON types (`"string"`,
//! `"number"`, `"boolean"`, `"null"`; an array becomes the sorted list of
//! its distinct element shapes) and never a value; a body that is not JSON
//! is `"bytes"`. NDJSON bodies (Vectorize uploads) and the `vectors` part
//! of a multipart body (what wrangler sends: workers-sdk `packages/wrangler/src/vectorize/insert.ts`,
//! `upsert.ts`) are shaped line by line. No
//! header other than the content type is read, so tokens never reach it.
//!
//! Requests refused before routing (authentication, rate limit, injected
//! faults: see [`super::server`]) and unknown paths are not logged.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::server::UPLOAD_PREFIX;
use super::vectorize_upload::{ndjson_of, read_upload};
use super::State as Shared;
use crate::error::{Error, Result};

/// The open log file; lines are written whole under the lock.
pub(crate) struct RequestLog {
    file: Mutex<std::fs::File>,
}

impl RequestLog {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<RequestLog> {
        let file = std::fs::File::create(path).map_err(|e| Error::Config {
            setting: "--request-log".into(),
            message: format!("{}: {e}", path.display()),
        })?;
        Ok(RequestLog { file: Mutex::new(file) })
    }

    fn write(&self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        let mut f = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        // A log that cannot be written must not fail the request it describes.
        let _ = f.write_all(text.as_bytes());
    }
}

/// The route layer: with a log, reads the body (an API request is at most
/// Vectorize's 100 MB upload), records its shape, and hands it on unchanged.
pub(crate) async fn record(State(st): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(log) = st.request_log.as_ref() else { return next.run(req).await };
    let arrived = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.extensions.get::<MatchedPath>().map(|p| p.as_str().to_string());
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut line = json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": query_keys(parts.uri.query()),
        "content_type": content_type.as_deref().map(without_boundary),
    });
    // A D1 upload is a SQL file of up to 5 GB: streamed on untouched (its
    // shape is "bytes" whatever it holds).
    let body = if path.as_deref().is_some_and(|p| p.starts_with(UPLOAD_PREFIX)) {
        line["body"] = json!("bytes");
        line["bytes"] = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .into();
        body
    } else {
        // Read as the route would read it, so that logging changes no
        // answer: a Vectorize upload with its own limit and errors, any
        // other body up to the router's limit.
        let read = match path.as_deref().is_some_and(|p| p.contains("/vectorize/")) {
            true => read_upload(&parts.headers, body).await.map_err(IntoResponse::into_response),
            // What the D1 handlers' `Bytes` extractor does (the router's
            // body limit included), refusal and all.
            false => {
                use axum::extract::FromRequest;
                let req = Request::from_parts(parts.clone(), body);
                axum::body::Bytes::from_request(req, &()).await.map_err(IntoResponse::into_response)
            }
        };
        let bytes = match read {
            Ok(b) => b,
            Err(resp) => {
                line["body"] = json!("unreadable");
                line["status"] = resp.status().as_u16().into();
                log.write(&line);
                return resp;
            }
        };
        line["body"] = body_shape(content_type.as_deref(), &bytes);
        line["bytes"] = bytes.len().into();
        Body::from(bytes)
    };
    let resp = next.run(Request::from_parts(parts, body)).await;
    line["status"] = resp.status().as_u16().into();
    line["ms"] = u64::try_from(arrived.elapsed().as_millis()).unwrap_or(u64::MAX).into();
    log.write(&line);
    resp
}

/// The sorted, distinct names of the query parameters.
fn query_keys(query: Option<&str>) -> Vec<String> {
    let keys: BTreeSet<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k).to_string())
        .collect();
    keys.into_iter().collect()
}

/// The content type with any `boundary=` parameter dropped (it is random
/// per request, so it would make two identical requests differ).
fn without_boundary(ct: &str) -> String {
    ct.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("boundary="))
        .collect::<Vec<_>>()
        .join("; ")
}

fn body_shape(content_type: Option<&str>, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let ct = content_type.map(str::to_ascii_lowercase).unwrap_or_default();
    if ct.starts_with("multipart/form-data") {
        return match ndjson_of(content_type, body) {
            Ok(lines) => json!({ "multipart": { "vectors": { "ndjson": ndjson_shape(lines) } } }),
            Err(_) => json!({ "multipart": "no vectors part" }),
        };
    }
    if ct.starts_with("application/x-ndjson") {
        return json!({ "ndjson": ndjson_shape(body) });
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => json!({ "json": shape(&v) }),
        Err(_) => json!("bytes"),
    }
}

fn ndjson_shape(body: &[u8]) -> Value {
    let lines = body.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    distinct(lines.map(|l| serde_json::from_slice::<Value>(l).map_or_else(|_| json!("bytes"), |v| shape(&v))))
}

/// Keys and JSON types of `v`, never its values.
pub(crate) fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("boolean"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => distinct(items.iter().map(shape)),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect::<Map<_, _>>())
        }
    }
}

/// The distinct shapes, sorted by their JSON text (so the same kinds of
/// elements give the same list whatever their order and number).
fn distinct(shapes: impl Iterator<Item = Value>) -> Value {
    // Few distinct shapes among many elements (a vector's 1536 numbers are
    // one): compare values, and write text only to sort the few kept.
    let mut kept: Vec<Value> = Vec::new();
    for s in shapes {
        if !kept.contains(&s) {
            kept.push(s);
        }
    }
    let mut keyed: Vec<(String, Value)> = kept.into_iter().map(|v| (v.to_string(), v)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(keyed.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_keeps_keys_and_types_but_no_value() {
        let v = json!({"sql": "SELECT secret", "params": ["a", 1, "b", null], "n": {"x": true}});
        let s = shape(&v);
        assert_eq!(
            s,
            json!({"sql": "string", "params": ["null", "number", "string"], "n": {"x": "boolean"}})
        );
        assert!(!s.to_string().contains("secret"));
    }

    #[test]
    fn multipart_bodies_are_shaped_from_their_vectors_part_and_lose_the_boundary() {
        let ct = "multipart/form-data; boundary=XyZ";
        let body =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"vectors\"; filename=\"v.ndjson\"\r\n\r\n\
{\"id\":\"a\",\"values\":[1,2]}\n{\"id\":\"b\",\"values\":[3,4]}\n\r\n--XyZ--\r\n";
        assert_eq!(
            body_shape(Some(ct), body),
            json!({"multipart": {"vectors": {"ndjson": [{"id": "string", "values": ["number"]}]}}})
        );
        assert_eq!(without_boundary(ct), "multipart/form-data");
        assert_eq!(without_boundary("application/json; charset=utf-8;"), "application/json; charset=utf-8");
    }

    #[test]
    fn query_strings_keep_their_names_only() {
        assert_eq!(query_keys(Some("count=10&cursor=abc&count=2")), vec!["count", "cursor"]);
        assert!(query_keys(None).is_empty());
    }

    #[test]
    fn bodies_that_are_not_json_are_bytes() {
        assert_eq!(body_shape(None, b"INSERT INTO t VALUES (1);"), json!("bytes"));
        assert_eq!(body_shape(Some("application/json"), b""), Value::Null);
    }
}
