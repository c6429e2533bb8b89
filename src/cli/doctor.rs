//! Arguments of `pgflare doctor`.

use clap::Args;

use super::{CloudflareArgs, ProjectArgs};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,

    /// The load will create the Vectorize index (`pgflare load
    /// --create-index`): a missing index is then a warning, not a problem.
    #[arg(long)]
    pub create_index: bool,

    /// Check the settings and the Postgres side only (for a rehearsal into
    /// files or a local SQLite file).
    #[arg(long)]
    pub no_cloudflare: bool,
}
