//! D1's file import (what `wrangler d1 execute --remote --file` does) and
//! export, with the field names wrangler reads (workers-sdk
//! `packages/wrangler/src/d1/execute.ts`, `export.ts`, `types.ts`), run as
//! the asynchronous jobs of [`super::d1_jobs`]:
//!
//! - `init {etag}` -> `{success, filename, upload_url}`; when a file with
//!   that MD5 was already uploaded to this database, the import starts at
//!   once and the answer is a poll answer (wrangler tells the two apart by
//!   `upload_url`);
//! - `PUT upload_url` (no token) -> 200 with `ETag: "<md5>"`;
//! - `ingest {filename, etag}` and `poll {current_bookmark}` ->
//!   `{success, type: "import", at_bookmark, status, messages, errors}`, plus
//!   `result {final_bookmark, num_queries, meta}` when complete; a failure
//!   in the form [`FailureForm`] says;
//! - export `{output_format: "polling", dump_options, current_bookmark}` ->
//!   the same polling answers with `result {filename, signed_url}`.
//!
//! Bodies are checked against the OpenAPI schema's types (cloudflare-python
//! `types/d1/database_import_params.py`: `init`, `ingest` and `poll` each
//! with their required fields; `database_export_params.py`), unknown fields
//! refused, the way Cloudflare's own local explorer refuses a body its
//! schema does not allow (HTTP 400, code 10001: workers-sdk
//! `packages/miniflare/src/workers/local-explorer/common.ts`
//! `validationHook`). A poll without a bookmark is such a body.
//!
//! The import runs in a background task as one transaction; a failed file
//! leaves the database unchanged (Source: cloudflare/workers-sdk
//! `packages/wrangler/src/d1/execute.ts`: "if the execution fails to complete, your DB will return
//! to its original state and you can safely retry"). A start while another job holds the
//! database is refused as `{success: false, error}` (observed: "Currently
//! processing a long-running export. Cannot start a new export until that
//! completes or times out." printed by wrangler without an error code, so
//! from its `PollingFailure` branch).

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::d1::{not_found_plain, schema_error};
use super::d1_dump::{dump, DumpError, DumpOptions};
use super::d1_jobs::{Ended, FailureForm, Jobs, Kind, Seen, TransferOptions};
use super::d1_store::Db;
use super::envelope::{ok, ApiError};
use super::server::{DOWNLOAD_PREFIX, UPLOAD_PREFIX};
use super::State as Shared;
use crate::error::{Error, Result};

struct UploadSlot {
    db: String,
    filename: String,
}

#[derive(Clone)]
struct Uploaded {
    path: PathBuf,
    etag: String,
}

/// Uploads, jobs and export files (in memory: they do not survive a
/// restart, like D1's short-lived signed URLs).
pub(crate) struct Transfers {
    dir: PathBuf,
    uploads: Mutex<HashMap<String, UploadSlot>>,
    /// (database id, filename) -> the uploaded file.
    files: Mutex<HashMap<(String, String), Uploaded>>,
    pub jobs: Arc<Jobs>,
    /// Export download id -> dump file.
    exports: Arc<Mutex<HashMap<String, PathBuf>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Transfers {
    pub fn new(data_dir: &FsPath, opts: TransferOptions) -> Result<Transfers> {
        let dir = data_dir.join("transfers");
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(Transfers {
            dir,
            uploads: Mutex::default(),
            files: Mutex::default(),
            jobs: Arc::new(Jobs::new(opts)),
            exports: Arc::default(),
        })
    }
}

static BOOKMARKS: AtomicU64 = AtomicU64::new(1);

/// A D1-looking bookmark (`0000000a-00000001-...`), unique per emulator run.
fn bookmark() -> String {
    let n = BOOKMARKS.fetch_add(1, Ordering::Relaxed);
    format!("{n:08x}-00000001-{}", random_hex(12))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

/// `http://<host the client used>`: the upload and download URLs must
/// reach this emulator however the client addressed it.
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The import body: one of the schema's three actions, nothing else.
#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
enum ImportBody {
    Init { etag: String },
    Ingest { filename: String, etag: String },
    Poll { current_bookmark: String },
}

pub async fn import(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    let db = st.d1.db(&id)?;
    let body: ImportBody =
        serde_json::from_slice(&body).map_err(|e| schema_error(format!("import body: {e}")))?;
    let t = &st.d1.transfers;
    match body {
        ImportBody::Init { etag } => {
            if !(etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(schema_error("etag: expected the MD5 (32 hex digits) of the file"));
            }
            let filename = format!("{}.sql", etag.to_ascii_lowercase());
            let done = locked(&t.files).get(&(id.clone(), filename.clone())).cloned();
            if let Some(up) = done.filter(|u| u.etag.eq_ignore_ascii_case(&etag)) {
                return Ok(ok(start_import(t, db, up.path).await));
            }
            if let Some(kind) = t.jobs.busy(&id) {
                return Ok(ok(refusal(&kind.busy())));
            }
            let upload_id = random_hex(16);
            locked(&t.uploads).insert(upload_id.clone(), UploadSlot { db: id, filename: filename.clone() });
            let upload_url = format!("{}{UPLOAD_PREFIX}{upload_id}", origin(&headers));
            Ok(ok(json!({ "success": true, "filename": filename, "upload_url": upload_url })))
        }
        ImportBody::Ingest { filename, etag } => {
            let up = locked(&t.files).get(&(id, filename.clone())).cloned().ok_or_else(|| {
                ApiError::bad_request(format!("{filename} was not uploaded: PUT it to the upload_url first"))
            })?;
            if !up.etag.eq_ignore_ascii_case(&etag) {
                return Err(ApiError::bad_request(format!(
                    "the uploaded file's MD5 is {}, not the etag {etag}: upload it again",
                    up.etag
                )));
            }
            Ok(ok(start_import(t, db, up.path).await))
        }
        ImportBody::Poll { current_bookmark } => {
            Ok(ok(answer(t, Kind::Import, &current_bookmark, t.jobs.poll(&current_bookmark, Kind::Import))))
        }
    }
}

/// `{success: false, error}`: wrangler's `PollingFailure`.
fn refusal(message: &str) -> Value {
    json!({ "success": false, "error": message })
}

/// Starts the import in a blocking task and answers as its first poll
/// (after waiting up to a second for it when no active answers are due,
/// as D1 does: "The server delays before responding in case the file is
/// quite small", execute.ts).
async fn start_import(t: &Transfers, db: Arc<Db>, path: PathBuf) -> Value {
    let bm = bookmark();
    if let Err(kind) = t.jobs.start(&db.record.uuid, Kind::Import, &bm) {
        return refusal(&kind.busy());
    }
    let (jobs, key) = (t.jobs.clone(), bm.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let ended = match std::fs::File::open(&path) {
            Ok(f) => match db.lock().run_file(BufReader::new(f)) {
                Ok((num_queries, meta)) => Ended::Complete(
                    json!({ "final_bookmark": bookmark(), "num_queries": num_queries, "meta": meta }),
                ),
                Err(e) => Ended::Failed(e.0),
            },
            Err(e) => Ended::Failed(format!("reading the uploaded file: {e}")),
        };
        jobs.end(&key, ended);
        let _ = tx.send(());
    });
    if t.jobs.options().polls == 0 {
        let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
    }
    answer(t, Kind::Import, &bm, t.jobs.poll(&bm, Kind::Import))
}

/// A poll answer of a job, its failure in the configured form.
fn answer(t: &Transfers, kind: Kind, bm: &str, seen: Seen) -> Value {
    let mut v = json!({ "success": true, "type": kind.name(), "at_bookmark": bm, "messages": [] });
    if kind == Kind::Import {
        v["errors"] = json!([]);
    }
    match seen {
        Seen::Unknown => return refusal(kind.nothing()),
        Seen::Active => v["status"] = "active".into(),
        Seen::Ended(Ended::Complete(result)) => {
            v["status"] = "complete".into();
            v["result"] = result;
        }
        Seen::Ended(Ended::Failed(msg)) => match (t.jobs.options().failure, kind) {
            (FailureForm::Refusal, _) => return refusal(&msg),
            (FailureForm::Wrangler, Kind::Import) => {
                v["status"] = "error".into();
                v["errors"] = json!([msg]);
            }
            (FailureForm::Wrangler | FailureForm::Schema, _) => {
                v["status"] = "error".into();
                v["error"] = msg.into();
            }
        },
    }
    v
}

/// `PUT upload_url`: stores the body, answers its MD5 as the ETag.
pub async fn upload(State(st): State<Arc<Shared>>, Path(id): Path<String>, body: Body) -> Response {
    let t = &st.d1.transfers;
    let Some((db, filename)) = locked(&t.uploads).get(&id).map(|s| (s.db.clone(), s.filename.clone())) else {
        return not_found_plain();
    };
    let path = t.dir.join(format!("upload-{id}.sql"));
    let fail =
        |e: String| (StatusCode::INTERNAL_SERVER_ERROR, format!("upload failed: {e}\n")).into_response();
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(f) => f,
        Err(e) => return fail(e.to_string()),
    };
    let mut md5 = Md5::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("upload interrupted: {e}\n")).into_response(),
        };
        md5.update(&chunk);
        if let Err(e) = file.write_all(&chunk).await {
            return fail(e.to_string());
        }
    }
    if let Err(e) = file.flush().await {
        return fail(e.to_string());
    }
    let etag = hex::encode(md5.finalize());
    locked(&t.files).insert((db, filename), Uploaded { path, etag: etag.clone() });
    (StatusCode::OK, [(header::ETAG, format!("\"{etag}\""))]).into_response()
}

/// The export body (cloudflare-python `types/d1/database_export_params.py`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    output_format: OutputFormat,
    #[serde(default)]
    dump_options: DumpOptions,
    current_bookmark: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutputFormat {
    Polling,
}

/// `POST export`: without a bookmark it starts an export (the dump is
/// written by a background task), with one it polls it.
pub async fn export(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    let db = st.d1.db(&id)?;
    let raw: Value = serde_json::from_slice(&body).map_err(|e| schema_error(format!("export body: {e}")))?;
    // `current_bookmark: null` is not "absent": the schema types it as a
    // string, and taking it for a new export would hide a client's bug.
    if raw.get("current_bookmark").is_some_and(Value::is_null) {
        return Err(schema_error("current_bookmark: expected a string, received null"));
    }
    let body: ExportBody =
        serde_json::from_value(raw).map_err(|e| schema_error(format!("export body: {e}")))?;
    let OutputFormat::Polling = body.output_format;
    let t = &st.d1.transfers;
    if let Some(bm) = &body.current_bookmark {
        return Ok(ok(answer(t, Kind::Export, bm, t.jobs.poll(bm, Kind::Export))));
    }
    let bm = bookmark();
    if let Err(kind) = t.jobs.start(&id, Kind::Export, &bm) {
        let msg = match kind {
            Kind::Export => {
                format!("{} Cannot start a new export until that completes or times out.", kind.busy())
            }
            Kind::Import => kind.busy(),
        };
        return Ok(ok(refusal(&msg)));
    }
    let download_id = random_hex(16);
    let path = t.dir.join(format!("export-{download_id}.sql"));
    let signed_url = format!("{}{DOWNLOAD_PREFIX}{download_id}", origin(&headers));
    let (jobs, exports, key, opts) = (t.jobs.clone(), t.exports.clone(), bm.clone(), body.dump_options);
    let filename = format!("{id}-{bm}.sql");
    tokio::task::spawn_blocking(move || {
        let ended = match write_dump(&db, &opts, &path) {
            Ok(()) => {
                locked(&exports).insert(download_id, path);
                Ended::Complete(json!({ "filename": filename, "signed_url": signed_url }))
            }
            Err(e) => Ended::Failed(e),
        };
        jobs.end(&key, ended);
    });
    Ok(ok(answer(t, Kind::Export, &bm, t.jobs.poll(&bm, Kind::Export))))
}

/// Writes the dump of `db` to `path`. What D1's export refuses (a
/// database with virtual tables, columns its unquoted SELECT cannot name:
/// see [`super::d1_dump`] for the sources) ends the job as a failed export
/// with D1's text.
fn write_dump(db: &Db, opts: &DumpOptions, path: &FsPath) -> std::result::Result<(), String> {
    let conn = db.lock();
    conn.with_internal(|c| {
        let file = match std::fs::File::create(path) {
            Ok(f) => f,
            Err(e) => return Ok(Err(format!("export file: {e}"))),
        };
        let mut out = BufWriter::new(file);
        let written = match dump(c, opts, &mut out) {
            Err(DumpError::Refused(text)) => {
                let _ = std::fs::remove_file(path);
                return Ok(Err(text));
            }
            other => other.map_err(|e| e.to_string()).and_then(|()| out.flush().map_err(|e| e.to_string())),
        };
        Ok(written.map_err(|e| format!("export: {e}")))
    })
    .map_err(|e| e.to_string())?
}

/// `GET signed_url`: the dump (no token, like an R2 signed URL).
pub async fn download(State(st): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(path) = locked(&st.d1.transfers.exports).get(&id).cloned() else {
        return not_found_plain();
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let body = Body::from_stream(file_stream(f));
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/sql")], body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("export file: {e}\n")).into_response(),
    }
}

/// Streams a file in 64 KiB chunks (no tokio-util dependency needed).
fn file_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
