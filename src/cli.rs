//! Command-line definitions (clap). Only argument shapes and help text live
//! here; validation into a plan happens in `config`, work in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Move a RAG service's data from Postgres + pgvector (e.g. Supabase) to
/// Cloudflare D1 and Vectorize, verify it, and archive the source to Parquet.
///
/// Start with `pgflare inspect`: it shows how every column will be mapped
/// and every place the data will not fit Cloudflare's limits. The source is
/// read at one consistent snapshot by parallel workers; nothing is written
/// to it.
#[derive(Debug, Parser)]
#[command(name = "pgflare", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of tables (progress
    /// bars are turned off).
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe the source tables: rows, size, the type mapping of every
    /// column, and every place the data will not fit D1 or Vectorize (with
    /// counts and example keys).
    ///
    /// Example: pgflare inspect --table chunks --table documents
    Inspect(InspectArgs),

    /// Export tables to Parquet with a manifest that proves the archive
    /// matches the source (the final archive before decommissioning).
    ///
    /// Example: pgflare archive --out ./archive && pgflare archive verify ./archive --against-source
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Archive(ArchiveCommand),
}

/// Where to read from and what.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// Postgres connection URL (postgres://USER:PASSWORD@HOST:PORT/DB).
    /// Defaults to $DATABASE_URL, then $SUPABASE_DB_URL. On Supabase use the
    /// direct connection (port 5432): the transaction pooler cannot share a
    /// snapshot between workers.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Schema of unqualified table names, and whose tables are taken when
    /// no --table is given.
    #[arg(long, default_value = "public", value_name = "SCHEMA")]
    pub schema: String,

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

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Skip the scan that counts rows over Cloudflare's limits (it reads
    /// every row once).
    #[arg(long)]
    pub no_scan: bool,
}

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

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub source: SourceArgs,

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

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive folder (holding manifest.json).
    pub dir: PathBuf,

    /// Also compare with the source, row by row, at a new snapshot. The
    /// source is --database-url, $DATABASE_URL or $SUPABASE_DB_URL.
    #[arg(long)]
    pub against_source: bool,

    /// Postgres connection URL for --against-source.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    #[command(flatten)]
    pub tuning: TuningArgs,
}
