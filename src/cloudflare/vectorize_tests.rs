//! The Vectorize client against small local HTTP servers that answer as a
//! broken or unusual API would.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::cloudflare::client::ApiSettings;
use crate::cloudflare::retry::RetryPolicy;

/// An index on a local server answering every `list` with `page`.
async fn index_answering(page: Value) -> (Vectorize, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move { axum::Json(json!({"success": true, "errors": [], "messages": [], "result": page})) }
    });
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let settings = ApiSettings {
        base_url: format!("http://{addr}/client/v4"),
        account_id: "acct".into(),
        token: "token".into(),
        rate_limit_requests: 1000,
        rate_limit_window: Duration::from_secs(1),
        retry: RetryPolicy::default(),
        timeouts: crate::timeouts::Timeouts::default(),
    };
    let api = Arc::new(crate::cloudflare::Api::new(settings).expect("api"));
    (Vectorize::new(api, "vi"), server)
}

/// Found by review: a server that keeps answering `isTruncated` with the
/// same cursor kept `list_ids` paging forever.
#[tokio::test]
async fn a_listing_that_repeats_its_cursor_stops_with_an_error() {
    let page = json!({"count": 1, "totalCount": 5, "isTruncated": true, "nextCursor": "c1",
                      "vectors": [{"id": "a"}]});
    let (index, server) = index_answering(page).await;
    let out = tokio::time::timeout(Duration::from_secs(20), index.list_ids()).await;
    server.abort();
    let err = out.expect("list_ids returns instead of paging forever").expect_err("a non-advancing listing");
    assert!(err.to_string().contains("does not advance"), "{err}");
}

#[tokio::test]
async fn a_truncated_page_without_ids_stops_with_an_error() {
    let page = json!({"count": 0, "totalCount": 5, "isTruncated": true, "nextCursor": "c", "vectors": []});
    let (index, server) = index_answering(page).await;
    let out = tokio::time::timeout(Duration::from_secs(20), index.list_ids()).await;
    server.abort();
    assert!(out.expect("returns").is_err());
}
