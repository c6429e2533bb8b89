#!/usr/bin/env bash
# The main job, end to end, on the local default stack: starts the local
# Postgres with pgvector (scripts/pg.sh), seeds a demo database with the
# deterministic RAG fixtures (documents + chunks, hard rows included),
# then runs what a migration team runs: `pgflare inspect`; `pgflare init`
# (pgflare.toml + D1 migration); the bulk load `pgflare load` into a local
# Cloudflare D1 API (`pgflare emulate`, over HTTP, import flow) and into a
# local SQLite file (then `pgflare doctor` checks settings, source and
# account), each compared with Postgres row by row by an
# independent reader (Python's sqlite3 + psycopg); then `pgflare archive`
# (Parquet + manifest), `pgflare archive verify` against the source, and
# the archive read back with pyarrow; then the source changes, `pgflare
# sync --once` carries the changes, and `pgflare verify` proves D1 and
# Vectorize equal the source (report in out/demo/verify/report.html).
# Safe to run again: it re-seeds and starts over (work files in out/).
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
WORK="$ROOT/out/demo"

ensure_venv
log "building pgflare (release)"
cargo build --release --bins -q
PGFLARE="$ROOT/target/release/pgflare"

ADMIN_URL="$(bash scripts/pg.sh start)"
bash scripts/pg.sh psql postgres -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS pgflare_demo WITH (FORCE)" -c "CREATE DATABASE pgflare_demo"
export DATABASE_URL="${ADMIN_URL%/*}/pgflare_demo"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "seed: $CHUNKS chunks x $DIMS dims (deterministic, with the hard rows)"
"$ROOT/target/release/pgflare-seed" --chunks "$CHUNKS" --dims "$DIMS" --drop

step "pgflare inspect"
"$PGFLARE" inspect

rm -rf "$WORK" && mkdir -p "$WORK"

step "pgflare init: a starting pgflare.toml and a D1 migration from the source"
"$PGFLARE" init --out-config "$WORK/pgflare.toml" --migrations-dir "$WORK/migrations"
cat "$WORK/pgflare.toml"

step "pgflare emulate: a local Cloudflare D1 + Vectorize API (database 'rehearsal') on a free port"
EMU_TOKEN="demo-$(date +%s%N)"
CLOUDFLARE_API_TOKEN="$EMU_TOKEN" "$PGFLARE" --json emulate --listen 127.0.0.1:0 \
    --data-dir "$WORK/emulator" --account-id demo-account --d1-database rehearsal >"$WORK/emulate.out" &
EMU_PID=$!
trap 'kill "$EMU_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$WORK/emulate.out" ] && break; sleep 0.1; done
BASE_URL="$("$VENV/bin/python" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["base_url"])' "$WORK/emulate.out")"
echo "listening on $BASE_URL"

step "pgflare load --target api: rows to D1 (import flow) and embeddings to Vectorize (index 'chunks', created), one pass"
CLOUDFLARE_API_BASE_URL="$BASE_URL" CLOUDFLARE_ACCOUNT_ID=demo-account CLOUDFLARE_API_TOKEN="$EMU_TOKEN" \
    "$PGFLARE" load --config "$WORK/pgflare.toml" --state-dir "$WORK/state" --target api --d1-database-id rehearsal \
    --vectorize-index chunks --create-index

step "pgflare doctor: settings, source and account, read-only (exit 1 on any problem)"
CLOUDFLARE_API_BASE_URL="$BASE_URL" CLOUDFLARE_ACCOUNT_ID=demo-account CLOUDFLARE_API_TOKEN="$EMU_TOKEN" \
    "$PGFLARE" doctor --config "$WORK/pgflare.toml" --d1-database-id rehearsal --vectorize-index chunks

step "independent check: the emulator's Vectorize index equals Postgres vector by vector; top-10 queries match exact cosine"
CLOUDFLARE_API_TOKEN="$EMU_TOKEN" "$VENV/bin/python" tests/py/compare_vectorize.py "$DATABASE_URL" public.chunks \
    --vector embedding --metadata document_id,chunk_index,token_count,tags,created_at,updated_at \
    --config "$WORK/pgflare.toml" --api "$BASE_URL" demo-account chunks --topk 10 --queries 5

step "independent check: the emulator's D1 database equals Postgres row by row"
"$VENV/bin/python" tests/py/compare_d1.py "$DATABASE_URL" "$WORK/emulator/d1/rehearsal.sqlite" \
    documents "chunks:-embedding" | tail -n 14

step "pgflare load --target sqlite (a local SQLite file, as wrangler keeps for local development)"
"$PGFLARE" load --config "$WORK/pgflare.toml" --state-dir "$WORK/state" --target sqlite --sqlite "$WORK/d1.sqlite"
"$VENV/bin/python" tests/py/compare_d1.py "$DATABASE_URL" "$WORK/d1.sqlite" documents "chunks:-embedding" >/dev/null
echo "D1 SQLite file equals the source: $WORK/d1.sqlite"

step "pgflare archive --out $OUT"
"$PGFLARE" archive --out "$OUT" --overwrite

step "pgflare archive verify $OUT --against-source"
"$PGFLARE" archive verify "$OUT" --against-source

step "independent check: pyarrow reads every file, compared with Postgres value by value"
"$VENV/bin/python" tests/py/compare_archive.py --archive "$OUT"

printf '\nThe archive is in %s (manifest.json + Parquet files per table).\n' "$OUT"

step "the source keeps changing: one chunk inserted, one edited, one re-embedded, one deleted"
bash scripts/pg.sh psql pgflare_demo -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO chunks (id, document_id, chunk_index, content, token_count, tags, metadata, embedding, created_at, updated_at)
  SELECT 'dddddddd-0000-4000-8000-000000000001', document_id, 100000, 'A chunk written during the dual run.', 8,
         '{demo}', '{"demo": true}', embedding, now(), now()
  FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 1;
UPDATE chunks SET content = content || ' [edited during the dual run]', updated_at = now()
  WHERE id = (SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id OFFSET 1 LIMIT 1);
UPDATE chunks SET embedding = (SELECT embedding FROM chunks WHERE embedding IS NOT NULL ORDER BY id OFFSET 5 LIMIT 1), updated_at = now()
  WHERE id = (SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id OFFSET 2 LIMIT 1);
DELETE FROM chunks WHERE id = (SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id OFFSET 3 LIMIT 1);
SQL

step "pgflare sync --once: the changes reach D1 and Vectorize (checkpoint and lease live in D1)"
CLOUDFLARE_API_BASE_URL="$BASE_URL" CLOUDFLARE_ACCOUNT_ID=demo-account CLOUDFLARE_API_TOKEN="$EMU_TOKEN" \
    "$PGFLARE" sync --config "$WORK/pgflare.toml" --target api --d1-database-id rehearsal --vectorize-index chunks \
    --once --work-dir "$WORK/sync" --summary "$WORK/sync-summary.json"
"$VENV/bin/python" - "$WORK/emulator/d1/rehearsal.sqlite" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print("in D1 now:", c.execute("SELECT content FROM chunks WHERE id = 'dddddddd-0000-4000-8000-000000000001'").fetchone()[0])
print("edited rows in D1:", c.execute("SELECT count(*) FROM chunks WHERE content LIKE '%[edited during the dual run]'").fetchone()[0])
PY

step "pgflare verify: the source vs the emulator's D1 and Vectorize (buckets of row digests, vectors bit for bit, 10 parity queries)"
CLOUDFLARE_API_BASE_URL="$BASE_URL" CLOUDFLARE_ACCOUNT_ID=demo-account CLOUDFLARE_API_TOKEN="$EMU_TOKEN" \
    "$PGFLARE" verify --config "$WORK/pgflare.toml" --sqlite "$WORK/emulator/d1/rehearsal.sqlite" \
    --vectorize-index chunks --report-dir "$WORK/verify"
echo "open the report: $WORK/verify/report.html (also report.md, report.json)"
log "Postgres is left running on ${ADMIN_URL##*@} (database pgflare_demo) so that you can look around:"
log "  bash scripts/pg.sh psql pgflare_demo      # a psql session"
log "  bash scripts/pg.sh stop                   # stop it (scripts/test.sh would otherwise reuse it, and leave it running)"
