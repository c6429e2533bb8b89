//! Arguments of `pgflare reconcile` (where Cloudflare's side is read
//! from, what is written back, and how carefully).

use std::path::PathBuf;

use clap::Args;

use super::{CloudflareArgs, ProjectArgs, TuningArgs};

/// Where `reconcile` writes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReconcileInto {
    /// The source Postgres (--database-url, pgflare.toml's [source] url,
    /// $DATABASE_URL).
    Postgres,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Where Cloudflare's side is written back to.
    #[arg(long, value_enum, value_name = "WHERE")]
    pub into: ReconcileInto,

    /// Compare and print the plan (counts and first keys per table and
    /// kind, the columns updates change); write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Write back from this archive of Cloudflare (`pgflare archive --from
    /// cloudflare --out DIR`) instead of reading D1 and Vectorize again.
    #[arg(long, value_name = "ARCHIVE_DIR")]
    pub from_archive: Option<PathBuf>,

    /// Keep the archive of Cloudflare this run reads in DIR (a record of
    /// what was written back); by default it is a temporary folder,
    /// removed at the end.
    #[arg(long, value_name = "DIR", conflicts_with = "from_archive")]
    pub keep: Option<PathBuf>,

    /// Write with Postgres triggers off (session_replication_role =
    /// replica, as pg_restore --disable-triggers; needs the privilege to
    /// set it): for a trigger that would stamp the written rows (updated_at).
    #[arg(long)]
    pub disable_triggers: bool,

    #[command(flatten)]
    pub project: ProjectArgs,

    /// D1 as a local SQLite file (wrangler's local D1 file, the sqlite load
    /// target, the emulator's DATA_DIR/d1/ID.sqlite). Without it, the D1
    /// database named by --d1-database-id (or the wrangler binding) is
    /// exported through the API.
    #[arg(long, value_name = "FILE", conflicts_with = "from_archive")]
    pub sqlite: Option<PathBuf>,

    /// Read D1 only: the vector columns are not compared nor written.
    #[arg(long, conflicts_with = "from_archive")]
    pub no_vectorize: bool,

    /// Client-side request budget for the Cloudflare API, REQUESTS/SECONDS.
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,
}
