//! Arguments of `pgflare emulate`: where it listens, what it holds, and
//! the real-service behaviours and faults it can be told to show.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Address to listen on; port 0 picks a free port (the first line
    /// printed says which).
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,

    /// Where the databases live (created if missing; kept across runs).
    #[arg(long, default_value = ".pgflare/emulator", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Bearer token clients must send (never printed).
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true, default_value = "local-token")]
    pub token: String,

    /// Account id of the URLs.
    #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID", default_value = "local-account", value_name = "ID")]
    pub account_id: String,

    /// Create this D1 database id at start if missing (repeatable).
    #[arg(long = "d1-database", value_name = "ID")]
    pub d1_databases: Vec<String>,

    /// Requests allowed per window per user, as REQUESTS/SECONDS
    /// (Cloudflare's is 1200/300). The request over it blocks every call
    /// for a whole window (HTTP 429 with Retry-After), as Cloudflare does.
    #[arg(long, default_value = "1200/300", value_name = "REQUESTS/SECONDS")]
    pub rate_limit: String,

    /// Read request bodies and write answers (import uploads, export
    /// downloads, Vectorize upserts) at this many bytes per second, e.g.
    /// 2MiB or 500K. Default: as fast as the machine goes.
    #[arg(long, value_name = "BYTES/S", value_parser = crate::emulator::parse_bandwidth)]
    pub bandwidth: Option<u64>,

    /// Fraction (0..1) of D1 query/raw requests answered with D1's
    /// internal error (HTTP 500, code 7500) without running.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub internal_error_rate: f64,

    /// Fraction (0..1) of API requests answered 500/502/503 without running.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fail_rate: f64,

    /// Fraction (0..1) of API requests run, then left unanswered (the
    /// connection is closed): the client cannot tell whether they happened.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub drop_rate: f64,

    /// Delay added to every API request.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,

    /// Seed of the fault generator (same seed, same faults). Default: random.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Vectorize writes are asynchronous: an accepted insert, upsert,
    /// delete or metadata-index change becomes visible to reads (queries,
    /// get_by_ids, list, info) only this long after it was accepted.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub vectorize_delay_ms: u64,

    /// D1 imports and exports are asynchronous: each answers `status:
    /// "active"` to this many polls (at least) before it completes. The
    /// database refuses other requests until then.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub transfer_polls: u32,

    /// How a failed D1 import or export reports it: as wrangler reads it
    /// (`status: "error"` with `errors` for an import, `error` for an
    /// export), as the OpenAPI schema has it (`error` for both), or as a
    /// refusal (`success: false` with `error` in the result).
    #[arg(long, value_enum, default_value = "wrangler", value_name = "FORM")]
    pub transfer_failure: crate::emulator::FailureForm,

    /// A D1 import or export not polled for this long is dropped, and its
    /// database freed (D1 cancels an export that is not polled).
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = crate::timeouts::parse_duration)]
    pub transfer_poll_timeout: std::time::Duration,
    /// Write one JSON line per API request to FILE: method, path template,
    /// content type and the body's shape (keys and JSON types, never values
    /// or tokens), to compare what two clients send for the same job.
    #[arg(long, value_name = "FILE")]
    pub request_log: Option<PathBuf>,
}
