#!/usr/bin/env bash
# Fault campaign: SIGKILL at random moments of `pgflare load`, `pgflare sync`
# and `pgflare verify` while the Cloudflare emulator injects faults (5xx
# answers, requests run but left unanswered, latency, slow Vectorize
# mutations), then checks that the migration still converges exactly.
#
# One round:
#   1. a fresh database seeded by pgflare-seed (seed = round number), a fresh
#      emulator (D1 + Vectorize) with the faults below, `pgflare init`;
#   2. `load --target api` (D1 + Vectorize) killed with SIGKILL after a random
#      delay, up to --kills times, then run to the end: it must exit 0;
#   3. `verify` killed at a random moment, then run to the end: exit 0
#      (source, D1 and Vectorize hold the same rows and vectors);
#   4. a day of changes: edits, re-embedded chunks (embeddings swapped
#      between rows), new chunks, and whole documents deleted with their
#      chunks (>= 100 rows);
#   5. `sync --once` killed the same way, then run to the end: exit 0;
#   6. `verify` again: exit 0.
# A round converges when every final run exits 0 and both verifies find
# no difference. The summary (converged / total, kills, seconds) is printed
# and written to out/chaos/summary.json; per-round logs stay in out/chaos/.
#
# Usage: scripts/chaos.sh [--rounds N] [--chunks N] [--dims N] [--kills N]
#                         [--fail-rate P] [--drop-rate P] [--latency-ms MS]
#                         [--vectorize-delay-ms MS] [--max-kill-ms MS]
# Defaults: 10 rounds, 3000 chunks x 64 dims, 3 kills per job, 10% 5xx,
# 5% dropped answers, 20 ms latency, 300 ms Vectorize delay, kills within
# the first 4000 ms of each run. Not part of CI (it takes ~2 minutes per
# round); its last result is in the README.

set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="chaos.sh"
cd "$ROOT"

ROUNDS=10
CHUNKS=3000
DIMS=64
KILLS=3
FAIL_RATE=0.1
DROP_RATE=0.05
LATENCY_MS=20
VDELAY_MS=300
MAX_KILL_MS=4000

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --chunks) CHUNKS="$2"; shift 2 ;;
        --dims) DIMS="$2"; shift 2 ;;
        --kills) KILLS="$2"; shift 2 ;;
        --fail-rate) FAIL_RATE="$2"; shift 2 ;;
        --drop-rate) DROP_RATE="$2"; shift 2 ;;
        --latency-ms) LATENCY_MS="$2"; shift 2 ;;
        --vectorize-delay-ms) VDELAY_MS="$2"; shift 2 ;;
        --max-kill-ms) MAX_KILL_MS="$2"; shift 2 ;;
        -h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

ensure_cargo_on_path
log "building pgflare"
cargo build --quiet --bins
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
PGFLARE="$BIN/pgflare"
SEED="$BIN/pgflare-seed"

STARTED_PG=0
if ! bash scripts/pg.sh status >/dev/null 2>&1; then
    STARTED_PG=1
fi
ADMIN_URL="$(bash scripts/pg.sh start)"
OUT="$ROOT/out/chaos"
rm -rf "$OUT"
mkdir -p "$OUT"
EMU_PID=""

cleanup() {
    set +e
    [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
    [ "$STARTED_PG" = 1 ] && bash "$ROOT/scripts/pg.sh" stop
}
trap cleanup EXIT

psql_admin() {
    bash scripts/pg.sh psql -v ON_ERROR_STOP=1 -q -X "$@" >/dev/null
}

# A random delay in milliseconds in [100, MAX_KILL_MS].
random_ms() {
    echo $((100 + (RANDOM * 32768 + RANDOM) % (MAX_KILL_MS - 99)))
}

# run_with_kills NAME CMD...: runs CMD up to KILLS times, each killed with
# SIGKILL after a random delay (a run that ends before its kill just ends),
# then once to the end; prints the number of kills; returns the last exit.
run_with_kills() {
    local name="$1" log_file kills=0 i ms pid rc
    shift
    log_file="$ROUND_DIR/$name.log"
    for ((i = 1; i <= KILLS; i++)); do
        ms="$(random_ms)"
        "$@" >>"$log_file" 2>&1 &
        pid=$!
        sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            kills=$((kills + 1))
            echo "--- SIGKILL after ${ms} ms" >>"$log_file"
        else
            wait "$pid" 2>/dev/null || true
        fi
    done
    echo "--- final run" >>"$log_file"
    set +e
    "$@" >>"$log_file" 2>&1
    rc=$?
    set -e
    echo "--- exit $rc" >>"$log_file"
    KILLED=$kills
    return "$rc"
}

# The day of changes: edits, re-embedded chunks (embeddings swapped between
# rows: no pgvector function is called), new chunks copied from others, and
# the 10 documents with the most chunks deleted with their chunks.
changes_sql() {
    cat <<'SQL'
UPDATE chunks SET content = content || ' (edited)', updated_at = now()
 WHERE id IN (SELECT id FROM chunks ORDER BY md5(id::text) LIMIT 60);
UPDATE chunks c SET embedding = o.embedding, updated_at = now()
  FROM (SELECT id, lead(embedding) OVER (ORDER BY id) AS embedding FROM chunks
         WHERE embedding IS NOT NULL ORDER BY md5(id::text) LIMIT 40) o
 WHERE c.id = o.id AND o.embedding IS NOT NULL;
INSERT INTO chunks (id, document_id, chunk_index, content, token_count, tags, metadata, embedding,
                    created_at, updated_at)
SELECT gen_random_uuid(), document_id, chunk_index + 100000, content || ' (copy)', token_count, tags,
       metadata, embedding, now(), now()
  FROM chunks ORDER BY md5(id::text) LIMIT 50;
DELETE FROM documents WHERE id IN (
  SELECT document_id FROM chunks GROUP BY document_id ORDER BY count(*) DESC, document_id LIMIT 10);
SQL
}

CONVERGED=0
RESULTS=()
for ((round = 1; round <= ROUNDS; round++)); do
    ROUND_DIR="$OUT/round-$round"
    mkdir -p "$ROUND_DIR"
    started=$SECONDS
    db="chaos_${$}_$round"
    psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    export DATABASE_URL="${ADMIN_URL%/*}/$db"
    unset SUPABASE_DB_URL
    "$SEED" --database-url "$DATABASE_URL" --seed "$round" --chunks "$CHUNKS" --dims "$DIMS" --drop \
        >"$ROUND_DIR/seed.log" 2>&1

    # The emulator, with faults seeded by the round number.
    "$PGFLARE" --json emulate --listen 127.0.0.1:0 --data-dir "$ROUND_DIR/emulator" \
        --token chaos-token --account-id chaos --d1-database db1 \
        --fail-rate "$FAIL_RATE" --drop-rate "$DROP_RATE" --latency-ms "$LATENCY_MS" \
        --vectorize-delay-ms "$VDELAY_MS" --seed "$round" >"$ROUND_DIR/emulator.out" 2>"$ROUND_DIR/emulator.log" &
    EMU_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$ROUND_DIR/emulator.out" ] && break
        sleep 0.1
    done
    base_url="$(head -1 "$ROUND_DIR/emulator.out" | sed -n 's/.*"base_url":"\([^"]*\)".*/\1/p')"
    [ -n "$base_url" ] || die "the emulator did not start (see $ROUND_DIR/emulator.log)"
    export CLOUDFLARE_API_BASE_URL="$base_url" CLOUDFLARE_ACCOUNT_ID=chaos CLOUDFLARE_API_TOKEN=chaos-token

    cfg="$ROUND_DIR/pgflare.toml"
    "$PGFLARE" init --out-config "$cfg" --migrations-dir "$ROUND_DIR/migrations" >"$ROUND_DIR/init.log" 2>&1
    common=(--config "$cfg" --d1-database-id db1 --vectorize-index vi --partition-mib 1)
    verify_cmd=("$PGFLARE" --json verify "${common[@]}" --report-dir "$ROUND_DIR/report" --queries 3)

    status="converged"
    kills_load=0 kills_verify=0 kills_sync=0 kills_verify2=0
    if run_with_kills load "$PGFLARE" --json load "${common[@]}" --target api --create-index \
        --state-dir "$ROUND_DIR/state"; then
        kills_load=$KILLED
        if run_with_kills verify "${verify_cmd[@]}"; then
            kills_verify=$KILLED
            changes_sql | bash scripts/pg.sh psql -v ON_ERROR_STOP=1 -q -X -d "$db" >"$ROUND_DIR/changes.log" 2>&1
            if run_with_kills sync "$PGFLARE" --json sync "${common[@]}" --target api --once \
                --work-dir "$ROUND_DIR/work"; then
                kills_sync=$KILLED
                if run_with_kills verify-after-sync "${verify_cmd[@]}"; then
                    kills_verify2=$KILLED
                else
                    status="verify after sync failed"
                fi
            else
                status="sync failed"
            fi
        else
            status="verify after load failed"
        fi
    else
        status="load failed"
    fi
    kill "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
    EMU_PID=""
    psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    seconds=$((SECONDS - started))
    [ "$status" = converged ] && CONVERGED=$((CONVERGED + 1))
    log "round $round/$ROUNDS: $status (SIGKILLs: load $kills_load, verify $kills_verify, sync $kills_sync, verify $kills_verify2; ${seconds}s)"
    RESULTS+=("{\"round\":$round,\"status\":\"$status\",\"kills\":{\"load\":$kills_load,\"verify\":$kills_verify,\"sync\":$kills_sync,\"verify_after_sync\":$kills_verify2},\"seconds\":$seconds}")
done

summary="{\"converged\":$CONVERGED,\"total\":$ROUNDS,\"chunks\":$CHUNKS,\"dims\":$DIMS,\"fail_rate\":$FAIL_RATE,\"drop_rate\":$DROP_RATE,\"latency_ms\":$LATENCY_MS,\"vectorize_delay_ms\":$VDELAY_MS,\"kills_per_job\":$KILLS,\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"rounds\":[$(IFS=,; echo "${RESULTS[*]}")]}"
printf '%s\n' "$summary" >"$OUT/summary.json"
log "converged: $CONVERGED / $ROUNDS (details in $OUT/summary.json)"
[ "$CONVERGED" -eq "$ROUNDS" ]
