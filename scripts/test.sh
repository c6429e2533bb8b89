#!/usr/bin/env bash
# THE command that runs every test of the project, locally and in CI
# (.ci/run execs it from a clean clone with CI=true and nothing installed by
# hand). It prepares the Python venv (scripts/requirements.txt), starts the
# local Postgres+pgvector of scripts/pg.sh unless one is already running,
# exports
#   PGFLARE_TEST_DATABASE_URL  postgres://postgres:...@127.0.0.1:PORT/postgres
#   PGFLARE_PYTHON             the venv's python (has pyarrow)
#   PGFLARE_WRANGLER           wrangler (npm), for its local D1
#   PGFLARE_CHROMIUM           headless Chromium (apt), for the HTML report
# and runs, in order: scripts/lint-workflows.sh (examples/github-actions),
# scripts/deps.py --files --cycles (no job imports another,
# no cycle between folders or files outside the emulator), cargo fmt --check, cargo clippy -D warnings and
# cargo test --all-targets (extra arguments go to cargo test). Postgres is
# stopped at the end only if this script started it, also on failure.
#
# Usage: scripts/test.sh [cargo test args...]

set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="test.sh"
cd "$ROOT"

ensure_cargo_on_path

STEP="setup"
STARTED_PG=0
TEST_OUTPUT="$(mktemp)"

# Sum the "test result:" lines of cargo test into one closing line.
print_counts() {
    awk '
        /^test result: / {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed/) passed += $i
                if ($(i + 1) ~ /^failed/) failed += $i
                if ($(i + 1) ~ /^ignored/) ignored += $i
            }
            seen = 1
        }
        END {
            if (seen) printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored
        }' "$TEST_OUTPUT"
}

finish() {
    local rc=$?
    set +e
    if [ "$STARTED_PG" = 1 ]; then
        bash "$ROOT/scripts/pg.sh" stop
    fi
    if [ "$rc" -eq 0 ]; then
        echo "test.sh: OK: cargo fmt, cargo clippy and cargo test all passed"
    else
        echo "test.sh: FAILED at step '$STEP' (exit $rc)"
    fi
    print_counts
    rm -f "$TEST_OUTPUT"
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() {
    STEP="$*"
    log "==> $*"
}

ensure_rust_components() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH"
    command -v rustup >/dev/null 2>&1 || return 0
    local installed component
    installed="$(rustup component list --installed 2>/dev/null)" || return 0
    for component in rustfmt clippy; do
        if ! grep -q "^$component" <<<"$installed"; then
            log "rustup component add $component"
            rustup component add "$component" >&2
        fi
    done
}

step "python venv"
ensure_venv

step "node (20+; from PyPI into the venv when the system has none)"
ensure_node
log "node $(node --version) at $(command -v node)"

step "wrangler (npm)"
PGFLARE_WRANGLER="$(ensure_wrangler)"
export PGFLARE_WRANGLER

step "chromium (apt)"
PGFLARE_CHROMIUM="$(ensure_chromium)"
export PGFLARE_CHROMIUM
log "PGFLARE_CHROMIUM=$PGFLARE_CHROMIUM"

step "rust components"
ensure_rust_components

step "start Postgres"
if bash scripts/pg.sh status >/dev/null 2>&1; then
    log "NOTE: reusing the Postgres already running ($(bash scripts/pg.sh status)), started earlier (by scripts/demo.sh?);"
    log "      it stays running afterwards: 'bash scripts/pg.sh stop' stops it, 'bash scripts/pg.sh reset' empties it"
else
    STARTED_PG=1
    if [ "${CI:-}" = "true" ]; then
        # A CI run starts from an empty cluster, whatever an earlier run left.
        bash scripts/pg.sh reset
    fi
fi
PGFLARE_TEST_DATABASE_URL="$(bash scripts/pg.sh start)"
PGFLARE_PYTHON="$VENV/bin/python"
export PGFLARE_TEST_DATABASE_URL PGFLARE_PYTHON
log "PGFLARE_TEST_DATABASE_URL=postgres://postgres:***@${PGFLARE_TEST_DATABASE_URL##*@}"
log "PGFLARE_PYTHON=$PGFLARE_PYTHON"

step "workflow examples (actionlint, GitHub's workflow schema)"
bash scripts/lint-workflows.sh

step "imports: no job imports another, no cycles"
python3 scripts/deps.py --files --cycles >/dev/null || { python3 scripts/deps.py --files --cycles | sed -n '/job -> job/,$p'; exit 1; }

step "cargo fmt"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets "$@" 2>&1 | tee "$TEST_OUTPUT"

STEP="done"
