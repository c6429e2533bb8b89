//! The `pgflare` binary: parse arguments, run the command, map the outcome
//! to an exit code (0 ok, 1 differences found, 2 error, 3 busy). Every
//! error message is passed through the redactor before it is printed. A
//! closed stdout or stderr ends the output quietly (see
//! `commands::output`): the exit code is the command's.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    bound_heap_fragmentation();
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

/// glibc raises its mmap threshold each time a large block is freed (up to
/// 32 MiB on 64-bit; mallopt(3), M_MMAP_THRESHOLD: "dynamic adjustment ...
/// is disabled if any of M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, or
/// M_MMAP_MAX is set"); past that, blocks of tens of MiB (a batch of 4,096 vectors of
/// 1536 floats is 25 MiB) come from the heap, whose free space then
/// fragments as the blocks come and go. Measured: `restore --target
/// postgres` peaked at 885 MiB on 200,000 rows against 296 MiB on 20,000
/// (BENCHMARKS.md, issue 18). A fixed threshold of 8 MiB, which also stops
/// the adjustment, serves such blocks by mmap and returns them whole:
/// 313 MiB at 200,000 rows, with the archive's time and memory unchanged
/// (1 MiB also bounded it, but cost the archive ~20% in page faults).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_heap_fragmentation() {
    // The user's own setting wins (glibc reads it at start): a host short
    // of memory can trade time for it (README, "Memory").
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt only sets a malloc tunable; it runs before any other
    // thread exists, and a refusal (return 0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_heap_fragmentation() {}
