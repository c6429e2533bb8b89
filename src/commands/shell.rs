//! `pgflare completions SHELL` and `pgflare man`: generated from the clap
//! definitions themselves (clap_complete, clap_mangen), so a new flag is in
//! the shell's completion and the manual the day it is in `--help`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::output;

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "pgflare", &mut out);
    output::text(&out);
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match &args.out {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out).context("rendering the manual page")?;
            output::text(&out);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let written = write_pages(cmd, dir)?;
            output::outln!(
                "wrote {written} manual pages into {} (try: man -M {} pgflare)",
                dir.display(),
                dir.parent().unwrap_or(dir).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// pgflare.1, then pgflare-CMD.1 for each command (and pgflare-CMD-SUB.1
/// below it), as `git` ships its pages.
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let mut cmd = cmd;
    cmd.build();
    let mut stack = vec![cmd];
    let mut written = 0;
    while let Some(c) = stack.pop() {
        let name = c.get_display_name().unwrap_or_else(|| c.get_name()).to_string();
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(c.clone()).render(&mut out).context("rendering a manual page")?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
        stack.extend(c.get_subcommands().filter(|s| s.get_name() != "help").cloned());
    }
    Ok(written)
}
