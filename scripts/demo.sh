#!/usr/bin/env bash
# The main job, end to end, on the local default stack: starts the local
# Postgres with pgvector (scripts/pg.sh), seeds a demo database with the
# deterministic RAG fixtures (documents + chunks, hard rows included),
# then runs what a migration team runs: `pgflare inspect`, `pgflare archive`
# (parallel, one snapshot, Parquet + manifest), `pgflare archive verify`
# against the source, and reads the archive back with an independent
# Parquet reader (pyarrow). Safe to run again: it re-seeds and overwrites.
#
# Usage: scripts/demo.sh            (DEMO_CHUNKS=5000 DEMO_DIMS=1536 by default)

set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="demo.sh"
cd "$ROOT"

ensure_cargo_on_path

CHUNKS="${DEMO_CHUNKS:-5000}"
DIMS="${DEMO_DIMS:-1536}"
OUT="$ROOT/out/archive"

ensure_venv
log "building pgflare (release)"
cargo build --release --bins -q
PGFLARE="$ROOT/target/release/pgflare"

ADMIN_URL="$(bash scripts/pg.sh start)"
bash scripts/pg.sh psql postgres -q -c "DROP DATABASE IF EXISTS pgflare_demo WITH (FORCE)" -c "CREATE DATABASE pgflare_demo"
export DATABASE_URL="${ADMIN_URL%/*}/pgflare_demo"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "seed: $CHUNKS chunks x $DIMS dims (deterministic, with the hard rows)"
"$ROOT/target/release/pgflare-seed" --chunks "$CHUNKS" --dims "$DIMS" --drop

step "pgflare inspect"
"$PGFLARE" inspect

step "pgflare archive --out $OUT"
"$PGFLARE" archive --out "$OUT" --overwrite

step "pgflare archive verify $OUT --against-source"
"$PGFLARE" archive verify "$OUT" --against-source

step "independent check: pyarrow reads every file, compared with Postgres value by value"
"$VENV/bin/python" tests/py/compare_archive.py --archive "$OUT"

printf '\nThe archive is in %s (manifest.json + Parquet files per table).\n' "$OUT"
