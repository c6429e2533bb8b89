//! What an insert or upsert body holds, checked against Vectorize's
//! limits before anything is accepted: the body size (100 MB), the NDJSON
//! (the body itself, or the `vectors` part of a multipart/form-data body,
//! which is what `wrangler vectorize insert/upsert --file` sends), and per
//! line the id, values, namespace and metadata. Every refusal names the
//! 1-based line, the id when known, and the limit.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::envelope::ApiError;
use super::vectorize::{
    CODE_DIMENSIONS, CODE_ID, CODE_METADATA, CODE_NAMESPACE, CODE_TOO_LARGE, CODE_TOO_MANY_VECTORS,
    CODE_UPLOAD,
};
use super::vectorize_store::NewVector;

// Source: cloudflare-docs `src/content/docs/vectorize/platform/limits.mdx` (64-byte ids and
// namespace names, 5000 vectors per HTTP API batch, 100 MB upload, 10KiB metadata per vector).
pub const MAX_ID_BYTES: usize = 64;
pub const MAX_NAMESPACE_BYTES: usize = 64;
pub const MAX_VECTORS_PER_REQUEST: usize = 5000;
pub const MAX_UPLOAD_BYTES: usize = 100_000_000;
/// Serialized (compact JSON) metadata per vector.
pub const MAX_METADATA_BYTES: usize = 10 * 1024;
/// Property names of metadata indexes (the indexed part of a string too).
/// Source: none found; a guess (the strictest reading). cloudflare-docs
/// `src/content/docs/vectorize/reference/metadata-filtering.mdx` allows filter keys of up to 512
/// characters, so this is stricter than the docs (README, known gaps).
const MAX_PROPERTY_BYTES: usize = 64;

/// Reads an upload body, refusing one over Vectorize's 100 MB.
pub async fn read_upload(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_big = |size: &str| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            CODE_TOO_LARGE,
            format!(
                "the request body is {size} bytes; Vectorize accepts at most {MAX_UPLOAD_BYTES} bytes \
                 (100 MB) per upload: send fewer vectors per request"
            ),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&l| l > MAX_UPLOAD_BYTES as u64) {
        return Err(too_big(&len.to_string()));
    }
    axum::body::to_bytes(body, MAX_UPLOAD_BYTES).await.map_err(|e| {
        if e.to_string().contains("length limit") {
            too_big("over 100000000")
        } else {
            ApiError::bad(CODE_UPLOAD, format!("could not read the request body: {e}"))
        }
    })
}

/// The NDJSON of an upload: the body, or the `vectors` part of a
/// multipart/form-data body (wrangler sends a file part `vectors.ndjson`).
/// Source: cloudflare/workers-sdk `packages/wrangler/src/vectorize/insert.ts`, `upsert.ts`
/// (`formData.append("vectors", new File([...], "vectors.ndjson"))`); cloudflare-docs
/// `src/content/docs/vectorize/best-practices/insert-vectors.mdx` ("HTTP API":
/// `files=dict(vectors=embeddings)`).
pub fn ndjson_of<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<&'a [u8], ApiError> {
    let Some(ct) =
        content_type.filter(|c| c.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
    else {
        return Ok(body);
    };
    let boundary = ct
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::bad(CODE_UPLOAD, "multipart/form-data without a boundary"))?;
    multipart_part(body, boundary, "vectors").ok_or_else(|| {
        ApiError::bad(
            CODE_UPLOAD,
            "the multipart/form-data body has no part named `vectors` holding the NDJSON vectors",
        )
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// The content of the part called `name` (RFC 7578).
fn multipart_part<'a>(body: &'a [u8], boundary: &str, name: &str) -> Option<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut at = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    loop {
        if body.get(at..)?.starts_with(b"--") {
            return None;
        }
        let headers_start = find(body, b"\r\n", at)? + 2;
        let headers_end = find(body, b"\r\n\r\n", headers_start - 2)?;
        let headers = String::from_utf8_lossy(&body[headers_start.min(headers_end)..headers_end]);
        let content_start = headers_end + 4;
        let content_end = find(body, next_delimiter.as_bytes(), content_start)?;
        let named = headers.lines().any(|line| {
            let Some((key, value)) = line.split_once(':') else { return false };
            key.trim().eq_ignore_ascii_case("content-disposition")
                && value
                    .split(';')
                    .filter_map(|p| p.trim().split_once('='))
                    .any(|(k, v)| k.trim().eq_ignore_ascii_case("name") && v.trim().trim_matches('"') == name)
        });
        if named {
            return Some(&body[content_start..content_end]);
        }
        at = content_end + next_delimiter.len();
    }
}

/// Validates every NDJSON line (1-based numbers in messages); blank lines
/// are skipped, and lines that are not JSON too when `discard`.
pub fn parse_vectors(ndjson: &[u8], dims: usize, discard: bool) -> Result<Vec<NewVector>, ApiError> {
    let mut out = Vec::new();
    for (i, raw) in ndjson.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(_) if discard => continue,
            Err(e) => {
                return Err(ApiError::bad(
                    CODE_UPLOAD,
                    format!(
                        "failed to parse upsert vectors request: line {line}: {e} \
                         (unparsable-behavior=discard skips such lines)"
                    ),
                ))
            }
        };
        if out.len() == MAX_VECTORS_PER_REQUEST {
            return Err(ApiError::bad(
                CODE_TOO_MANY_VECTORS,
                format!(
                    "line {line}: more than {MAX_VECTORS_PER_REQUEST} vectors in one request; \
                     Vectorize accepts at most {MAX_VECTORS_PER_REQUEST} per request"
                ),
            ));
        }
        out.push(vector_of(value, line, dims)?);
    }
    if out.is_empty() {
        return Err(ApiError::bad(CODE_UPLOAD, "the request holds no vectors (one JSON object per line)"));
    }
    Ok(out)
}

fn vector_of(value: Value, line: usize, dims: usize) -> Result<NewVector, ApiError> {
    let Value::Object(mut m) = value else {
        return Err(ApiError::bad(CODE_UPLOAD, format!("line {line}: a vector must be a JSON object")));
    };
    let id = match m.remove("id") {
        Some(Value::String(id)) => id,
        Some(_) => return Err(ApiError::bad(CODE_UPLOAD, format!("line {line}: `id` must be a string"))),
        None => return Err(ApiError::bad(CODE_UPLOAD, format!("line {line}: the vector has no `id`"))),
    };
    let at = format!("line {line}, id {id:?}");
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad(
            CODE_ID,
            format!("{at}: id too long or empty; max is {MAX_ID_BYTES} bytes, got {} bytes", id.len()),
        ));
    }
    let Some(Value::Array(raw)) = m.remove("values") else {
        return Err(ApiError::bad(CODE_UPLOAD, format!("{at}: `values` must be an array of numbers")));
    };
    let mut values = Vec::with_capacity(raw.len());
    for (j, v) in raw.iter().enumerate() {
        let f = v
            .as_f64()
            .ok_or_else(|| ApiError::bad(CODE_UPLOAD, format!("{at}: values[{j}] is not a number")))?;
        let f32v = f as f32;
        if !f32v.is_finite() {
            return Err(ApiError::bad(
                CODE_UPLOAD,
                format!("{at}: values[{j}] = {v} is outside the float32 range"),
            ));
        }
        values.push(f32v);
    }
    if values.len() != dims {
        return Err(ApiError::bad(
            CODE_DIMENSIONS,
            format!(
                "{at}: invalid vector for id={id:?}, expected {dims} dimensions, and got {} dimensions",
                values.len()
            ),
        ));
    }
    let namespace = match m.remove("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ns)) if ns.len() > MAX_NAMESPACE_BYTES => {
            return Err(ApiError::bad(
                CODE_NAMESPACE,
                format!(
                    "{at}: namespace too long; max is {MAX_NAMESPACE_BYTES} bytes, got {} bytes",
                    ns.len()
                ),
            ))
        }
        Some(Value::String(ns)) => Some(ns),
        Some(_) => return Err(ApiError::bad(CODE_UPLOAD, format!("{at}: `namespace` must be a string"))),
    };
    let metadata = match m.remove("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(meta)) => {
            Some(check_metadata(&meta).map_err(|e| ApiError::bad(CODE_METADATA, format!("{at}: {e}")))?)
        }
        Some(_) => {
            return Err(ApiError::bad(CODE_METADATA, format!("{at}: `metadata` must be a JSON object")))
        }
    };
    Ok(NewVector { id, namespace, metadata, values })
}

/// Why a metadata key is refused, if it is.
/// Source: cloudflare-docs `src/content/docs/vectorize/best-practices/insert-vectors.mdx`
/// ("Metadata keys cannot be empty, contain the dot character, contain the double-quote
/// character, or start with the dollar character"). Kept apart from the client's
/// own check (`sink::vectorize::check_metadata_key`) on purpose: the
/// emulator is the oracle the client's checks are tested against, and one
/// shared function would make a wrong rule invisible to both.
fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("must not be empty")
    } else if key.contains('.') {
        Some("must not contain `.`")
    } else if key.contains('"') {
        Some("must not contain `\"`")
    } else if key.starts_with('$') {
        Some("must not start with `$`")
    } else {
        None
    }
}

/// Checks a vector's metadata against Vectorize's rules: at most 10 KiB
/// serialized; keys non-empty, without `.` or `"`, not starting with `$`;
/// values strings, numbers, booleans, string arrays, or one level of object
/// holding those. Returns its compact JSON text.
/// Source: cloudflare/workerd `types/defines/vectorize.d.ts` (`VectorizeVectorMetadataValue =
/// string | number | boolean | string[]`, or a `Record` of those: one level); the size:
/// cloudflare-docs `src/content/docs/vectorize/platform/limits.mdx` (10KiB per vector).
pub fn check_metadata(metadata: &Map<String, Value>) -> Result<String, String> {
    fn scalar_ok(v: &Value) -> bool {
        match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => true,
            Value::Array(items) => items.iter().all(Value::is_string),
            _ => false,
        }
    }
    for (key, value) in metadata {
        if let Some(p) = key_problem(key) {
            return Err(format!("metadata key {key:?} {p}"));
        }
        match value {
            Value::Object(inner) => {
                for (k2, v2) in inner {
                    if let Some(p) = key_problem(k2) {
                        return Err(format!("metadata key {key:?}.{k2:?} {p}"));
                    }
                    if !scalar_ok(v2) {
                        return Err(format!(
                            "metadata value {key}.{k2} is {}; inside an object only strings, numbers, \
                             booleans and arrays of strings are allowed (one level of nesting)",
                            kind(v2)
                        ));
                    }
                }
            }
            v if scalar_ok(v) => {}
            v => {
                return Err(format!(
                    "metadata value {key} is {}; allowed: string, number, boolean, array of strings, \
                     or an object of those",
                    kind(v)
                ))
            }
        }
    }
    let text = serde_json::to_string(metadata).map_err(|e| format!("metadata: {e}"))?;
    if text.len() > MAX_METADATA_BYTES {
        return Err(format!(
            "metadata is {} bytes serialized; the limit is {MAX_METADATA_BYTES} bytes (10 KiB)",
            text.len()
        ));
    }
    Ok(text)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array holding a non-string",
        Value::Object(_) => "an object nested two levels deep",
    }
}

/// Checks a metadata index's property name: a key, or `key.key` to reach
/// one level into an object. Source: cloudflare-docs
/// `src/content/docs/vectorize/reference/metadata-filtering.mdx` ("Keys define nesting with `.`";
/// keys cannot be empty, contain `"` or start with `$`); one level: workerd's metadata type above.
pub fn check_property(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 {
        return Err(format!("property {name:?}: at most one `.` (metadata nests one level)"));
    }
    for p in parts {
        if p.is_empty() || p.contains('"') || p.starts_with('$') {
            return Err(format!(
                "property {name:?}: each part must be non-empty, hold no `\"` and not start with `$`"
            ));
        }
    }
    if name.len() > MAX_PROPERTY_BYTES {
        return Err(format!("property {name:?} is longer than {MAX_PROPERTY_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_rules() {
        let ok = json!({ "s": "x", "n": 1.5, "b": true, "tags": ["a", "b"], "o": { "k": 1, "t": ["z"] } });
        assert!(check_metadata(ok.as_object().expect("object")).is_ok());
        let cases = [
            (json!({ "": 1 }), "must not be empty"),
            (json!({ "a.b": 1 }), "must not contain `.`"),
            (json!({ "a\"b": 1 }), "must not contain `\"`"),
            (json!({ "$a": 1 }), "must not start with `$`"),
            (json!({ "o": { "$k": 1 } }), "must not start with `$`"),
            (json!({ "n": null }), "is null"),
            (json!({ "a": [1, 2] }), "non-string"),
            (json!({ "o": { "p": { "q": 1 } } }), "one level of nesting"),
            (json!({ "big": "x".repeat(10_240) }), "the limit is 10240 bytes"),
        ];
        for (m, expected) in cases {
            let err = check_metadata(m.as_object().expect("object")).expect_err("refused");
            assert!(err.contains(expected), "{m}: {err}");
        }
        assert!(check_property("a.b").is_ok());
        assert!(check_property("a.b.c").is_err());
        assert!(check_property("$a").is_err());
    }

    #[test]
    fn multipart_finds_the_vectors_part() {
        let b = "----formdata-undici-0123";
        let body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nnope\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"vectors\"; filename=\"vectors.ndjson\"\r\n\
             Content-Type: application/x-ndjson\r\n\r\n{{\"id\":\"a\"}}\n{{\"id\":\"b\"}}\r\n--{b}--\r\n"
        );
        let ct = format!("multipart/form-data; boundary={b}");
        let got = ndjson_of(Some(&ct), body.as_bytes()).expect("found");
        assert_eq!(got, b"{\"id\":\"a\"}\n{\"id\":\"b\"}");
        assert_eq!(ndjson_of(Some("application/x-ndjson"), b"x").expect("raw"), b"x");
        let quoted = format!("Multipart/Form-Data; boundary=\"{b}\"");
        assert!(ndjson_of(Some(&quoted), body.as_bytes()).is_ok());
        let none = format!("--{b}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n--{b}--\r\n");
        assert!(ndjson_of(Some(&ct), none.as_bytes()).is_err());
        assert!(ndjson_of(Some("multipart/form-data"), body.as_bytes()).is_err(), "no boundary");
    }

    #[test]
    fn lines_are_numbered_from_one_counting_blank_ones() {
        let text = "{\"id\":\"a\",\"values\":[1,2]}\n\n{\"id\":\"b\",\"values\":[1e39,2]}";
        let err = parse_vectors(text.as_bytes(), 2, false).err().expect("refused");
        assert!(
            err.message.contains("line 3, id \"b\": values[0] = 1e+39 is outside the float32 range"),
            "{}",
            err.message
        );
        let v = parse_vectors(b"{\"id\":\"a\",\"values\":[0.1,2]}\r\n", 2, false).expect("valid");
        assert_eq!((v.len(), v[0].values[0].to_bits()), (1, 0.1f32.to_bits()));
        assert_eq!(v[0].metadata, None);
    }
}
