//! Names the build for `pgflare --version`: the git commit it was built
//! from (with `-modified` when tracked files differed from it), the
//! profile, the target and the compiler. A build outside a git checkout
//! (a source tarball, a container build without .git) takes the commit
//! from PGFLARE_COMMIT when set, else says "unknown commit".

use std::process::Command;

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PGFLARE_COMMIT");
    for watched in [".git/HEAD", ".git/refs/heads", ".git/packed-refs", ".git/index"] {
        if std::path::Path::new(watched).exists() {
            println!("cargo:rerun-if-changed={watched}");
        }
    }
    let commit = match std::env::var("PGFLARE_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        Some(c) => c.trim().to_string(),
        None => match run("git", &["rev-parse", "--short=12", "HEAD"]) {
            Some(c) => {
                let dirty = run("git", &["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{c}-modified")
                } else {
                    c
                }
            }
            None => "unknown commit".to_string(),
        },
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "rustc (version unknown)".into());
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=PGFLARE_COMMIT={commit}");
    println!("cargo:rustc-env=PGFLARE_BUILD={profile} build, {target}, {rustc_version}");
}
