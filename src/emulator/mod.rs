//! `pgflare emulate`: a local HTTP server that answers like Cloudflare's
//! REST API (`/client/v4`), so a migration can be rehearsed end to end and
//! the D1 client tested without an account. It enforces what the real
//! service enforces (D1's SQL rules and limits, one transaction per request,
//! authentication, the account id, the per-user rate limit) and can
//! inject faults (5xx answers, dropped connections, latency) from a seeded
//! generator so retry code is tested reproducibly.
//!
//! - [`server`]: accept loop, faults, authentication; [`rate_limit`]: the
//!   per-user rate limit; [`throttle`]: the transfer bandwidth;
//! - [`d1`]: the D1 endpoints (databases, query/raw, import, export), with
//!   [`d1_jobs`] (imports and exports as asynchronous jobs);
//! - [`d1_exec`], [`d1_rules`], [`d1_dump`], [`d1_store`]: the SQLite side
//!   (statements are split by [`crate::d1::split`]); [`js_number`]: integers
//!   as D1's JavaScript hands them out (rounded past 2^53);
//! - [`request_log`]: `--request-log`, the shape of every request;
//! - [`vectorize`]: the Vectorize v2 endpoints, with [`vectorize_store`]
//!   (SQLite per index), [`vectorize_mutations`] (the asynchronous write
//!   queue), [`vectorize_bodies`] (the JSON request types, strict),
//!   [`vectorize_upload`] (what an upload may hold) and
//!   [`vectorize_query`] (ranking, filters).
//!
//! A product adds a module with a `routes()` merged in [`router`] and its
//! state in [`State`].

mod d1;
mod d1_dump;
mod d1_exec;
mod d1_import;
mod d1_jobs;
mod d1_rules;
mod d1_store;
mod d1_time_travel;
mod envelope;
mod js_number;
mod rate_limit;
mod request_log;
mod server;
mod throttle;
mod token;
mod vectorize;
mod vectorize_bodies;
mod vectorize_mutations;
mod vectorize_query;
mod vectorize_store;
mod vectorize_upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::watch;

use crate::error::{Error, Result};
pub use d1_jobs::{FailureForm, TransferOptions};

pub use throttle::parse_bandwidth;

/// `meta.served_by` of every D1 answer.
pub const SERVED_BY: &str = "pgflare-emulate";

#[derive(Clone)]
pub struct EmulatorConfig {
    /// Port 0 picks a free port (see [`Emulator::base_url`]).
    pub listen: SocketAddr,
    /// D1 databases live at `<data_dir>/d1/<database_id>.sqlite`.
    pub data_dir: PathBuf,
    /// The bearer token clients must send. Never logged.
    pub token: String,
    pub account_id: String,
    /// Database ids created at start when missing (their name is the id).
    pub d1_databases: Vec<String>,
    pub rate_limit_requests: u32,
    pub rate_limit_window: Duration,
    pub faults: Faults,
    /// Vectorize indexes live at `<data_dir>/vectorize/<name>.sqlite`; a
    /// mutation becomes visible to reads this long after it was accepted.
    pub vectorize_delay: Duration,
    /// `--request-log`: one JSON line per request with its shape, no values
    /// (see [`request_log`]).
    pub request_log: Option<PathBuf>,
    /// How D1 imports and exports run and fail.
    pub d1_transfers: TransferOptions,
    /// Bytes per second at which request bodies are read and answers
    /// written (uploads and downloads included); `None`: as fast as it goes.
    pub bandwidth: Option<u64>,
}

#[cfg(test)]
impl EmulatorConfig {
    /// For lib tests: a free local port, the D1 database `db1`, a rate
    /// limit no test reaches, no faults, no delays.
    pub fn for_tests(data_dir: &std::path::Path, token: &str) -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            token: token.into(),
            account_id: "acct".into(),
            d1_databases: vec!["db1".into()],
            rate_limit_requests: 10_000,
            rate_limit_window: Duration::from_secs(1),
            faults: Faults::default(),
            vectorize_delay: Duration::ZERO,
            d1_transfers: TransferOptions::default(),
            request_log: None,
            bandwidth: None,
        }
    }
}

/// Debug without the token (configs end up in logs).
impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("token", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("d1_databases", &self.d1_databases)
            .field("rate_limit_requests", &self.rate_limit_requests)
            .field("rate_limit_window", &self.rate_limit_window)
            .field("faults", &self.faults)
            .field("vectorize_delay", &self.vectorize_delay)
            .field("request_log", &self.request_log)
            .field("d1_transfers", &self.d1_transfers)
            .field("bandwidth", &self.bandwidth)
            .finish()
    }
}

/// Injected faults, drawn per API request from a generator seeded with
/// `seed` (upload and download URLs are never faulted).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability (0..1) of answering 500, 502 or 503 before doing anything.
    pub error_rate: f64,
    /// Probability (0..1) of executing the request, then closing the
    /// connection without an answer (the client cannot know it happened).
    pub drop_rate: f64,
    /// Added before every API request is handled.
    pub latency: Duration,
    /// Probability (0..1) of answering a D1 `query`/`raw` request with
    /// D1's internal error (HTTP 500, code 7500) without running it.
    pub internal_error_rate: f64,
    pub seed: u64,
}

/// Everything the handlers share.
pub(crate) struct State {
    pub token: String,
    pub account_id: String,
    pub faults: Faults,
    pub rng: Mutex<rand::rngs::StdRng>,
    pub rate: rate_limit::RateLimiter,
    pub bandwidth: Option<u64>,
    pub d1: d1::D1,
    pub vectorize: vectorize_store::Vectorize,
    pub request_log: Option<request_log::RequestLog>,
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    /// E.g. `http://127.0.0.1:PORT/client/v4`: what `CLOUDFLARE_API_BASE_URL` should be.
    pub base_url: String,
    pub local_addr: SocketAddr,
    pub account_id: String,
    pub data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Opens (or creates) the databases, binds, and spawns the server task.
    pub async fn start(cfg: EmulatorConfig) -> Result<Emulator> {
        validate(&cfg)?;
        let (data_dir, ensure) = (cfg.data_dir.clone(), cfg.d1_databases.clone());
        let store = tokio::task::spawn_blocking(move || d1_store::Store::open(&data_dir, &ensure))
            .await
            .map_err(|e| Error::Internal(format!("opening the emulator's databases: {e}")))??;
        let d1 = d1::D1::new(store, &cfg.data_dir, cfg.d1_transfers.clone())?;
        let (data_dir, delay) = (cfg.data_dir.clone(), cfg.vectorize_delay);
        let vectorize =
            tokio::task::spawn_blocking(move || vectorize_store::Vectorize::open(&data_dir, delay))
                .await
                .map_err(|e| Error::Internal(format!("opening the emulator's Vectorize indexes: {e}")))??;
        let request_log = cfg.request_log.as_deref().map(request_log::RequestLog::create).transpose()?;
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| Error::Config {
            setting: "--listen".into(),
            message: format!("{}: {e}", cfg.listen),
        })?;
        let local_addr = listener.local_addr().map_err(|e| Error::Internal(format!("local address: {e}")))?;
        let state = Arc::new(State {
            token: cfg.token,
            account_id: cfg.account_id.clone(),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(cfg.faults.seed)),
            faults: cfg.faults,
            rate: rate_limit::RateLimiter::new(cfg.rate_limit_requests, cfg.rate_limit_window),
            bandwidth: cfg.bandwidth,
            d1,
            vectorize,
            request_log,
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, router(state.clone()), state, rx));
        Ok(Emulator {
            base_url: format!("http://{local_addr}/client/v4"),
            local_addr,
            account_id: cfg.account_id,
            data_dir: cfg.data_dir,
            shutdown,
            task: Some(task),
        })
    }

    /// Serves until ctrl-c (or [`Emulator::shutdown`] from another task).
    pub async fn wait(mut self) -> Result<()> {
        let Some(task) = self.task.take() else { return Ok(()) };
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                let _ = self.shutdown.send(true);
                r.map_err(|e| Error::Internal(format!("waiting for ctrl-c: {e}")))
            }
            r = task => r.map_err(|e| Error::Internal(format!("the emulator's server task died: {e}"))),
        }
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn validate(cfg: &EmulatorConfig) -> Result<()> {
    let bad = |setting: &str, message: &str| {
        Err(Error::Config { setting: setting.into(), message: message.into() })
    };
    if !(0.0..=1.0).contains(&cfg.faults.error_rate) {
        return bad("--fail-rate", "must be between 0 and 1");
    }
    if !(0.0..=1.0).contains(&cfg.faults.drop_rate) {
        return bad("--drop-rate", "must be between 0 and 1");
    }
    if !(0.0..=1.0).contains(&cfg.faults.internal_error_rate) {
        return bad("--internal-error-rate", "must be between 0 and 1");
    }
    if cfg.bandwidth == Some(0) {
        return bad("--bandwidth", "must be above zero");
    }
    if cfg.rate_limit_requests == 0 || cfg.rate_limit_window.is_zero() {
        return bad("--rate-limit", "needs at least 1 request per at least 1 second");
    }
    if cfg.token.is_empty() {
        return bad("--token", "must not be empty");
    }
    if cfg.account_id.is_empty() || cfg.account_id.contains('/') {
        return bad("--account-id", "must be non-empty and hold no `/`");
    }
    Ok(())
}

/// All routes; products add theirs here.
fn router(state: Arc<State>) -> axum::Router {
    axum::Router::new()
        .merge(d1::routes())
        .merge(vectorize::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), request_log::record))
        .merge(token::routes())
        .fallback(server::no_route)
        .method_not_allowed_fallback(server::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(100 * 1024 * 1024))
        .with_state(state)
}
