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
    /// `[vectorize]`: how vectors are loaded.
    pub vectorize: VectorizeSettings,
    /// `[[queries]]`: the service's retrieval, as `verify` replays it.
    pub queries: Vec<crate::config::queries::QueryShape>,
}

/// `[vectorize]`: how the Vectorize side of a load behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorizeSettings {
    /// Create the index when it does not exist (dimensions from the vector
    /// column, `metric` below). An existing index must match either way.
    pub create_index: bool,
    /// `cosine`, `euclidean` or `dot-product`.
    pub metric: String,
    /// The index's dimension, for a vector column declared without one
    /// (`vector` rather than `vector(N)`); rows of another length are invalid.
    pub dimensions: Option<u32>,
    /// What a row Vectorize cannot take (wrong dimension, long id, big
    /// metadata...) does to the load.
    pub on_invalid: OnInvalid,
    /// Vectors per upsert request (Cloudflare takes at most 5000).
    pub vectors_per_request: usize,
    /// How long to wait for Vectorize to apply a mutation before failing.
    pub wait_timeout: Duration,
}

impl Default for VectorizeSettings {
    fn default() -> Self {
        VectorizeSettings {
            create_index: false,
            metric: "cosine".into(),
            dimensions: None,
            on_invalid: OnInvalid::Fail,
            vectors_per_request: 5000,
            wait_timeout: Duration::from_secs(900),
        }
    }
}

/// The policy for rows Vectorize would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnInvalid {
    /// Stop the load with an error naming the table, row key and limit.
    Fail,
    /// Leave the vector out, keep loading, and name the row in the summary
    /// (its D1 row is still written).
    Skip,
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
    /// Column marking a row as deleted (`true` in a boolean column, any
    /// value in another, e.g. `deleted_at`): such rows are left out of
    /// the targets, and sync deletes them there.
    pub soft_delete: Option<String>,
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
    /// Column whose text is the vector id (default: the one-column key).
    pub vector_id: Option<String>,
    /// Column whose text is the vector's namespace (none by default).
    pub vector_namespace: Option<String>,
    /// Metadata columns to create Vectorize metadata indexes for (so
    /// queries can filter on them); at most 10 per index.
    pub vector_metadata_indexes: Vec<String>,
    /// JSON paths as top-level properties, spread json columns, paths left
    /// out, and the separator of spread keys.
    pub vector_json: crate::config::vector_metadata::JsonMetadata,
    /// `vector_metadata_flags`: boolean properties for values of array columns.
    pub vector_flags: Vec<crate::config::vector_metadata::FlagColumn>,
    /// Columns read through a cast: (column, SQL type).
    pub casts: Vec<(String, String)>,
}

impl TableMapping {
    /// Whether a load reads `column` of the source: every column without
    /// `d1_columns`, else those and the vector, key, metadata (JSON paths
    /// included), id, namespace and soft-delete columns.
    pub fn reads(&self, column: &str) -> bool {
        let named = |c: &Option<String>| c.as_deref() == Some(column);
        match &self.d1_columns {
            None => true,
            Some(cols) => {
                cols.iter().any(|c| c.source == column)
                    || named(&self.vector)
                    || named(&self.vector_id)
                    || named(&self.vector_namespace)
                    || named(&self.soft_delete)
                    || self.vector_metadata.iter().any(|m| m == column)
                    || self.vector_json.columns().iter().any(|c| *c == column)
                    || self.vector_flags.iter().any(|f| f.column == column)
                    || self.primary_key.iter().flatten().any(|k| k == column)
            }
        }
    }
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

/// pgflare's default request budget per 5 minutes (Cloudflare's: 1200).
pub const DEFAULT_RATE_LIMIT_REQUESTS: u32 = 1000;

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
            // Cloudflare allows 1200 per 5 minutes per user, for all of
            // the user's tokens, wrangler and the dashboard together, and
            // blocks every call for 5 minutes once over: 200 are left for
            // whatever else uses the account meanwhile (README, "Retries
            // and budget").
            rate_limit_requests: DEFAULT_RATE_LIMIT_REQUESTS,
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
