//! Cloudflare's JSON envelope, `{"success", "errors": [{"code",
//! "message"}], "messages", "result"}`, for answers and for errors, with the
//! codes Cloudflare uses (an error may carry an `error_chain`, as
//! Cloudflare's header errors do).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Code of every SQL error D1 reports (observed on the REST API).
pub const CODE_SQL: u32 = 7500;
/// A malformed request body (D1's "bad request" family).
pub const CODE_BAD_REQUEST: u32 = 7400;
/// Unknown database id: HTTP 404, code 7404, "The database {id} could not be found".
/// Source: cloudflare/workers-sdk `packages/miniflare/src/workers/local-explorer/resources/d1.ts`
/// (`D1_ERROR_DATABASE_NOT_FOUND = 7404`, answered with HTTP 404 and that message).
pub const CODE_NO_DATABASE: u32 = 7404;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    pub chain: Vec<(u32, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), chain: Vec::new() }
    }

    pub fn with_chain(mut self, code: u32, message: impl Into<String>) -> ApiError {
        self.chain.push((code, message.into()));
        self
    }

    /// A SQL error: HTTP 400, code 7500, SQLite's message.
    pub fn sql(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, CODE_SQL, message)
    }

    /// An internal D1 failure as the REST API reports it: HTTP 500 with the
    /// SQL error code 7500 (observed; invalid SQL itself is HTTP 400 since
    /// 2024-04-15, cloudflare-docs `d1/platform/changelog`, PR #13934) and
    /// one of the retryable `D1_ERROR`s of cloudflare-docs
    /// `d1/observability/debug-d1.mdx` ("Retry the operation"). The
    /// request did not run.
    pub fn d1_internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_SQL,
            "D1_ERROR: Internal error in D1 DB storage caused object to be reset.",
        )
    }

    /// HTTP 400 with `code`: how Cloudflare refuses most bad requests.
    pub fn bad(code: u32, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, CODE_BAD_REQUEST, message)
    }

    pub fn no_database(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            CODE_NO_DATABASE,
            format!("The database {id} could not be found"),
        )
    }

    /// Something broke inside the emulator (never the client's fault).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 1000, format!("Internal error: {}", message.into()))
    }

    pub fn body(&self) -> Value {
        let mut err = json!({ "code": self.code, "message": self.message });
        if !self.chain.is_empty() {
            err["error_chain"] = self.chain.iter().map(|(c, m)| json!({ "code": c, "message": m })).collect();
        }
        json!({ "success": false, "errors": [err], "messages": [], "result": null })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// A successful answer.
pub fn ok(result: Value) -> Response {
    Json(json!({ "success": true, "errors": [], "messages": [], "result": result })).into_response()
}

/// Parses a JSON request body into `T`, or answers 400 saying what is wrong.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}
