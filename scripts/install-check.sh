#!/usr/bin/env bash
# Proves the documented install path on a fresh checkout: clones this
# repository's HEAD into a temporary folder (nothing of this working tree
# but what is committed), runs `cargo install --locked --path . --root DIR`
# there, then `DIR/bin/pgflare --help`, `--version` (which must name the
# cloned commit) and `completions bash` through `bash -n`. Not part of
# scripts/test.sh: a cold release build takes about 14 minutes on 2 cores.
#
# Usage: scripts/install-check.sh
# Environment:
#   CARGO_TARGET_DIR  reuse a target folder (faster; default: cargo install's own)

set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="install-check"
ensure_cargo_on_path

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
commit="$(git -C "$ROOT" rev-parse --short=12 HEAD)"
log "fresh clone of $commit into $work/pgflare"
git clone --quiet --no-local "$ROOT" "$work/pgflare"
min_rust="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$work/pgflare/Cargo.toml")"
log "rustc $(rustc --version | cut -d' ' -f2) (the crate needs $min_rust or later)"
start=$(date +%s)
(cd "$work/pgflare" && cargo install --locked --quiet --path . --root "$work/root") >&2
log "cargo install took $(( $(date +%s) - start )) s"
bin="$work/root/bin/pgflare"
"$bin" --help | grep -q "Usage: pgflare" || die "$bin --help printed no usage"
"$bin" --version | grep -q "commit: $commit\$" || die "$bin --version does not name $commit: $("$bin" --version)"
"$bin" completions bash >"$work/pgflare.bash"
bash -n "$work/pgflare.bash" || die "bash refused the completion script"
log "ok: $("$bin" -V); --help, --version and completions bash work"
