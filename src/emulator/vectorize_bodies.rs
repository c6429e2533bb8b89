//! The JSON request bodies of the emulated Vectorize v2 API, checked as
//! strictly as the documented types allow: a JSON body must come as
//! `Content-Type: application/json`, and a field the type does not name, or
//! a field of another JSON type, is refused (HTTP 400, code 40026) before
//! anything is done. The types, field by field, are those of
//! cloudflare-typescript `src/resources/vectorize/indexes/indexes.ts`
//! (`IndexCreateParams`, `IndexQueryParams`, `IndexGetByIDsParams`,
//! `IndexDeleteByIDsParams`) and `metadata-index.ts`
//! (`MetadataIndexCreateParams`, `MetadataIndexDeleteParams`), plus what
//! wrangler sends on top (`packages/wrangler/src/vectorize/client.ts` and
//! `types.ts`: `namespace` in `VectorizeQueryOptions`, `vectorId` for
//! `queryIndexByVectorId`).
//!
//! Whether the real API ignores an unknown field is not documented; the
//! emulator refuses it (stricter), so a misspelt field in a client shows
//! here instead of being silently ignored there.

use axum::http::{header, HeaderMap};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::envelope::ApiError;

/// Code of a body Vectorize cannot read: observed for a JSON body sent
/// without `Content-Type: application/json` (workers-sdk issue 6516,
/// "Expected request with `Content-Type: application/json` [code: 40026]").
pub const CODE_JSON: u32 = 40026;

/// Parses the JSON body of a request into `T` (whose unknown fields are
/// refused by `#[serde(deny_unknown_fields)]`). wrangler sends
/// `application/json; charset=utf-8;`, the SDKs `application/json`.
pub fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad(
            CODE_JSON,
            format!(
                "Expected request with `Content-Type: application/json`, got {:?}",
                if content_type.is_empty() { "none" } else { content_type }
            ),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(CODE_JSON, format!("Failed to parse the request body: {e}")))
}

/// `POST indexes`: `IndexCreateParams`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub name: String,
    pub description: Option<String>,
    pub config: CreateConfig,
}

/// `IndexDimensionConfigurationParam` (`dimensions`, `metric`) or
/// `VectorizeIndexPresetConfiguration` (`preset`), not both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConfig {
    pub dimensions: Option<Value>,
    pub metric: Option<String>,
    pub preset: Option<String>,
}

/// `get_by_ids` and `delete_by_ids`: `{ids: string[]}`. The SDK types mark
/// `ids` optional; without it there is nothing to do, so it is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ids {
    pub ids: Vec<String>,
}

/// `query`: `IndexQueryParams` (`vector`, `filter`, `returnMetadata`,
/// `returnValues`, `topK`) plus wrangler's `namespace` and `vectorId`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryBody {
    pub vector: Option<Vec<f64>>,
    pub vector_id: Option<String>,
    pub top_k: Option<f64>,
    pub return_values: Option<bool>,
    /// `'none' | 'indexed' | 'all'`: the booleans of Vectorize V1 are not
    /// part of the v2 REST type (docs `vectorize/reference/client-api.mdx`:
    /// "For legacy Vectorize (V1) indexes ... `returnMetadata` is a boolean").
    pub return_metadata: Option<MetadataLevel>,
    pub filter: Option<Map<String, Value>>,
    pub namespace: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MetadataLevel {
    None,
    Indexed,
    All,
}

/// Read from a string, so a boolean is refused as "invalid type: boolean
/// `true`, expected a string" (serde's derive would say "expected value").
impl<'de> Deserialize<'de> for MetadataLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "none" => Ok(MetadataLevel::None),
            "indexed" => Ok(MetadataLevel::Indexed),
            "all" => Ok(MetadataLevel::All),
            other => Err(serde::de::Error::unknown_variant(other, &["none", "indexed", "all"])),
        }
    }
}

/// Default and limits of `topK` (docs `vectorize/reference/client-api.mdx`,
/// "topK": default 5, at most 100, at most 20 "for a query operation with
/// `returnValues` set to `true` or `returnMetadata` set to `all`"; the
/// limits page says the same). 50 has been observed with values; the
/// emulator keeps the documented, stricter 20.
pub const DEFAULT_TOP_K: u64 = 5;
const MAX_TOP_K: u64 = crate::cloudflare::limits::VECTORIZE_MAX_TOP_K as u64;
const MAX_TOP_K_WITH_VALUES_OR_METADATA: u64 =
    crate::cloudflare::limits::VECTORIZE_MAX_TOP_K_WITH_VALUES as u64;

impl QueryBody {
    pub fn level(&self) -> MetadataLevel {
        self.return_metadata.unwrap_or(MetadataLevel::None)
    }

    /// `topK`, checked against the limits above (code 40025, as Vectorize).
    pub fn top_k(&self, code: u32) -> Result<usize, ApiError> {
        let refuse = |m: String| ApiError::bad(code, m);
        let k = match self.top_k {
            None => DEFAULT_TOP_K,
            Some(f) if f.fract() == 0.0 && f >= 1.0 && f <= MAX_TOP_K as f64 => f as u64,
            Some(f) => {
                return Err(refuse(format!("topK must be a whole number from 1 to {MAX_TOP_K}, got {f}")))
            }
        };
        let rich = self.return_values == Some(true) || self.level() == MetadataLevel::All;
        if rich && k > MAX_TOP_K_WITH_VALUES_OR_METADATA {
            return Err(refuse(format!(
                "with returnValues=true or returnMetadata=all, max topK is \
                 {MAX_TOP_K_WITH_VALUES_OR_METADATA}, but got {k}"
            )));
        }
        Ok(k as usize)
    }
}

/// `metadata_index/create`: `MetadataIndexCreateParams`, both required.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataIndexBody {
    pub property_name: String,
    pub index_type: String,
}

/// `metadata_index/delete`: `MetadataIndexDeleteParams`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataIndexName {
    pub property_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn json_headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).expect("header"));
        h
    }

    #[test]
    fn a_json_body_needs_the_json_content_type() {
        for ct in ["application/json", "application/json; charset=utf-8;", "Application/JSON"] {
            assert!(json_body::<Ids>(&json_headers(ct), br#"{"ids":[]}"#).is_ok(), "{ct}");
        }
        for ct in ["text/plain", "application/x-ndjson", ""] {
            let e = json_body::<Ids>(&json_headers(ct), br#"{"ids":[]}"#).err().expect("refused");
            assert_eq!(e.code, 40026);
            assert!(e.message.contains("Content-Type: application/json"), "{}", e.message);
        }
        let e = json_body::<Ids>(&HeaderMap::new(), b"{}").err().expect("no content type");
        assert!(e.message.contains("got \"none\""), "{}", e.message);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_refused() {
        let h = json_headers("application/json");
        let refused = |body: &str| json_body::<QueryBody>(&h, body.as_bytes()).err().expect(body).message;
        assert!(refused(r#"{"vector":[1],"top_k":3}"#).contains("unknown field `top_k`"));
        assert!(refused(r#"{"vector":[1],"topK":"3"}"#).contains("invalid type"));
        assert!(refused(r#"{"vector":[1],"returnMetadata":true}"#).contains("invalid type"));
        assert!(refused(r#"{"vector":[1],"returnMetadata":"some"}"#).contains("unknown variant"));
        assert!(refused(r#"{"vector":"1,2"}"#).contains("invalid type"));
        assert!(refused(r#"{"vector":[1],"filter":[]}"#).contains("invalid type"));
        let ok: QueryBody = json_body(&h, br#"{"vector":[1],"topK":20.0,"returnValues":true}"#).expect("ok");
        assert_eq!(ok.top_k(40025).expect("20 with values"), 20);
        let ids = |b: &str| json_body::<Ids>(&h, b.as_bytes()).err().map(|e| e.message);
        assert!(ids(r#"{"ids":[1]}"#).is_some_and(|m| m.contains("invalid type")));
        assert!(ids(r#"{}"#).is_some_and(|m| m.contains("missing field `ids`")));
        let meta = |b: &str| json_body::<MetadataIndexBody>(&h, b.as_bytes()).err().map(|e| e.message);
        assert!(meta(r#"{"propertyName":"a"}"#).is_some_and(|m| m.contains("missing field `indexType`")));
        assert!(meta(r#"{"propertyName":"a","indexType":"string","x":1}"#).is_some());
        let create = |b: &str| json_body::<CreateBody>(&h, b.as_bytes()).err().map(|e| e.message);
        assert!(create(r#"{"name":"a","config":{"dimensions":3,"metric":"cosine","m":1}}"#).is_some());
        assert!(create(r#"{"name":"a","config":{"dimensions":3,"metric":"cosine"},"x":1}"#).is_some());
    }

    #[test]
    fn top_k_limits_follow_the_docs() {
        let q = |top_k: Option<f64>, values: bool, level: MetadataLevel| QueryBody {
            vector: None,
            vector_id: None,
            top_k,
            return_values: Some(values),
            return_metadata: Some(level),
            filter: None,
            namespace: None,
        };
        use MetadataLevel::{All, Indexed, None as Bare};
        assert_eq!(q(None, false, Bare).top_k(1).expect("default"), 5);
        assert_eq!(q(Some(100.0), false, Indexed).top_k(1).expect("100 bare"), 100);
        assert_eq!(q(Some(20.0), false, All).top_k(1).expect("20 with all"), 20);
        for (k, values, level) in [
            (101.0, false, Bare),
            (0.0, false, Bare),
            (2.5, false, Bare),
            (21.0, true, Bare),
            (21.0, false, All),
        ] {
            assert!(q(Some(k), values, level).top_k(1).is_err(), "{k} {values}");
        }
    }
}
