//! Arguments of `pgflare restore` (its help text says what a restore
//! guarantees and what it does not do yet).

use std::path::PathBuf;

use clap::Args;

use super::{CloudflareArgs, D1TargetArgs, VectorArgs};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive folder (`pgflare archive --out`): its manifest.json and
    /// Parquet files. Every file is checked against the manifest (size and
    /// blake3) before anything is written.
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,

    /// pgflare.toml whose mapping the rows go through, as for `load`
    /// (D1 columns and names, the vector column and its metadata). Default:
    /// ./pgflare.toml when it exists, else every archived column but a
    /// vector column under its own name.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub d1: D1TargetArgs,

    /// Only this table of the archive (repeatable; `name` or `schema.name`).
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Do not run CREATE TABLE IF NOT EXISTS on the target first.
    #[arg(long)]
    pub no_create_tables: bool,

    #[command(flatten)]
    pub vectors: VectorArgs,

    /// Client-side request budget of the API, REQUESTS/SECONDS.
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,
}
