//! Arguments of `pgflare completions` and `pgflare man`: what the shell and
//! the manual know of pgflare, generated from these very definitions (so
//! they never disagree with `--help`).

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write pgflare.1 and one page per command (pgflare-load.1, ...) into
    /// this folder instead of printing pgflare.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}
