//! What commands print on stdout, written so that a reader that stops
//! early (`pgflare inspect | head -1`) ends the output quietly instead of
//! a panic (Rust ignores SIGPIPE, so a closed pipe is an error on write).
//! The command's work and exit code stay what they were: only the lines
//! nobody reads any more are dropped. Any other write error (a full disk
//! under `> file`) is kept and reported once the command is done.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// stdout is process-wide, and so is knowing that its reader has gone.
static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes one line to stdout (see the module documentation).
pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        settle(e);
    }
}

/// Writes a whole text (a generated script or page) to stdout, as [`line`].
pub fn text(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_all(bytes) {
        settle(e);
    }
}

fn settle(e: std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        if let Ok(mut f) = FAILED.lock() {
            f.get_or_insert(e);
        }
    }
}

/// Flushes stdout; returns the first write error other than a closed pipe.
pub fn finish() -> std::io::Result<()> {
    if !CLOSED.load(Ordering::Relaxed) {
        if let Err(e) = std::io::stdout().lock().flush() {
            settle(e);
        }
    }
    match FAILED.lock().ok().and_then(|mut f| f.take()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes one line to stderr; a closed stderr is ignored (the exit code
/// still tells what happened).
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` for commands: see [`err_line`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::err_line(format_args!($($arg)*))
    };
}
pub(crate) use errln;

/// `println!` for command output: see [`line`].
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
