#!/usr/bin/env bash
# Builds the container image (Dockerfile) and checks it: it runs as a
# non-root user, `--version` names the commit, and `pgflare inspect` reaches
# the local Postgres (scripts/pg.sh) from inside the container with the
# usual DATABASE_URL and a mounted work folder. Needs a running Docker
# daemon; not part of scripts/test.sh (the image's cold build alone takes
# about 15 minutes on 2 cores, past CI's budget with the tests).
#
# Usage: scripts/docker.sh [IMAGE_TAG]   (default pgflare:dev)
#        scripts/docker.sh --context-only
#   --context-only  without Docker: copies exactly what the Dockerfile's build
#                   stage COPYs (its COPY lines, .dockerignore's list) into an
#                   empty folder without .git and runs the stage's cargo build
#                   there, to prove the build context is complete

set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="docker"
cd "$ROOT"

if [ "${1:-}" = "--context-only" ]; then
    ensure_cargo_on_path
    ctx="$(mktemp -d)"
    trap 'rm -rf "$ctx"' EXIT
    # The build stage's COPY sources (everything between the first FROM and the second).
    mapfile -t sources < <(awk '/^FROM /{n++} n==1 && /^COPY /{for (i = 2; i < NF; i++) print $i}' Dockerfile)
    [ "${#sources[@]}" -gt 0 ] || die "no COPY line found in the Dockerfile's build stage"
    for src in "${sources[@]}"; do
        mkdir -p "$ctx/$(dirname "$src")"
        cp -r "$src" "$ctx/$src"
    done
    log "build context: ${sources[*]} (no .git); cargo build --locked --release --bin pgflare"
    (cd "$ctx" && PGFLARE_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD)" \
        cargo build --locked --release --bin pgflare) >&2
    out="${CARGO_TARGET_DIR:-$ctx/target}/release/pgflare"
    "$out" --version | grep -q "commit: $(git rev-parse --short=12 HEAD)" || die "the binary does not name the commit"
    log "ok: the Dockerfile's build context is complete ($("$out" -V))"
    exit 0
fi

tag="${1:-pgflare:dev}"
command -v docker >/dev/null 2>&1 || die "docker not found on PATH"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (docker info failed); start it first"
commit="$(git rev-parse --short=12 HEAD)"
log "docker build -t $tag (commit $commit)"
docker build --build-arg PGFLARE_COMMIT="$commit" -t "$tag" . >&2

user="$(docker run --rm --entrypoint id "$tag" -u)"
[ "$user" != 0 ] || die "the image runs as root"
docker run --rm "$tag" --version | grep -q "commit: $commit" || die "the image's --version does not name $commit"

ensure_venv
url="$(bash scripts/pg.sh start)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
log "pgflare inspect from the container (host network, work folder mounted)"
docker run --rm --network host -e DATABASE_URL="$url" -v "$work:/work" "$tag" \
    --json inspect >"$work/inspect.json"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/inspect.json" || die "inspect printed no JSON"
log "ok: $tag runs as uid $user, names $commit, and reaches Postgres"
