//! Arguments of `pgflare restore` (its help text says what a restore
//! guarantees and what it does not do yet).

use std::path::PathBuf;

use clap::Args;

use super::{CloudflareArgs, TargetKind};

/// What a restore writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreTo {
    /// The D1 rows: every archived column but the vector column, under its
    /// own name (what `pgflare load` sends without a pgflare.toml).
    D1,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive folder (`pgflare archive --out`): its manifest.json and
    /// Parquet files. Every file is checked against the manifest (size and
    /// blake3) before anything is written.
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,

    /// What to restore.
    #[arg(long, value_enum, default_value = "d1")]
    pub to: RestoreTo,

    /// Where D1 rows go: SQL files, a local SQLite file, or the D1 API.
    #[arg(long, value_enum)]
    pub target: TargetKind,

    /// Folder for --target files.
    #[arg(long, value_name = "DIR", required_if_eq("target", "files"))]
    pub out: Option<PathBuf>,

    /// SQLite file for --target sqlite (created when missing). Default:
    /// wrangler's local file of the configured D1 database.
    #[arg(long, value_name = "FILE")]
    pub sqlite: Option<PathBuf>,

    /// Only this table of the archive (repeatable; `name` or `schema.name`).
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Do not run CREATE TABLE IF NOT EXISTS on the target first.
    #[arg(long)]
    pub no_create_tables: bool,

    /// --target api: client-side request budget, REQUESTS/SECONDS.
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,
}
