//! The D1 endpoints under `/client/v4/accounts/{account}/d1/database`:
//! create, list and show databases, and `query`/`raw` (one transaction per
//! request, one result per statement). Import and export live in
//! [`super::d1_import`]. SQLite work runs in `spawn_blocking`.

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
use super::d1_store::{valid_id, Db, Store};
use super::envelope::{ok, parse, ApiError};
use super::server::{DOWNLOAD_PREFIX, UPLOAD_PREFIX};
use super::State as Shared;
use crate::error::Result;

/// D1's part of the shared state.
pub(crate) struct D1 {
    pub store: Arc<Store>,
    pub transfers: Transfers,
}

impl D1 {
    pub fn new(store: Store, data_dir: &FsPath) -> Result<D1> {
        Ok(D1 { store: Arc::new(store), transfers: Transfers::new(data_dir)? })
    }

    /// The database of a path, or D1's 404.
    pub fn db(&self, id: &str) -> std::result::Result<Arc<Db>, ApiError> {
        valid_id(id).then(|| self.store.get(id)).flatten().ok_or_else(|| ApiError::no_database(id))
    }
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

/// The database list, paged as the SDKs read it: `page` (from 1) and
/// `per_page`, with `result_info`. cloudflare-python's
/// `SyncV4PagePaginationArray` (cloudflare/pagination.py) asks for page + 1
/// until a page comes back empty and wrangler's `listDatabases`
/// (packages/wrangler/src/d1/list.ts) until one is shorter than its
/// `per_page` of 10: a list that ignores `page` makes both loop for ever.
/// Items hold the fields of cloudflare-python's
/// `types/d1/database_list_response.py` (no size or table count: those are
/// in the single database's answer, `types/d1/d1.py`).
async fn list(
    State(st): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    let number = |key: &str, default: usize| match q.get(key) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::bad_request(format!("`{key}` must be a whole number of at least 1, got {v:?}"))
        }),
    };
    let (page, per_page) = (number("page", 1)?, number("per_page", 1000)?.min(10_000));
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
    let db = st.d1.db(&id)?;
    Ok(ok(blocking(move || Ok(db.info())).await?))
}

#[derive(Deserialize)]
struct QueryBody {
    sql: Option<String>,
    #[serde(default)]
    params: Vec<Value>,
    batch: Option<Vec<BatchEntry>>,
}

#[derive(Deserialize)]
struct BatchEntry {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
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
    let body: QueryBody = parse(body)?;
    let entries: Vec<Entry> = match (body.sql, body.batch) {
        (Some(sql), None) => vec![Entry { sql, params: body.params }],
        (None, Some(batch)) if !batch.is_empty() => {
            batch.into_iter().map(|b| Entry { sql: b.sql, params: b.params }).collect()
        }
        _ => {
            return Err(ApiError::bad_request(
                "Give either `sql` (with optional `params`) or a non-empty `batch`",
            ))
        }
    };
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
