//! The `pgflare` binary: parse arguments, run the command, map the outcome
//! to an exit code (0 ok, 1 differences found, 2 error, 3 busy). Every
//! error message is passed through the redactor before it is printed. A
//! closed stdout or stderr ends the output quietly (see
//! `commands::output`): the exit code is the command's.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match pgflare::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go out as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        // A usage error quotes the arguments, and a URL given where a flag
        // was meant (`pgflare inspect postgres://...`) holds a password.
        Err(e) => {
            let text = pgflare::redact::redact_text(&e.render().to_string());
            let _ = write!(std::io::stderr(), "{text}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            // A closed stderr is no reason to panic: the exit code still tells.
            let _ = writeln!(std::io::stderr(), "error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(pgflare::commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let text = format!("{e:#}");
            let _ = writeln!(std::io::stderr(), "error: {}", pgflare::redact::redact_text(&text));
            ExitCode::from(2)
        }
    }
}
