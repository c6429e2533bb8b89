//! What ships around the binary (issue 19): shell completions that the
//! shells accept, manual pages for every command, and a `--version` that
//! names the commit it was built from. No database needed.

use std::process::Command;

fn pgflare(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgflare")).args(args).output().expect("pgflare runs")
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

#[test]
fn the_bash_completion_script_parses_and_completes_every_command_and_flag() {
    let script = stdout(&pgflare(&["completions", "bash"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgflare.bash");
    std::fs::write(&path, &script).expect("write");
    let check = Command::new("bash").arg("-n").arg(&path).output().expect("bash");
    assert!(check.status.success(), "bash -n refused it: {}", String::from_utf8_lossy(&check.stderr));
    // Completing `pgflare lo` offers load; `pgflare load --vec` the Vectorize flags.
    let probe = format!(
        "source {p}; COMP_WORDS=(pgflare lo); COMP_CWORD=1; _pgflare pgflare lo pgflare; echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=(pgflare load --vectorize-i); COMP_CWORD=2; _pgflare pgflare --vectorize-i load; echo \"${{COMPREPLY[@]}}\"",
        p = path.display()
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first().copied(), Some("load"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines.get(1).copied(), Some("--vectorize-index"), "{text}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let s = stdout(&pgflare(&["completions", shell]));
        assert!(s.contains("vectorize-index"), "{shell}: {s}");
    }
    let bad = pgflare(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_writes_a_page_for_every_command() {
    let page = stdout(&pgflare(&["man"]));
    assert!(page.contains(".TH pgflare 1"), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = pgflare(&["man", "--out", dir.path().to_str().expect("path")]);
    stdout(&o);
    for name in ["pgflare", "pgflare-load", "pgflare-sync", "pgflare-verify", "pgflare-archive-verify"] {
        let text = std::fs::read_to_string(dir.path().join(format!("{name}.1"))).expect(name);
        assert!(text.contains(&format!(".TH {name} 1")), "{name}: {text}");
    }
    let load = std::fs::read_to_string(dir.path().join("pgflare-load.1")).expect("load page");
    assert!(load.contains("vectorize\\-index"), "flags are in the page");
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let long = stdout(&pgflare(&["--version"]));
    let short = stdout(&pgflare(&["-V"]));
    assert!(long.starts_with(&format!("pgflare {}\ncommit: ", env!("CARGO_PKG_VERSION"))), "{long}");
    assert!(long.contains("build: ") && long.contains("rustc "), "{long}");
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output();
    if let Some(h) = head.ok().filter(|h| h.status.success()) {
        let commit = String::from_utf8_lossy(&h.stdout).trim().to_string();
        assert!(long.contains(&format!("commit: {commit}")), "{long} (HEAD is {commit})");
        assert!(short.contains(&commit), "{short}");
    }
}
