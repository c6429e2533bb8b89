//! One module per command; each turns arguments into a plan (via
//! `config`), runs the library, and prints for people or for `--json`.
//! Commands return the process exit code; errors become exit code 2,
//! another runner holding what a command needs (the sync lease, a load's
//! state folder) 3 ([`sync::EXIT_BUSY`]).

mod archive;
mod archive_cloudflare;
mod doctor;
mod emulate;
mod init;
mod inspect;
mod inspect_filtering;
mod load;
mod reconcile;
mod restore;
mod shell;
mod sync;
mod verify;

use crate::output::{self, outln};

use std::process::ExitCode;

use crate::cli::{ArchiveSub, Cli, Command};
use crate::progress::Progress;

/// Exit code when a verification found differences.
pub const EXIT_DIFFERENCES: u8 = 1;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let code = match run_command(cli).await {
        Ok(code) => code,
        // Another pgflare holds what this one needs: not a failure of this
        // one, and schedulers tell the two apart by the code.
        Err(e) => match e.downcast_ref::<crate::error::Error>() {
            Some(crate::error::Error::Busy(who)) => {
                output::errln!("pgflare: not running: {who}; exiting with code {}", sync::EXIT_BUSY);
                ExitCode::from(sync::EXIT_BUSY)
            }
            _ => return Err(e),
        },
    };
    output::finish().map_err(|e| anyhow::anyhow!("writing the output: {e}"))?;
    Ok(code)
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let progress = Progress::new(!cli.json && !cli.quiet);
    let t = cli.timeouts();
    match cli.command {
        Command::Inspect(args) => inspect::run(args, cli.json, t).await,
        Command::Init(args) => init::run(args, cli.json, t).await,
        Command::Emulate(args) => emulate::run(args, cli.json).await,
        Command::Completions(args) => shell::completions(&args),
        Command::Man(args) => shell::man(&args),
        Command::Archive(cmd) => match cmd.verify {
            Some(ArchiveSub::Verify(args)) => archive::verify(args, cli.json, &progress, t).await,
            None => archive::export(cmd.export, cli.json, &progress, t).await,
        },
        Command::Load(args) => load::run(args, cli.json, &progress, t).await,
        Command::Restore(args) => restore::run(args, cli.json, &progress, t).await,
        Command::Reconcile(args) => reconcile::run(args, cli.json, &progress, t).await,
        Command::Verify(args) => verify::run(args, cli.json, &progress, t).await,
        Command::Sync(args) => sync::run(args, cli.json, &progress, t).await,
        Command::Doctor(args) => doctor::run(args, cli.json, t).await,
    }
}

/// Prints a value as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// 1234567 -> "1.2 MiB".
fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
