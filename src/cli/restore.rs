//! Arguments of `pgflare restore` (its help text says what a restore
//! guarantees and what it does not do yet).

use std::path::PathBuf;

use clap::Args;

use super::{CloudflareArgs, D1PlaceArgs, TargetKind, VectorArgs};

/// Where a restore writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreTarget {
    /// D1 as SQL files for `wrangler d1 execute --file` (with --out).
    Files,
    /// A local SQLite file (e.g. wrangler's local D1 state).
    Sqlite,
    /// The Cloudflare D1 REST API.
    Api,
    /// A Postgres database (--target-url): the tables as the source had
    /// them.
    Postgres,
}

impl RestoreTarget {
    /// The D1 target kind, for the targets that are D1.
    pub fn d1(self) -> Option<TargetKind> {
        match self {
            RestoreTarget::Files => Some(TargetKind::Files),
            RestoreTarget::Sqlite => Some(TargetKind::Sqlite),
            RestoreTarget::Api => Some(TargetKind::Api),
            RestoreTarget::Postgres => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive folder (`pgflare archive --out`): its manifest.json and
    /// Parquet files. Every file is checked against the manifest (size and
    /// blake3) before anything is written.
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,

    /// pgflare.toml whose mapping the rows go through into D1, as for
    /// `load` (D1 columns and names, the vector column and its metadata).
    /// Default: ./pgflare.toml when it exists, else every archived column
    /// but a vector column under its own name. Not used for Postgres.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the rows go: D1 (SQL files, a local SQLite file, the D1 API;
    /// vectors to Vectorize as `load` sends them) or Postgres.
    #[arg(long, value_enum)]
    pub target: RestoreTarget,

    #[command(flatten)]
    pub d1: D1PlaceArgs,

    /// Only this table of the archive (repeatable; `name` or `schema.name`).
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,

    /// D1: do not run CREATE TABLE IF NOT EXISTS on the target first.
    #[arg(long)]
    pub no_create_tables: bool,

    #[command(flatten)]
    pub vectors: VectorArgs,

    #[command(flatten)]
    pub postgres: PostgresTargetArgs,

    /// Client-side request budget of the API, REQUESTS/SECONDS.
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,
}

/// The Postgres a restore writes into.
#[derive(Debug, Args)]
pub struct PostgresTargetArgs {
    /// The Postgres database --target postgres writes into
    /// (postgres://USER:PASSWORD@HOST:PORT/DB), e.g. a new database made
    /// with createdb. Default: $PGFLARE_TARGET_URL.
    #[arg(long, value_name = "URL", env = "PGFLARE_TARGET_URL", hide_env_values = true)]
    pub target_url: Option<String>,

    /// Write into the archive's tables where they already exist in the
    /// target (created by hand, or from a schema dump); rows are added
    /// with COPY, so a key already taken fails the run. Without it a target
    /// that has any of the tables is refused.
    #[arg(long)]
    pub into_existing: bool,

    /// Files copied at once (each on its own connection).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,

    /// Leave out hnsw and ivfflat indexes (building one reads every
    /// vector); their CREATE INDEX statements are printed to run later,
    /// e.g. with CONCURRENTLY while the database serves.
    #[arg(long)]
    pub no_vector_indexes: bool,
}
