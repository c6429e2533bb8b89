//! The validated project configuration (`pgflare.toml` after parsing,
//! defaults and environment applied): which tables move, how their columns
//! are named in D1, which column feeds Vectorize, and where the Cloudflare
//! targets are. Parsing lives in `file`, wrangler discovery in `wrangler`;
//! commands only ever see these types.

use std::path::PathBuf;
use std::time::Duration;

/// Default Cloudflare API base, as wrangler uses it.
pub const DEFAULT_API_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// A validated `pgflare.toml` (or the defaults when there is none).
#[derive(Clone, Debug, Default)]
pub struct Project {
    /// The file it came from, if any (for messages).
    pub path: Option<PathBuf>,
    /// `[source] url`, when the file gives one; otherwise the usual
    /// `--database-url` / `DATABASE_URL` / `SUPABASE_DB_URL` chain applies.
    pub source_url: Option<String>,
    /// `[source] schema`, default `public`.
    pub schema: String,
    /// `[[tables]]` in file order; empty means "every table of `schema`,
    /// all columns, default names".
    pub tables: Vec<TableMapping>,
    pub cloudflare: CloudflareSettings,
}

/// One `[[tables]]` entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableMapping {
    /// Where the entry is, for messages: `pgflare.toml: tables[0]`.
    pub setting: String,
    /// Source schema and table name.
    pub schema: String,
    pub table: String,
    /// Key columns; `None` = the source's primary key.
    pub primary_key: Option<Vec<String>>,
    /// Column the sync job orders changes by (e.g. `updated_at`).
    pub cursor: Option<String>,
    /// Table name in D1 (default: the source name).
    pub d1_table: String,
    /// Columns that go to D1, in order, with their D1 names. `None` = every
    /// column except `vector`, under its source name.
    pub d1_columns: Option<Vec<ColumnMapping>>,
    /// `d1_names` renames (source -> D1) when `d1_columns` is `None`: they
    /// can only be checked against the source's columns.
    pub renames: Vec<ColumnMapping>,
    /// Column whose values feed Vectorize (a `vector`/`halfvec` column).
    pub vector: Option<String>,
    /// Columns copied into each vector's Vectorize metadata.
    pub vector_metadata: Vec<String>,
    /// Columns read through a cast: (column, SQL type).
    pub casts: Vec<(String, String)>,
}

/// A source column and its name in D1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMapping {
    pub source: String,
    pub d1: String,
}

/// Where the Cloudflare targets are. Precedence, highest first: command-line
/// flags, environment (`CLOUDFLARE_*`), `pgflare.toml`, the wrangler file.
#[derive(Clone, Debug)]
pub struct CloudflareSettings {
    pub account_id: Option<String>,
    /// Includes `/client/v4`, no trailing slash.
    pub api_base_url: String,
    /// Only ever from `CLOUDFLARE_API_TOKEN` (never from a file we write).
    pub api_token: Option<String>,
    pub d1: Option<D1Database>,
    pub vectorize_index: Option<String>,
    /// Wrangler file to look bindings up in (relative paths already
    /// resolved against the pgflare.toml folder).
    pub wrangler: Option<PathBuf>,
    /// Wrangler environment (`env.<name>`) whose bindings apply.
    pub wrangler_env: Option<String>,
    /// Binding names to look up in the wrangler file when no id is given.
    pub d1_binding: Option<String>,
    pub vectorize_binding: Option<String>,
    /// Client-side budget: at most `requests` per `window`.
    pub rate_limit_requests: u32,
    pub rate_limit_window: Duration,
}

impl Default for CloudflareSettings {
    fn default() -> Self {
        CloudflareSettings {
            account_id: None,
            api_base_url: DEFAULT_API_BASE_URL.to_string(),
            api_token: None,
            d1: None,
            vectorize_index: None,
            wrangler: None,
            wrangler_env: None,
            d1_binding: None,
            vectorize_binding: None,
            rate_limit_requests: 1200,
            rate_limit_window: Duration::from_secs(300),
        }
    }
}

/// A D1 database as wrangler names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct D1Database {
    pub binding: Option<String>,
    pub database_name: Option<String>,
    pub database_id: String,
}
