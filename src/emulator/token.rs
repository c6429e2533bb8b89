//! Token verification, the call `pgflare doctor` (and Cloudflare's own
//! troubleshooting guide) uses to tell a bad token from a bad account id:
//!
//! - `GET /client/v4/user/tokens/verify` (user-owned tokens) and
//!   `GET /client/v4/accounts/{account}/tokens/verify` (account-owned
//!   tokens) answer `{id, status, expires_on?, not_before?}` with `status`
//!   one of `active`, `disabled`, `expired` (cloudflare-python
//!   `src/cloudflare/types/user/token_verify_response.py` and
//!   `types/accounts/token_verify_response.py`; cloudflare-docs
//!   `src/content/docs/fundamentals/api/troubleshooting.mdx`, which shows
//!   the curl call and an answer with `"status": "active"`). The real
//!   answer carries a message `{"code": 10000, "message": "This API Token
//!   is valid and active"}` (observed), reproduced here.
//! - A token that is not the emulator's never reaches these handlers: the
//!   shared front door ([`super::server`]) answers 403 code 10000 for it,
//!   and 400 code 6003 for a malformed header, as on every route; an
//!   account path with another account id gets 404 code 7003 there too.
//!
//! `id` is Cloudflare's 32-hex-digit token tag; here it is derived from
//! the token (an MD5 digest), so the token itself is never echoed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use md5::{Digest, Md5};
use serde_json::json;

use super::State as Shared;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/client/v4/user/tokens/verify", get(verify))
        .route("/client/v4/accounts/{account}/tokens/verify", get(verify))
}

async fn verify(State(st): State<Arc<Shared>>) -> Response {
    let id = hex::encode(Md5::digest(st.token.as_bytes()));
    Json(json!({
        "success": true,
        "errors": [],
        "messages": [{ "code": 10000, "message": "This API Token is valid and active", "type": null }],
        "result": { "id": id, "status": "active" },
    }))
    .into_response()
}
