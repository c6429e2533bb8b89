//! Arguments of `pgflare verify` (what is compared, how deep, the report's forms).

use std::path::PathBuf;

use clap::Args;

use super::*;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive folder (holding manifest.json).
    pub dir: PathBuf,

    /// Also compare with the source, row by row, at a new snapshot. The
    /// source is --database-url, pgflare.toml's [source] url,
    /// $DATABASE_URL or $SUPABASE_DB_URL.
    #[arg(long)]
    pub against_source: bool,

    /// Postgres connection URL for --against-source.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// pgflare.toml to take [source] url from. Default: ./pgflare.toml
    /// when it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// `verify --k`: refused before any work when Vectorize would refuse the
/// queries (after the whole source was read for the exact top-k).
pub(super) fn parse_top_k(s: &str) -> std::result::Result<usize, String> {
    let max = crate::cloudflare::limits::VECTORIZE_MAX_TOP_K;
    match s.parse::<usize>() {
        Ok(k) if (1..=max).contains(&k) => Ok(k),
        _ => Err(format!("must be a whole number from 1 to {max} (Vectorize answers at most {max} matches)")),
    }
}
