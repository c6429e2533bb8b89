//! The Vectorize v2 endpoints under
//! `/client/v4/accounts/{account}/vectorize/v2/indexes`: create, list, get
//! and delete indexes; insert/upsert (NDJSON, or multipart/form-data with a
//! `vectors` part as wrangler sends), get_by_ids, delete_by_ids, query,
//! info, list, and metadata indexes. Storage and the asynchronous mutation
//! queue live in [`super::vectorize_store`], scoring and filters in
//! [`super::vectorize_query`]. Every limit Vectorize documents is refused
//! with a message naming the line, id and limit; nothing of a refused
//! request is applied. Source: cloudflare-docs `src/content/docs/vectorize/platform/limits.mdx`
//! (1536 dimensions, 64-byte ids, namespaces and index names, 10KiB metadata, 5000 vectors per
//! HTTP API batch, 100 MB upload, 10 metadata indexes) and
//! `src/content/docs/vectorize/reference/metadata-filtering.mdx` (filter JSON under 2048 bytes).
//!
//! Index names: 1 to 64 characters of lowercase letters, digits and `-`,
//! starting with a letter (they are also file names). Source: cloudflare-docs
//! `src/content/docs/vectorize/platform/limits.mdx` (name at most 64 bytes),
//! `src/content/docs/vectorize/get-started/intro.mdx` (lowercase and/or numeric ASCII, starts
//! with a letter, dashes instead of spaces; cloudflare/cloudflare-docs#11529: no uppercase, no
//! leading digit).
//!
//! Error codes, taken from Vectorize where its answers are known (observed
//! messages quoted in public code, summarised with their sources in
//! /work/shared/reference/cloudflare.md, "Real-service behaviour"), chosen
//! in the same 40000s range where not. Vectorize answers its refusals with
//! HTTP 400 even for an unknown index (observed), so a client must read
//! the code, not the status; where the status of a refusal is not known,
//! the emulator answers 400 too, never the 404 or 409 a client might
//! expect.
//!
//! | code  | HTTP | when                                                          | source   |
//! |-------|------|---------------------------------------------------------------|----------|
//! | 3000  | 400  | unknown index (`vectorize.index.not_found`)                   | observed |
//! | 3002  | 400  | index name taken (`vectorize.index.duplicate_name`)           | observed (code) |
//! | 3005  | 410  | index deleted lately (`vectorize.index.deleted`)              | observed |
//! | 40002 | 400  | invalid index name, dimensions, metric or preset              | chosen   |
//! | 40006 | 400  | query vector of the wrong length; unknown `vectorId`          | Vectorize |
//! | 40007 | 400  | over 20 ids (get_by_ids) or 100 ids (delete_by_ids)           | observed |
//! | 40008 | 400  | vector id empty or over 64 bytes                              | Vectorize |
//! | 40009 | 400  | namespace over 64 bytes                                       | Vectorize |
//! | 40012 | 400  | vector of the wrong length in an upload                       | Vectorize |
//! | 40013 | 400  | invalid metadata (keys, value types, over 10 KiB)             | chosen   |
//! | 40014 | 400  | over 5000 vectors in one request                              | chosen   |
//! | 40015 | 413  | body over 100,000,000 bytes                                   | chosen   |
//! | 40023 | 400  | an upload line that does not parse or has a wrong field       | Vectorize |
//! | 40025 | 400  | topK out of 1..=100, or over 20 with values/all metadata      | Vectorize |
//! | 40026 | 400  | a JSON body not sent as application/json, not parsing, or with a field its type lacks or of another type | observed ([`super::vectorize_bodies`]) |
//! | 40027 | 400  | invalid filter, incl. a property without metadata index       | chosen   |
//! | 40030 | 400  | metadata index refused (type, name, 10 max, duplicate, none)  | chosen   |
//! | 40031 | 400  | list: count outside 1..=1000, or a cursor not from a listing  | chosen   |
//!
//! The index list is one page without `result_info`: the SDKs read it as a
//! `SinglePage` (cloudflare-typescript `indexes.ts` `list`, cloudflare-go
//! `vectorize/index.go` `List`, cloudflare-python
//! `resources/vectorize/indexes/indexes.py`), and wrangler's
//! `fetchListResult` (`packages/workers-utils/src/cfetch/index.ts`) asks
//! for more only when `result_info.cursor` is set.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::d1::blocking;
use super::envelope::{ok, ApiError};
use super::vectorize_bodies::{
    json_body, CreateBody, Ids, MetadataIndexBody, MetadataIndexName, MetadataLevel, QueryBody,
};
use super::vectorize_query::{self as vq, IndexType, Metric};
use super::vectorize_store::{now_ms, rfc3339, Index, IndexConfig, Lookup, Matches, QueryPlan, WriteKind};
use super::vectorize_upload::{check_property, ndjson_of, parse_vectors, read_upload};
use super::State as Shared;

pub const CODE_NO_INDEX: u32 = 3000;
pub const CODE_DUPLICATE: u32 = 3002;
pub const CODE_DELETED: u32 = 3005;
pub const CODE_CONFIG: u32 = 40002;
pub const CODE_QUERY: u32 = 40006;
pub const CODE_TOO_MANY_IDS: u32 = 40007;
pub const CODE_ID: u32 = 40008;
pub const CODE_NAMESPACE: u32 = 40009;
pub const CODE_DIMENSIONS: u32 = 40012;
pub const CODE_METADATA: u32 = 40013;
pub const CODE_TOO_MANY_VECTORS: u32 = 40014;
pub const CODE_TOO_LARGE: u32 = 40015;
pub const CODE_UPLOAD: u32 = 40023;
pub const CODE_TOP_K: u32 = 40025;
pub const CODE_FILTER: u32 = 40027;
pub const CODE_METADATA_INDEX: u32 = 40030;
pub const CODE_LIST: u32 = 40031;

// Source: cloudflare-docs `src/content/docs/vectorize/platform/limits.mdx` (1536 dimensions);
// the id counts are observed (see the table above); the filter size is
// `src/content/docs/vectorize/reference/metadata-filtering.mdx` ("less than 2048 bytes").
pub const MAX_DIMENSIONS: u64 = 1536;
pub const MAX_GET_IDS: usize = 20;
pub const MAX_DELETE_IDS: usize = 100;
pub const MAX_FILTER_BYTES: usize = 2048;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    const IX: &str = "/client/v4/accounts/{account}/vectorize/v2/indexes";
    let at = |tail: &str| format!("{IX}/{{name}}{tail}");
    Router::new()
        .route(IX, get(list_indexes).post(create_index))
        .route(&at(""), get(get_index).delete(delete_index))
        .route(&at("/insert"), post(insert))
        .route(&at("/upsert"), post(upsert))
        .route(&at("/get_by_ids"), post(get_by_ids))
        .route(&at("/delete_by_ids"), post(delete_by_ids))
        .route(&at("/query"), post(query))
        .route(&at("/info"), get(info))
        .route(&at("/list"), get(list_vectors))
        .route(&at("/metadata_index/create"), post(create_metadata_index))
        .route(&at("/metadata_index/list"), get(list_metadata_indexes))
        .route(&at("/metadata_index/delete"), post(delete_metadata_index))
}

type Answer = Result<Response, ApiError>;

/// The live index of this name. An unknown name is HTTP 400, code 3000,
/// `vectorize.index.not_found - Index name "x"` (observed; the SDKs map
/// only a 404 to NotFound, cloudflare-python `_client.py`
/// `_make_status_error`, so a client keyed on 404 misses it); a name
/// deleted lately is HTTP 410, code 3005, `vectorize.index.deleted`
/// (observed), for [`super::vectorize_store::DELETED_ANSWER_FOR`].
fn index(st: &Shared, name: &str) -> Result<Arc<Index>, ApiError> {
    match st.vectorize.lookup(name) {
        Lookup::Live(index) => Ok(index),
        Lookup::Deleted => Err(ApiError::new(
            StatusCode::GONE,
            CODE_DELETED,
            format!("vectorize.index.deleted - Index name {name:?} was deleted"),
        )),
        Lookup::Missing => {
            Err(ApiError::bad(CODE_NO_INDEX, format!("vectorize.index.not_found - Index name {name:?}")))
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The model presets wrangler offers (`vectorize create --preset`).
/// Source: cloudflare/workers-sdk `packages/wrangler/src/vectorize/create.ts` (`preset` choices),
/// cloudflare-python `src/cloudflare/types/vectorize/index_create_params.py` (the same five);
/// dimensions: cloudflare-docs `src/content/docs/vectorize/best-practices/create-indexes.mdx`
/// (bge-base 768, ada-002 1536, embed-multilingual-v2.0 768),
/// `content/workers-ai/models/bge-small-en-v1.5.md` (384), `bge-large-en-v1.5.md` (1024).
/// The metric (cosine): none found; a guess (the strictest reading).
fn preset(name: &str) -> Option<(u64, Metric)> {
    Some(match name {
        "@cf/baai/bge-small-en-v1.5" => (384, Metric::Cosine),
        "@cf/baai/bge-base-en-v1.5" | "cohere/embed-multilingual-v2.0" => (768, Metric::Cosine),
        "@cf/baai/bge-large-en-v1.5" => (1024, Metric::Cosine),
        "openai/text-embedding-ada-002" => (1536, Metric::Cosine),
        _ => return None,
    })
}

async fn create_index(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Answer {
    let body: CreateBody = json_body(&headers, &body)?;
    if !valid_name(&body.name) {
        return Err(ApiError::bad(
            CODE_CONFIG,
            format!(
                "invalid index name {:?}: use 1 to 64 lowercase letters, digits and `-`, starting with a letter",
                body.name
            ),
        ));
    }
    let (dimensions, metric) = match (&body.config.preset, &body.config.dimensions, &body.config.metric) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::bad(
                CODE_CONFIG,
                "config holds either a preset or dimensions and metric, not both",
            ))
        }
        (Some(p), _, _) => {
            preset(p).ok_or_else(|| ApiError::bad(CODE_CONFIG, format!("unknown preset {p:?}")))?
        }
        (None, Some(d), Some(m)) => {
            let dims = d.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)).ok_or_else(|| {
                ApiError::bad(
                    CODE_CONFIG,
                    format!("config.dimensions must be an integer from 1 to {MAX_DIMENSIONS}, got {d}"),
                )
            })?;
            let metric = Metric::parse(m).ok_or_else(|| {
                ApiError::bad(
                    CODE_CONFIG,
                    format!("config.metric must be cosine, euclidean or dot-product, got {m:?}"),
                )
            })?;
            (dims, metric)
        }
        _ => return Err(ApiError::bad(CODE_CONFIG, "config needs dimensions and metric (or a preset)")),
    };
    let now = rfc3339(now_ms());
    let config = IndexConfig {
        name: body.name.clone(),
        description: body.description.unwrap_or_default(),
        dimensions: dimensions as usize,
        metric,
        created_on: now.clone(),
        modified_on: now,
    };
    let store = st.clone();
    let created = blocking(move || store.vectorize.create(config)).await?;
    // Code and text observed (`vectorize.index.duplicate_name - Index name
    // "x"`, code 3002); the status is not known: 400, as the unknown index.
    let index = created.ok_or_else(|| {
        ApiError::bad(CODE_DUPLICATE, format!("vectorize.index.duplicate_name - Index name {:?}", body.name))
    })?;
    Ok(ok(index.config.json()))
}

async fn list_indexes(State(st): State<Arc<Shared>>) -> Answer {
    Ok(ok(Value::Array(st.vectorize.list().iter().map(|i| i.config.json()).collect())))
}

async fn get_index(State(st): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    Ok(ok(index(&st, &name)?.config.json()))
}

async fn delete_index(State(st): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    index(&st, &name)?;
    let (store, name_) = (st.clone(), name.clone());
    let gone = blocking(move || Ok(store.vectorize.delete(&name_))).await?;
    if !gone {
        // Deleted by a concurrent request between the two steps.
        return Err(index(&st, &name).err().unwrap_or_else(|| ApiError::internal("index deleted twice")));
    }
    Ok(ok(Value::Null))
}

async fn insert(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    write(st, name, q, headers, body, WriteKind::Insert).await
}

async fn upsert(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    write(st, name, q, headers, body, WriteKind::Upsert).await
}

async fn write(
    st: Arc<Shared>,
    name: String,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
    kind: WriteKind,
) -> Answer {
    let index = index(&st, &name)?;
    // Source: cloudflare-python `src/cloudflare/types/vectorize/index_upsert_params.py`,
    // `index_insert_params.py` (`unparsable-behavior`: "error" or "discard", "Behavior for ndjson
    // parse failures"). That discard skips the line and error refuses the request: none found; a
    // guess (the strictest reading).
    let discard = match q.get("unparsable-behavior").map(String::as_str) {
        None | Some("error") => false,
        Some("discard") => true,
        Some(other) => {
            return Err(ApiError::bad(
                CODE_UPLOAD,
                format!("unparsable-behavior must be error or discard, got {other:?}"),
            ))
        }
    };
    let body = read_upload(&headers, body).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mutation = blocking(move || {
        let ndjson = ndjson_of(content_type.as_deref(), &body)?;
        let vectors = parse_vectors(ndjson, index.config.dimensions, discard)?;
        index.write_vectors(kind, &vectors)
    })
    .await?;
    Ok(mutation_answer(mutation))
}

async fn get_by_ids(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let index = index(&st, &name)?;
    let Ids { ids } = json_body(&headers, &body)?;
    if ids.len() > MAX_GET_IDS {
        return Err(ApiError::bad(
            CODE_TOO_MANY_IDS,
            format!("too many ids in payload; max id count is {MAX_GET_IDS}, got {}", ids.len()),
        ));
    }
    let found = blocking(move || index.get_by_ids(&ids)).await?;
    let out = found
        .into_iter()
        .map(|v| {
            json!({
                "id": v.id,
                "values": vq::values_json(&v.values),
                "metadata": v.metadata.map_or(Value::Null, Value::Object),
                "namespace": v.namespace,
            })
        })
        .collect();
    Ok(ok(Value::Array(out)))
}

async fn delete_by_ids(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let index = index(&st, &name)?;
    let Ids { ids } = json_body(&headers, &body)?;
    if ids.is_empty() || ids.len() > MAX_DELETE_IDS {
        return Err(ApiError::bad(
            CODE_TOO_MANY_IDS,
            format!("too many ids in payload (or none); max id count is {MAX_DELETE_IDS}, got {}", ids.len()),
        ));
    }
    let mutation = blocking(move || index.delete_ids(&ids)).await?;
    Ok(mutation_answer(mutation))
}

/// The answer to a write: the mutation id and nothing else (no count of
/// vectors), as cloudflare-python's `types/vectorize/index_upsert_response.py`,
/// `index_insert_response.py`, `index_delete_by_ids_response.py` and
/// wrangler's `VectorizeAsyncMutation` (packages/wrangler/src/vectorize/types.ts)
/// declare it; wrangler counts the vectors it sent itself.
fn mutation_answer(mutation: String) -> Response {
    ok(json!({ "mutationId": mutation }))
}

async fn query(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let index = index(&st, &name)?;
    let q: QueryBody = json_body(&headers, &body)?;
    let level = q.level();
    let return_values = q.return_values.unwrap_or(false);
    let top_k = q.top_k(CODE_TOP_K)?;
    if let Some(f) = &q.filter {
        let size = serde_json::to_string(f).map_or(usize::MAX, |t| t.len());
        if size >= MAX_FILTER_BYTES {
            return Err(ApiError::bad(
                CODE_FILTER,
                format!("the filter is {size} bytes of JSON; it must be under {MAX_FILTER_BYTES}"),
            ));
        }
    }
    let dims = index.config.dimensions;
    let vector = match (&q.vector, &q.vector_id) {
        (Some(v), None) if v.len() != dims => {
            return Err(ApiError::bad(
                CODE_QUERY,
                format!("invalid query vector, expected {dims} dimensions, and got {} dimensions", v.len()),
            ))
        }
        (Some(v), None) => Some(v.iter().map(|&f| f as f32).collect::<Vec<f32>>()),
        (None, Some(_)) => None,
        _ => return Err(ApiError::bad(CODE_QUERY, "give either `vector` or `vectorId`")),
    };
    if vector.as_ref().is_some_and(|v| v.iter().any(|f| !f.is_finite())) {
        return Err(ApiError::bad(CODE_QUERY, "the query vector holds a value outside the float32 range"));
    }
    let plan = QueryPlan {
        vector,
        vector_id: q.vector_id,
        top_k,
        namespace: q.namespace,
        filter: q.filter.map(Value::Object),
    };
    let Matches { found, indexes } = blocking(move || index.query(&plan)).await?;
    let matches: Vec<Value> = found
        .into_iter()
        .map(|(hit, v)| {
            let mut m = Map::new();
            m.insert("id".into(), Value::String(v.id));
            m.insert("score".into(), json!(hit.score));
            if return_values {
                m.insert("values".into(), vq::values_json(&v.values));
            }
            match level {
                MetadataLevel::None => {}
                MetadataLevel::Indexed => {
                    let shown = vq::indexed_metadata(v.metadata.as_ref(), v.written_seq, &indexes);
                    m.insert("metadata".into(), Value::Object(shown));
                }
                MetadataLevel::All => {
                    m.insert("metadata".into(), v.metadata.map_or(Value::Null, Value::Object));
                }
            }
            if let Some(ns) = v.namespace {
                m.insert("namespace".into(), Value::String(ns));
            }
            Value::Object(m)
        })
        .collect();
    Ok(ok(json!({ "count": matches.len(), "matches": matches })))
}

async fn info(State(st): State<Arc<Shared>>, Path((_, name)): Path<(String, String)>) -> Answer {
    let index = index(&st, &name)?;
    let dims = index.config.dimensions;
    let info = blocking(move || index.info()).await?;
    Ok(ok(json!({
        "dimensions": dims,
        "vectorCount": info.vector_count,
        "processedUpToDatetime": info.accepted_ms.map(rfc3339),
        // Source: cloudflare/workerd `types/defines/vectorize.d.ts` `VectorizeIndexInfo` (the last
        // mutation processed: "All changes before this mutation will be reflected in the index
        // state"); cloudflare-python `src/cloudflare/types/vectorize/index_info_response.py`.
        "processedUpToMutation": info.mutation,
    })))
}

async fn list_vectors(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let index = index(&st, &name)?;
    // Source: cloudflare/workers-sdk `packages/wrangler/src/vectorize/listVectors.ts` (`--count`:
    // "Maximum number of vectors to return (1-1000)"). The default 100: none found; a guess.
    let count = match q.get("count") {
        None => 100,
        Some(c) => c.parse::<usize>().ok().filter(|c| (1..=1000).contains(c)).ok_or_else(|| {
            ApiError::bad(CODE_LIST, format!("count must be a whole number from 1 to 1000, got {c:?}"))
        })?,
    };
    // The cursor is the last id returned (hex): it stays valid for as long
    // as ids sort the same, which is forever.
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(hex::decode(c).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
            ApiError::bad(CODE_LIST, format!("cursor {c:?} was not returned by a listing of this emulator"))
        })?),
    };
    let (ids, total, more) = blocking(move || index.list_ids(after.as_deref(), count)).await?;
    let next = ids.last().filter(|_| more).map(hex::encode);
    let expires = next.as_ref().map(|_| rfc3339(now_ms() + 3_600_000));
    Ok(ok(json!({
        "count": ids.len(),
        "totalCount": total,
        "isTruncated": more,
        "nextCursor": next,
        "cursorExpirationTimestamp": expires,
        "vectors": ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
    })))
}

async fn create_metadata_index(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let index = index(&st, &name)?;
    let b: MetadataIndexBody = json_body(&headers, &body)?;
    check_property(&b.property_name).map_err(|e| ApiError::bad(CODE_METADATA_INDEX, e))?;
    let t = IndexType::parse(&b.index_type).ok_or_else(|| {
        ApiError::bad(
            CODE_METADATA_INDEX,
            format!("indexType must be string, number or boolean, got {:?}", b.index_type),
        )
    })?;
    let mutation = blocking(move || index.create_metadata_index(&b.property_name, t)).await?;
    // Source: cloudflare-python `src/cloudflare/types/vectorize/indexes/metadata_index_create_response.py`
    // (`mutationId`); wrangler `packages/wrangler/src/vectorize/client.ts` (`VectorizeAsyncMutation`).
    Ok(ok(json!({ "mutationId": mutation })))
}

async fn list_metadata_indexes(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
) -> Answer {
    let index = index(&st, &name)?;
    let all = blocking(move || index.metadata_indexes()).await?;
    let list: Vec<Value> =
        all.iter().map(|(p, i)| json!({ "propertyName": p, "indexType": i.index_type.as_str() })).collect();
    Ok(ok(json!({ "metadataIndexes": list })))
}

async fn delete_metadata_index(
    State(st): State<Arc<Shared>>,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let index = index(&st, &name)?;
    let b: MetadataIndexName = json_body(&headers, &body)?;
    let mutation = blocking(move || index.delete_metadata_index(&b.property_name)).await?;
    // Source: cloudflare-python `src/cloudflare/types/vectorize/indexes/metadata_index_delete_response.py`
    // (`mutationId`); wrangler `packages/wrangler/src/vectorize/client.ts` (`VectorizeAsyncMutation`).
    Ok(ok(json!({ "mutationId": mutation })))
}
