//! D1's file import (what `wrangler d1 execute --remote --file` does) and
//! export, with the field names wrangler reads (workers-sdk
//! `packages/wrangler/src/d1/execute.ts`, `export.ts`, `types.ts`):
//!
//! - `init {etag}` -> `{success, filename, upload_url}`; when a file with
//!   that MD5 was already uploaded to this database, the import starts at
//!   once and the answer is a poll answer (wrangler tells the two apart by
//!   `upload_url`);
//! - `PUT upload_url` (no token) -> 200 with `ETag: "<md5>"`;
//! - `ingest {filename, etag}` and `poll {current_bookmark}` ->
//!   `{success, type: "import", at_bookmark, status, messages, errors}`, plus
//!   `result {final_bookmark, num_queries, meta}` when complete, or `error`
//!   (and `errors`) with SQLite's message when it failed.
//!
//! The import runs in a background task as one transaction; a failed file
//! leaves the database unchanged. While it runs, other requests on that
//! database wait for it (they queue on the database's connection) rather
//! than fail; polls do not wait. Ingest waits up to a second before
//! answering, as D1 does, so small files need no second round trip.

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

use super::d1::{blocking, not_found_plain};
use super::d1_dump::{dump, DumpError, DumpOptions};
use super::d1_exec::Meta;
use super::d1_store::Db;
use super::envelope::{ok, parse, ApiError};
use super::server::{DOWNLOAD_PREFIX, UPLOAD_PREFIX};
use super::State as Shared;
use crate::error::{Error, Result};

#[derive(Clone)]
enum ImportStatus {
    Active,
    Complete { final_bookmark: String, num_queries: u64, meta: Meta },
    Error(String),
}

struct UploadSlot {
    db: String,
    filename: String,
}

#[derive(Clone)]
struct Uploaded {
    path: PathBuf,
    etag: String,
}

/// Uploads, imports and exports in flight or done (in memory: they do not
/// survive a restart, like D1's short-lived signed URLs).
pub(crate) struct Transfers {
    dir: PathBuf,
    uploads: Mutex<HashMap<String, UploadSlot>>,
    /// (database id, filename) -> the uploaded file.
    files: Mutex<HashMap<(String, String), Uploaded>>,
    imports: Arc<Mutex<HashMap<String, ImportStatus>>>,
    /// Export download id -> dump file; export bookmark -> its answer.
    exports: Mutex<HashMap<String, PathBuf>>,
    export_answers: Mutex<HashMap<String, Value>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Transfers {
    pub fn new(data_dir: &FsPath) -> Result<Transfers> {
        let dir = data_dir.join("transfers");
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(Transfers {
            dir,
            uploads: Mutex::default(),
            files: Mutex::default(),
            imports: Arc::default(),
            exports: Mutex::default(),
            export_answers: Mutex::default(),
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

#[derive(Deserialize)]
pub struct ImportBody {
    action: String,
    etag: Option<String>,
    filename: Option<String>,
    current_bookmark: Option<String>,
}

pub async fn import(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    let db = st.d1.db(&id)?;
    let body: ImportBody = parse(&body)?;
    let t = &st.d1.transfers;
    match body.action.as_str() {
        "init" => {
            let etag = body.etag.filter(|e| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()));
            let etag =
                etag.ok_or_else(|| ApiError::bad_request("init needs `etag`: the MD5 (hex) of the file"))?;
            let filename = format!("{}.sql", etag.to_ascii_lowercase());
            let done = locked(&t.files).get(&(id.clone(), filename.clone())).cloned();
            if let Some(up) = done.filter(|u| u.etag.eq_ignore_ascii_case(&etag)) {
                let (bm, rx) = start_import(t, db, up.path);
                return Ok(ok(poll_answer(t, &bm, Some(rx)).await));
            }
            let upload_id = random_hex(16);
            locked(&t.uploads).insert(upload_id.clone(), UploadSlot { db: id, filename: filename.clone() });
            let upload_url = format!("{}{UPLOAD_PREFIX}{upload_id}", origin(&headers));
            Ok(ok(json!({ "success": true, "filename": filename, "upload_url": upload_url })))
        }
        "ingest" => {
            let (Some(filename), Some(etag)) = (body.filename, body.etag) else {
                return Err(ApiError::bad_request("ingest needs `filename` and `etag` (from init)"));
            };
            let up = locked(&t.files).get(&(id, filename.clone())).cloned().ok_or_else(|| {
                ApiError::bad_request(format!("{filename} was not uploaded: PUT it to the upload_url first"))
            })?;
            if !up.etag.eq_ignore_ascii_case(&etag) {
                return Err(ApiError::bad_request(format!(
                    "the uploaded file's MD5 is {}, not the etag {etag}: upload it again",
                    up.etag
                )));
            }
            let (bm, rx) = start_import(t, db, up.path);
            Ok(ok(poll_answer(t, &bm, Some(rx)).await))
        }
        "poll" => {
            let bm = body
                .current_bookmark
                .ok_or_else(|| ApiError::bad_request("poll needs `current_bookmark`"))?;
            Ok(ok(poll_answer(t, &bm, None).await))
        }
        other => {
            Err(ApiError::bad_request(format!("unknown import action `{other}`: use init, ingest or poll")))
        }
    }
}

/// Starts the import in a blocking task; the receiver fires when it ends.
fn start_import(t: &Transfers, db: Arc<Db>, path: PathBuf) -> (String, tokio::sync::oneshot::Receiver<()>) {
    let bm = bookmark();
    locked(&t.imports).insert(bm.clone(), ImportStatus::Active);
    let (imports, key) = (t.imports.clone(), bm.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let status = match std::fs::File::open(&path) {
            Ok(f) => match db.lock().run_file(BufReader::new(f)) {
                Ok((num_queries, meta)) => {
                    ImportStatus::Complete { final_bookmark: bookmark(), num_queries, meta }
                }
                Err(e) => ImportStatus::Error(e.0),
            },
            Err(e) => ImportStatus::Error(format!("reading the uploaded file: {e}")),
        };
        locked(&imports).insert(key, status);
        let _ = tx.send(());
    });
    (bm, rx)
}

/// The poll answer of an import, after waiting up to a second for `done`.
async fn poll_answer(t: &Transfers, bm: &str, done: Option<tokio::sync::oneshot::Receiver<()>>) -> Value {
    if let Some(rx) = done {
        let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
    }
    let Some(status) = locked(&t.imports).get(bm).cloned() else {
        return json!({ "success": false, "error": format!("Unknown bookmark {bm}: no import with it is known") });
    };
    let mut v = json!({ "success": true, "type": "import", "at_bookmark": bm, "messages": [], "errors": [] });
    match status {
        ImportStatus::Active => v["status"] = "active".into(),
        ImportStatus::Complete { final_bookmark, num_queries, meta } => {
            v["status"] = "complete".into();
            v["result"] =
                json!({ "final_bookmark": final_bookmark, "num_queries": num_queries, "meta": meta });
        }
        ImportStatus::Error(msg) => {
            v["status"] = "error".into();
            v["errors"] = json!([msg]);
            v["error"] = msg.into();
        }
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

#[derive(Deserialize)]
pub struct ExportBody {
    output_format: Option<String>,
    #[serde(default)]
    dump_options: DumpOptions,
    current_bookmark: Option<String>,
}

/// `POST export`: the dump is written at once, so the first answer is
/// already `complete` (a poll with its bookmark answers the same).
pub async fn export(
    State(st): State<Arc<Shared>>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> std::result::Result<Response, ApiError> {
    let db = st.d1.db(&id)?;
    let body: ExportBody = parse(&body)?;
    let t = &st.d1.transfers;
    if body.output_format.as_deref().is_some_and(|f| f != "polling") {
        return Err(ApiError::bad_request("output_format must be \"polling\""));
    }
    if let Some(bm) = &body.current_bookmark {
        if let Some(answer) = locked(&t.export_answers).get(bm).cloned() {
            return Ok(ok(answer));
        }
    }
    let download_id = random_hex(16);
    let path = t.dir.join(format!("export-{download_id}.sql"));
    let (opts, file_path) = (body.dump_options, path.clone());
    let refused = blocking(move || {
        let file = std::fs::File::create(&file_path).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut out = BufWriter::new(file);
        let conn = db.lock();
        match conn
            .with_internal(|c| Ok(dump(c, &opts, &mut out)))
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            Err(DumpError::Refused(text)) => return Ok(Some(text)),
            other => other.map_err(|e| ApiError::internal(format!("export: {e}")))?,
        }
        out.flush().map_err(|e| ApiError::internal(e.to_string())).map(|_| None)
    })
    .await?;
    let bm = bookmark();
    // What D1's export refuses is a failed export, the form wrangler reads
    // (`ExportPollingResponse` with `status: "error"` and `error`, in
    // workers-sdk `packages/wrangler/src/d1/types.ts` and `export.ts`).
    if let Some(text) = refused {
        let _ = std::fs::remove_file(&path);
        let answer = json!({
            "success": true, "type": "export", "at_bookmark": bm, "status": "error",
            "error": text, "messages": [],
        });
        locked(&t.export_answers).insert(bm, answer.clone());
        return Ok(ok(answer));
    }
    locked(&t.exports).insert(download_id.clone(), path);
    let answer = json!({
        "success": true,
        "type": "export",
        "at_bookmark": bm,
        "status": "complete",
        "messages": [],
        "result": {
            "filename": format!("{id}-{bm}.sql"),
            "signed_url": format!("{}{DOWNLOAD_PREFIX}{download_id}", origin(&headers)),
        },
    });
    locked(&t.export_answers).insert(bm, answer.clone());
    Ok(ok(answer))
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
