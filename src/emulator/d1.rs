//! The D1 endpoints under `/client/v4/accounts/{account}/d1/database`:
//! create, list and show databases, and `query`/`raw` (one transaction per
//! request, one result per statement). Import and export live in
//! [`super::d1_import`], the Time Travel bookmark in
//! [`super::d1_time_travel`]. SQLite work runs in `spawn_blocking`.
//!
//! Query bodies are held to the OpenAPI schema (cloudflare-python
//! `types/d1/database_query_params.py`, workers-sdk
//! `packages/miniflare/src/workers/local-explorer/generated/zod.gen.ts`
//! `zD1BatchQuery`): `{sql, params?}` or `{batch: [{sql, params?}]}` with
//! `params` an array of strings; anything else (a number or null among the
//! params, an unknown field) is refused with HTTP 400 and code 10001, as
//! Cloudflare's own local explorer refuses a body its schema does not allow
//! (`local-explorer/common.ts` `validationHook`). While an import or
//! export runs, queries on that database are refused (HTTP 400, code 7500,
//! "Currently processing a long-running import." as observed).

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::d1_exec::{Entry, Outcome};
use super::d1_import::{self, Transfers};
use super::d1_jobs::TransferOptions;
use super::d1_store::{valid_id, Db, Store};
use super::envelope::{ok, parse, ApiError, CODE_SQL};
use super::server::{DOWNLOAD_PREFIX, UPLOAD_PREFIX};
use super::State as Shared;
use crate::error::Result;

/// D1's part of the shared state.
pub(crate) struct D1 {
    pub store: Arc<Store>,
    pub transfers: Transfers,
}

impl D1 {
    pub fn new(store: Store, data_dir: &FsPath, opts: TransferOptions) -> Result<D1> {
        Ok(D1 { store: Arc::new(store), transfers: Transfers::new(data_dir, opts)? })
    }

    /// The database of a path, or D1's 404.
    pub fn db(&self, id: &str) -> std::result::Result<Arc<Db>, ApiError> {
        valid_id(id).then(|| self.store.get(id)).flatten().ok_or_else(|| ApiError::no_database(id))
    }
}

/// A body the schema does not allow: HTTP 400, code 10001, the field's
/// path in the message (workers-sdk `local-explorer/common.ts`).
pub fn schema_error(message: impl Into<String>) -> ApiError {
    ApiError::bad(10001, message)
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    const DB: &str = "/client/v4/accounts/{account}/d1/database";
    Router::new()
        .route(DB, get(list).post(create))
        .route(&format!("{DB}/{{db}}"), get(show))
        .route(&format!("{DB}/{{db}}/query"), post(query))
        .route(&format!("{DB}/{{db}}/raw"), post(raw))
        .route(&format!("{DB}/{{db}}/import"), post(d1_import::import))
        .route(&format!("{DB}/{{db}}/export"), post(d1_import::export))
        .route(&format!("{DB}/{{db}}/time_travel/bookmark"), get(super::d1_time_travel::bookmark))
        .route(&format!("{UPLOAD_PREFIX}{{id}}"), put(d1_import::upload))
        .route(&format!("{DOWNLOAD_PREFIX}{{id}}"), get(d1_import::download))
}

/// Runs blocking SQLite work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, ApiError> + Send + 'static,
) -> std::result::Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
}

/// The database list, paged as the SDKs page it (cloudflare-python
/// `pagination.py` `V4PagePaginationArray` asks for the next `page` until
/// one comes back empty; wrangler `d1/list.ts` until one is short): `page`
/// from 1, `per_page` 10..=10000 (the API reference's bounds; the default,
/// not documented, is taken as the smallest), and `result_info`.
/// Items hold the fields of cloudflare-python's
/// `types/d1/database_list_response.py` (no size or table count: those are
/// in the single database's answer, `types/d1/d1.py`).
async fn list(
    State(st): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    let number = |key: &str, default: usize, range: std::ops::RangeInclusive<usize>| {
        let Some(text) = q.get(key) else { return Ok(default) };
        text.parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| schema_error(format!("{key}: expected a number in {range:?}, received `{text}`")))
    };
    let page = number("page", 1, 1..=usize::MAX)?;
    let per_page = number("per_page", 10, 10..=10_000)?;
    let dbs: Vec<Arc<Db>> = st
        .d1
        .store
        .list()
        .into_iter()
        .filter(|d| q.get("name").is_none_or(|n| *n == d.record.name))
        .collect();
    let total = dbs.len();
    let items: Vec<Value> = dbs
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|d| {
            let r = &d.record;
            json!({ "uuid": r.uuid, "name": r.name, "created_at": r.created_at, "version": "production" })
        })
        .collect();
    let info = json!({ "page": page, "per_page": per_page, "count": items.len(), "total_count": total });
    let body = json!({ "success": true, "errors": [], "messages": [], "result": items, "result_info": info });
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
}

async fn create(State(st): State<Arc<Shared>>, body: Bytes) -> std::result::Result<Response, ApiError> {
    let body: CreateBody = parse(&body)?;
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("A database name is required"));
    }
    let store = st.d1.store.clone();
    let info = blocking(move || match store.create(&body.name) {
        Ok(Some(db)) => Ok(db.info()),
        // Source: cloudflare/workers-sdk `packages/wrangler/src/d1/create.ts` (code 7502 means "A
        // database with that name already exists"); the real answer read "Internal error [code: 7502]"
        // in workers-sdk PR #2143. Its HTTP status is not known: 400 is a guess.
        Ok(None) => {
            Err(ApiError::bad_request(format!("A database with the name {} already exists", body.name))
                .with_code(7502))
        }
        Err(e) => Err(ApiError::internal(e.to_string())),
    })
    .await?;
    Ok(ok(info))
}

async fn show(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
) -> std::result::Result<Response, ApiError> {
    // wrangler looks a database up by name on this path (`d1/utils.ts`
    // `getDatabaseByNameOrBinding`, `getDatabaseInfoFromIdOrName`): an id
    // first, else a name answers like its id.
    let db = match st.d1.db(&id) {
        Ok(db) => db,
        Err(unknown) => st.d1.store.list().into_iter().find(|d| d.record.name == id).ok_or(unknown)?,
    };
    Ok(ok(blocking(move || Ok(db.info())).await?))
}

/// One query of the schema: `sql` and optional `params`, all strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SingleQuery {
    sql: String,
    #[serde(default)]
    params: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchQuery {
    batch: Vec<SingleQuery>,
}

/// The statements of a query body, or the schema's refusal.
fn entries(body: &[u8]) -> std::result::Result<Vec<Entry>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| schema_error(format!("body: {e}")))?;
    let entry =
        |q: SingleQuery| Entry { sql: q.sql, params: q.params.into_iter().map(Value::String).collect() };
    if v.get("batch").is_some() {
        let b: BatchQuery = serde_json::from_value(v).map_err(|e| schema_error(format!("batch: {e}")))?;
        if b.batch.is_empty() {
            return Err(schema_error("batch: expected at least one query"));
        }
        return Ok(b.batch.into_iter().map(entry).collect());
    }
    let q: SingleQuery = serde_json::from_value(v).map_err(|e| schema_error(format!("body: {e}")))?;
    Ok(vec![entry(q)])
}

async fn query(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    let outcomes = run(&st, &id, &body).await?;
    let results = outcomes
        .into_iter()
        .map(|o| {
            let rows: Vec<Value> = o
                .rows
                .into_iter()
                .map(|r| Value::Object(o.columns.iter().cloned().zip(r).collect()))
                .collect();
            json!({ "results": rows, "success": true, "meta": o.meta })
        })
        .collect();
    Ok(ok(Value::Array(results)))
}

async fn raw(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    let outcomes = run(&st, &id, &body).await?;
    let results = outcomes
        .into_iter()
        .map(|o| json!({ "results": { "columns": o.columns, "rows": o.rows }, "success": true, "meta": o.meta }))
        .collect();
    Ok(ok(Value::Array(results)))
}

/// Parses a query/raw body and runs it as one transaction.
async fn run(st: &Shared, id: &str, body: &[u8]) -> std::result::Result<Vec<Outcome>, ApiError> {
    let db = st.d1.db(id)?;
    let entries = entries(body)?;
    if let Some(kind) = st.d1.transfers.jobs.busy(&db.record.uuid) {
        return Err(ApiError::bad(CODE_SQL, kind.busy()));
    }
    blocking(move || db.lock().run_request(&entries).map_err(|e| ApiError::sql(e.0))).await
}

impl ApiError {
    fn with_code(mut self, code: u32) -> ApiError {
        self.code = code;
        self
    }
}

/// 404 for an unknown upload or export id (no envelope: R2 answers XML).
pub fn not_found_plain() -> Response {
    (StatusCode::NOT_FOUND, "NoSuchKey: the URL is unknown or expired\n").into_response()
}
