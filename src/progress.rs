//! Progress display: one bar per table with rows, rows/s and ETA, drawn on
//! stderr only when it is a terminal and `--json`/`--quiet` were not asked
//! for. Bars are cheap to update from worker threads (indicatif batches
//! redraws), and callers update per batch, not per row.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    enabled: bool,
}

impl Progress {
    /// Visible when `visible` and stderr is a terminal.
    pub fn new(visible: bool) -> Self {
        let enabled = visible && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let target =
            if enabled { ProgressDrawTarget::stderr_with_hz(8) } else { ProgressDrawTarget::hidden() };
        Progress { multi: MultiProgress::with_draw_target(target), enabled }
    }

    pub fn hidden() -> Self {
        Progress::new(false)
    }

    /// A bar counting rows towards `total` (an estimate is fine).
    pub fn rows(&self, label: &str, total: Option<u64>) -> ProgressBar {
        let bar = match total {
            Some(t) if t > 0 => ProgressBar::new(t),
            _ => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(
            "{prefix:>16.bold} [{bar:30.cyan/blue}] {human_pos:>10}/{human_len} rows  {rate:>14}  ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{} rows/s", indicatif::HumanCount(s.per_sec() as u64));
        })
        .progress_chars("=> ");
        let bar = self.multi.add(bar.with_style(style).with_prefix(label.to_string()));
        if !self.enabled {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar
    }

    /// A spinner for waiting with no count (its message says for what).
    pub fn spinner(&self, label: &str) -> ProgressBar {
        let style = ProgressStyle::with_template("{prefix:>16.bold} {spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = self.multi.add(ProgressBar::new_spinner().with_style(style).with_prefix(label.to_string()));
        if self.enabled {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar
    }

    /// Whether bars are drawn (stderr is a terminal and output was not
    /// turned off).
    pub fn is_visible(&self) -> bool {
        self.enabled
    }

    /// Prints a line above the bars (or to stderr when they are hidden).
    pub fn println(&self, line: &str) {
        if self.enabled {
            let _ = self.multi.println(line);
        } else {
            // A closed stderr (`2>&1 | head`) is no reason to panic.
            let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{line}\n"));
        }
    }
}
