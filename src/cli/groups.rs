//! The argument groups several commands share (flattened into their
//! arguments): where D1 rows go, where vectors go, where the Cloudflare
//! resources are, the project and source, parallelism and batch sizes;
//! and the value types of `--target` and `--vectorize`. One definition
//! each, so that `load`, `sync`, `verify` and `restore` read the same
//! flags the same way.

use std::path::PathBuf;

use clap::Args;

/// Where D1 rows go (`load` and `sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// SQL files for `wrangler d1 execute --file`: a load writes batch
    /// files with manifest.json; a sync writes each run as
    /// OUT/sync/NNNNNN/ to apply in order (its state is a local file).
    Files,
    /// A local SQLite file (e.g. wrangler's local D1 state).
    Sqlite,
    /// The Cloudflare D1 REST API (import for large batches, query for small).
    Api,
}

/// Where D1 rows go, for the commands that write them (load, sync, restore).
#[derive(Debug, Args)]
pub struct D1TargetArgs {
    /// Where D1 rows go: SQL files, a local SQLite file, or the D1 API.
    #[arg(long, value_enum)]
    pub target: TargetKind,

    #[command(flatten)]
    pub place: D1PlaceArgs,
}

/// Where exactly D1 rows go, for a --target of files or sqlite.
#[derive(Debug, Args)]
pub struct D1PlaceArgs {
    /// Folder for --target files (for sync: the load's --out).
    #[arg(long, value_name = "DIR", required_if_eq("target", "files"))]
    pub out: Option<PathBuf>,

    /// SQLite file for --target sqlite (created when missing). Default:
    /// the file `wrangler d1 execute --local` uses for the D1 database
    /// (--d1-database-id or the wrangler binding), under the wrangler
    /// project's `.wrangler/state/v3/d1/`, so a local Worker sees the rows.
    #[arg(long, value_name = "FILE")]
    pub sqlite: Option<PathBuf>,
}

/// Where vectors go, for the commands that send them as `load` does
/// (load, restore).
#[derive(Debug, Args)]
pub struct VectorArgs {
    /// Where vectors go (tables with a `vector` column in pgflare.toml):
    /// `auto` = NDJSON files in OUT/vectorize with --target files, the
    /// Vectorize API with --target api, and with --target sqlite NDJSON
    /// files in --vectorize-out if given, else nowhere.
    #[arg(long, value_enum, default_value_t = VectorizeMode::Auto)]
    pub vectorize: VectorizeMode,

    /// Folder for --vectorize files (default: OUT/vectorize).
    #[arg(long, value_name = "DIR")]
    pub vectorize_out: Option<PathBuf>,

    /// Create the Vectorize index when it does not exist (dimensions from
    /// the vector column, metric from [vectorize] metric, default cosine).
    #[arg(long)]
    pub create_index: bool,
}

/// Where the Cloudflare resources are; flags win over the environment,
/// which wins over pgflare.toml, which wins over the wrangler file.
#[derive(Debug, Args, Clone, Default)]
pub struct CloudflareArgs {
    /// A wrangler.jsonc / wrangler.json / wrangler.toml to find the D1
    /// database_id and Vectorize index_name in, by binding name.
    #[arg(long, value_name = "FILE")]
    pub wrangler: Option<PathBuf>,

    /// The wrangler environment (`env.<NAME>` section) to read bindings from.
    #[arg(long = "env", value_name = "NAME")]
    pub wrangler_env: Option<String>,

    /// The D1 binding name to look up in the wrangler file (e.g. DB).
    #[arg(long, value_name = "BINDING")]
    pub d1_binding: Option<String>,

    /// The D1 database id (skips the wrangler lookup).
    #[arg(long, value_name = "UUID")]
    pub d1_database_id: Option<String>,

    /// The Vectorize binding name to look up in the wrangler file.
    #[arg(long, value_name = "BINDING")]
    pub vectorize_binding: Option<String>,

    /// The Vectorize index name (skips the wrangler lookup).
    #[arg(long, value_name = "NAME")]
    pub vectorize_index: Option<String>,

    /// Cloudflare account id. Default: $CLOUDFLARE_ACCOUNT_ID, then the
    /// configuration files. The API token is read from
    /// $CLOUDFLARE_API_TOKEN only, never from a flag or a file.
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,
}

/// The project and source options `load` and `verify` share.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// pgflare.toml to use. Default: ./pgflare.toml when it exists, else
    /// every table of --schema with every column under its own name.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Postgres connection URL. Default: pgflare.toml's [source] url,
    /// then $DATABASE_URL, then $SUPABASE_DB_URL.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Schema of the tables when there is no pgflare.toml (default public).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,

    /// Only this table of the configuration (repeatable).
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,
}

/// Where vectors go (`load` and `sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VectorizeMode {
    Auto,
    /// NDJSON files (`wrangler vectorize upsert --file` takes each as is).
    Files,
    /// The Vectorize REST API (mutations waited for before a range counts as done).
    Api,
    /// Do not load vectors.
    Off,
}

/// Where to read from and what.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// Postgres connection URL (postgres://USER:PASSWORD@HOST:PORT/DB; a
    /// password with / @ # ? : or % percent-encoded). Default: pgflare.toml's
    /// [source] url, then $DATABASE_URL, then $SUPABASE_DB_URL. On Supabase
    /// use the direct connection (port 5432): the transaction pooler cannot
    /// share a snapshot between workers.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// pgflare.toml to read: [source] url and schema (inspect also: each
    /// table's `vector`, `vector_namespace` and [vectorize] `dimensions`,
    /// `on_invalid`). Default: ./pgflare.toml when it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Schema of unqualified table names, and whose tables are taken when
    /// no --table is given. Default: pgflare.toml's [source] schema, else
    /// public.
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,

    /// A table to include (repeatable); `name` or `schema.name`.
    /// Default: every table of --schema.
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Read a column through a cast, e.g. `--cast events.span=text` for a
    /// type pgflare does not support (repeatable).
    #[arg(long = "cast", value_name = "TABLE.COLUMN=TYPE")]
    pub casts: Vec<String>,

    /// Leave a column out (repeatable). Primary-key columns cannot be left out.
    #[arg(long = "exclude", value_name = "TABLE.COLUMN")]
    pub excludes: Vec<String>,
}

/// Parallelism and batch sizes.
#[derive(Debug, Args, Clone)]
pub struct TuningArgs {
    /// Parallel workers (each one Postgres connection). Default: CPU count + 1.
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,

    /// Split tables into key ranges of about this much table data; the
    /// split depends on the data only, so the same snapshot gives the same
    /// files whatever --jobs is.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub partition_mib: u64,

    /// Rows per Arrow batch (a batch is also cut at 2 MiB of row data: small batches stay in the allocator's reused memory, which measured faster than large ones).
    #[arg(long, default_value_t = 8192, value_name = "ROWS")]
    pub batch_rows: usize,
}
