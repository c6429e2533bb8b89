//! Arguments of `pgflare archive` (from Postgres, or with `--from
//! cloudflare` from D1 and Vectorize) and of `pgflare archive verify`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::*;

#[derive(Debug, Args)]
pub struct ArchiveCommand {
    #[command(subcommand)]
    pub verify: Option<ArchiveSub>,

    #[command(flatten)]
    pub export: ArchiveArgs,
}

#[derive(Debug, Subcommand)]
pub enum ArchiveSub {
    /// Re-read an archive and prove it against its manifest: sizes, blake3
    /// of every file, schemas, row counts and row digests. With
    /// --against-source, also compare it row by row with the source and
    /// name the file, row and key of every difference.
    ///
    /// Exit code: 0 verified, 1 differences found, 2 could not verify.
    Verify(VerifyArgs),
}

/// What `pgflare archive` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFrom {
    /// The source Postgres, at one snapshot.
    Postgres,
    /// What Cloudflare holds: the D1 tables `load` filled (through the
    /// API's export, or a local D1 file with --sqlite) and the Vectorize
    /// index, mapped back to the source's names and types by pgflare.toml.
    Cloudflare,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// What to archive: the source Postgres, or Cloudflare's D1 and
    /// Vectorize (the full rollback: after Cloudflare took writes, archive
    /// it, then restore into Postgres). From Cloudflare, each table is the
    /// source's (pgflare.toml's mapping, as `load` used it) restricted to
    /// the columns D1 holds, with its vector column rebuilt from
    /// Vectorize; vectors no row holds as they are (no row with their id,
    /// another namespace or metadata) are kept in a side table
    /// `_vectorize`. The tables' definitions come from the source Postgres
    /// (--database-url, [source] url, $DATABASE_URL) or, once it is gone,
    /// from a Postgres archive (--like).
    #[arg(long, value_enum, default_value_t = ArchiveFrom::Postgres)]
    pub from: ArchiveFrom,

    /// Output folder: must be empty or not exist (see --overwrite).
    #[arg(long, short, value_name = "DIR", required = true)]
    pub out: Option<PathBuf>,

    /// Replace the archive already in --out.
    #[arg(long)]
    pub overwrite: bool,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// Start a new Parquet file past this size.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub file_size_mib: u64,

    /// Cut row groups at about this size (readers like 32-128 MiB).
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub row_group_mib: usize,

    /// zstd level: 1 is fast, 22 is small.
    #[arg(long, default_value_t = 1, value_name = "LEVEL")]
    pub zstd_level: i32,

    /// --from cloudflare: where D1 and Vectorize are (the token is read
    /// from $CLOUDFLARE_API_TOKEN only).
    #[command(flatten)]
    pub cloudflare: CloudflareArgs,

    /// --from cloudflare: D1 as a local SQLite file (wrangler's local D1
    /// file, the sqlite load target, the emulator's DATA_DIR/d1/ID.sqlite),
    /// copied in one read transaction. Without it, the D1 database named by
    /// --d1-database-id (or the wrangler binding) is exported through the API.
    #[arg(long, value_name = "FILE")]
    pub sqlite: Option<PathBuf>,

    /// --from cloudflare: take the tables' definitions (names, types, keys,
    /// constraints, DDL) from the manifest of this archive of the source
    /// Postgres instead of the source itself: for after the source is
    /// decommissioned.
    #[arg(long, value_name = "ARCHIVE_DIR")]
    pub like: Option<PathBuf>,

    /// --from cloudflare: archive D1 only, not Vectorize.
    #[arg(long)]
    pub no_vectorize: bool,

    /// --from cloudflare: client-side request budget, REQUESTS/SECONDS
    /// (default: pgflare.toml's, else 1000/300; Cloudflare allows 1200 per
    /// 5 minutes per user).
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    /// --from cloudflare: where D1's local copy and the vector spool are
    /// kept while the archive is made (default: a temporary folder).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}
