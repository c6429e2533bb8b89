//! `--help` examples survive copy and paste: rendered at 80 columns, every
//! example line of every command's help (a line of its description that
//! starts with `pgflare`, an environment assignment, or a continuation)
//! comes out whole, never wrapped in the middle of a command (issue 19).

use clap::CommandFactory as _;

use super::Cli;

/// The example lines of a command's long description, as written.
fn examples(about: &str) -> Vec<String> {
    about
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .filter(|l| l.starts_with("--") || l.contains("pgflare "))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_example_line_fits_80_columns_unwrapped() {
    let mut root = Cli::command().term_width(80);
    root.build();
    let mut stack = vec![root];
    let mut checked = 0;
    let mut broken = Vec::new();
    while let Some(mut cmd) = stack.pop() {
        let about = cmd.get_long_about().or(cmd.get_about()).map(|a| a.to_string()).unwrap_or_default();
        let rendered = cmd.render_long_help().to_string();
        let lines: Vec<&str> = rendered.lines().map(str::trim).collect();
        for ex in examples(&about) {
            checked += 1;
            if !lines.contains(&ex.as_str()) {
                broken.push(format!("{}: {ex}", cmd.get_name()));
            }
        }
        stack.extend(cmd.get_subcommands().cloned());
    }
    assert!(checked > 20, "only {checked} example lines found: the filter is wrong");
    assert!(broken.is_empty(), "wrapped at 80 columns (split with ` \\` instead):\n{}", broken.join("\n"));
}
